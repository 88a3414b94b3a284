"""Routes of the predictions API: create (by version, official model or deployment), get,
list and cancel.

Shapes and status codes follow Replicate's openapi.json. A create responds 201
when the prediction it returns is terminal and 202 while it is still running.

NOTE: openapi.json documents 201 as "created" and 202 as "created but does not
yet have all outputs". Responses recorded from the real API show 201 for
predictions still `starting` or `processing` too, so clients should accept any
2xx from a create.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from .api import route
from .catalog import VERSION_ID_PATTERN, Catalog, Model
from .clock import Clock, ManualClock
from .files import file_data_uri, file_url
from .lifecycle import PredictionRecord, prediction_json
from .pagination import paginate
from .prediction_requests import (
    PREDICTION_FIELDS,
    VERSIONLESS_FIELDS,
    parse_create,
    parse_prefer_wait,
    validate_input,
)
from .predictions import (
    HIDDEN_VERSION,
    CreateRequest,
    PredictionStore,
    PredictionTarget,
    created_between,
    sort_key,
)
from .problems import ProblemError
from .state import EmulatorState
from .validation import parse_json_object, show
from .webhooks import WebhookDispatcher

WAIT_POLL_SECONDS = 0.02


class PredictionApi:
    """Handlers of the prediction routes over one emulator's state and predictions."""

    def __init__(
        self,
        *,
        state: EmulatorState,
        predictions: PredictionStore,
        webhooks: WebhookDispatcher,
        clock: Clock,
        webhook_hosts: Collection[str],
        data_uri_outputs: bool,
    ) -> None:
        self.state = state
        self.catalog: Catalog = state.catalog
        self.predictions = predictions
        self.webhooks = webhooks
        self.clock = clock
        self.webhook_hosts = webhook_hosts
        self.data_uri_outputs = data_uri_outputs

    def routes(self) -> list[BaseRoute]:
        """Return the prediction routes."""
        return [
            route(
                "/v1/predictions",
                GET=self.list_predictions,
                POST=self.create_prediction,
            ),
            route("/v1/predictions/{prediction_id}", GET=self.get_prediction),
            route("/v1/predictions/{prediction_id}/cancel", POST=self.cancel_prediction),
            route("/v1/models/{owner}/{name}/predictions", POST=self.create_model_prediction),
            route(
                "/v1/deployments/{owner}/{name}/predictions",
                POST=self.create_deployment_prediction,
            ),
        ]

    async def create_prediction(self, request: Request) -> Response:
        """`POST /v1/predictions`: run a version, or an official model by name."""
        body = parse_json_object(await request.body())
        checked = self._parse(request, body, PREDICTION_FIELDS)
        target = self._target_from_version(body.get("version"), "version" in body)
        return await self._create(request, target, checked)

    async def create_model_prediction(self, request: Request) -> Response:
        """`POST /v1/models/{owner}/{name}/predictions`: run an official model."""
        owner, name = str(request.path_params["owner"]), str(request.path_params["name"])
        model = self.catalog.get_model(owner, name)
        if model is None:
            raise ProblemError(
                404,
                f"Model {owner}/{name} was not found. Check the owner and name, or add "
                "the model to the emulator catalog.",
            )
        if not model.is_official:
            raise ProblemError(
                404,
                f"Model {model.ref} is not an official model, so it cannot be run by "
                "name. Create the prediction with POST /v1/predictions and a version "
                "id, or through a deployment.",
            )

        body = parse_json_object(await request.body())
        checked = self._parse(request, body, VERSIONLESS_FIELDS)
        return await self._create(request, _official_target(model), checked)

    async def create_deployment_prediction(self, request: Request) -> Response:
        """`POST /v1/deployments/{owner}/{name}/predictions`: run the deployment's current release.

        The prediction records the version of the release current at creation,
        and marks the deployment as used.
        """
        owner, name = str(request.path_params["owner"]), str(request.path_params["name"])
        deployment = self.state.get_deployment(owner, name)

        body = parse_json_object(await request.body())
        checked = self._parse(request, body, VERSIONLESS_FIELDS)

        release = deployment.release
        model_owner, model_name = release.model.split("/", 1)
        version = self.catalog.get_version(model_owner, model_name, release.version)
        if version is None:
            raise ProblemError(
                409,
                f"Deployment {deployment.ref} runs version {release.version} of "
                f"{release.model}, which is no longer in the emulator catalog.",
            )
        target = PredictionTarget(
            model=release.model,
            version=release.version,
            version_id=release.version,
            schema=version.openapi_schema,
            deployment=deployment,
        )
        response = await self._create(request, target, checked)
        self.state.touch(owner, name)
        return response

    async def get_prediction(self, request: Request) -> Response:
        """`GET /v1/predictions/{prediction_id}`."""
        record = self.predictions.get(str(request.path_params["prediction_id"]))
        return JSONResponse(self._render(record))

    async def list_predictions(self, request: Request) -> Response:
        """`GET /v1/predictions`: predictions newest first, one page at a time.

        Supports the `created_after` and `created_before` filters (ISO 8601).
        Every emulated prediction comes from the API, so `source=web` lists none.
        """
        query = request.query_params
        after = _query_time(query.get("created_after"), "created_after")
        before = _query_time(query.get("created_before"), "created_before")
        source = query.get("source")
        if source is not None and source != "web":
            raise ProblemError(400, f"Invalid source {source!r}: the only value accepted is 'web'.")

        records = [
            record
            for record in self.predictions.list()
            if source is None and created_between(record, after, before)
        ]
        page = paginate(
            records,
            key=sort_key,
            cursor=query.get("cursor"),
            page_size=self.state.page_size,
        )
        return JSONResponse(page.to_json(request.url, self._render))

    async def cancel_prediction(self, request: Request) -> Response:
        """`POST /v1/predictions/{prediction_id}/cancel`: 200 with the prediction.

        A prediction that has already ended is returned unchanged.
        """
        record = self.predictions.cancel(str(request.path_params["prediction_id"]))
        self.webhooks.wake()
        return JSONResponse(self._render(record))

    def _parse(
        self, request: Request, body: Mapping[str, Any], fields: tuple[str, ...]
    ) -> tuple[CreateRequest, int | None]:
        wait = parse_prefer_wait(request.headers.get("prefer"))
        cancel_after = request.headers.get("cancel-after")
        checked = parse_create(body, fields, self.webhook_hosts, cancel_after)
        return checked, wait

    async def _create(
        self,
        request: Request,
        target: PredictionTarget,
        parsed: tuple[CreateRequest, int | None],
    ) -> Response:
        checked, wait = parsed
        validate_input(checked.input, target.schema)
        base_url = str(request.base_url).rstrip("/")
        record = self.predictions.create(target, checked, base_url)
        self.webhooks.track(record)

        if wait is not None:
            record = await self._wait(record, wait)
        now = self.clock.now()
        # NOTE: Replicate's docs say a synchronous (Prefer: wait) response may show
        # file outputs as data URIs. The emulator does so only with
        # data_uri_outputs, so that by default every read shows the same URLs.
        use_data_uris = wait is not None and self.data_uri_outputs
        document = self._render(record, now, data_uris=use_data_uris)
        status = 201 if record.is_terminal(now) else 202
        headers = None
        if wait is not None:
            headers = {"Preference-Applied": request.headers["prefer"].strip()}
        return JSONResponse(document, status_code=status, headers=headers)

    async def _wait(self, record: PredictionRecord, seconds: int) -> PredictionRecord:
        """Wait until the prediction ends or `seconds` pass, in emulated and in real time.

        A `ManualClock` moves only when advanced, so with one the current state
        is returned at once.
        """
        if isinstance(self.clock, ManualClock):
            return record
        real_deadline = time.monotonic() + seconds
        clock_deadline = self.clock.now() + timedelta(seconds=seconds)
        while True:
            record = self.predictions.get(record.id)
            now = self.clock.now()
            remaining = real_deadline - time.monotonic()
            if record.is_terminal(now) or now >= clock_deadline or remaining <= 0:
                return record
            await asyncio.sleep(min(WAIT_POLL_SECONDS, remaining))

    def _render(
        self, record: PredictionRecord, at: datetime | None = None, data_uris: bool = False
    ) -> dict[str, Any]:
        moment = self.clock.now() if at is None else at
        return prediction_json(record, moment, file_data_uri if data_uris else file_url)

    def _target_from_version(self, value: Any, given: bool) -> PredictionTarget:
        if not given:
            raise ProblemError(
                422,
                "Missing required field version: send a version id, "
                '"owner/name:version_id", or "owner/name" of an official model.',
                title="Unprocessable Entity",
            )
        if not isinstance(value, str):
            raise _invalid_version(value, "expected a string")

        if VERSION_ID_PATTERN.match(value):
            found = self.catalog.find_version(value)
            if found is None:
                raise _invalid_version(value, "no model in the emulator catalog has this version")
            model, version = found
            return PredictionTarget(model.ref, version.id, version.id, version.openapi_schema)

        reference, separator, version_id = value.partition(":")
        owner, slash, name = reference.partition("/")
        if not slash or not owner or not name or "/" in name:
            raise _invalid_version(
                value, 'expected a version id, "owner/name:version_id" or "owner/name"'
            )
        model_or_none = self.catalog.get_model(owner, name)
        if model_or_none is None:
            raise _invalid_version(value, f"model {reference} was not found")
        model = model_or_none

        if separator:
            version_or_none = self.catalog.get_version(owner, name, version_id)
            if version_or_none is None:
                raise _invalid_version(value, f"{version_id} is not a version of {reference}")
            version = version_or_none
            return PredictionTarget(model.ref, version.id, version.id, version.openapi_schema)

        if not model.is_official:
            raise _invalid_version(
                value,
                f"{reference} is not an official model, so it needs a version: send "
                f'"{reference}:<version id>"',
            )
        return _official_target(model)


def _official_target(model: Model) -> PredictionTarget:
    schema = model.versions[0].openapi_schema if model.versions else model.openapi_schema
    return PredictionTarget(model=model.ref, version=HIDDEN_VERSION, version_id=None, schema=schema)


def _invalid_version(value: Any, reason: str) -> ProblemError:
    return ProblemError(
        422, f"Invalid version {show(value)}: {reason}.", title="Unprocessable Entity"
    )


def _query_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise ProblemError(
            400,
            f"Invalid {name} {value!r}: expected an ISO 8601 timestamp such as "
            "2024-05-01T12:00:00Z.",
        ) from error
    if moment.tzinfo is None:
        raise ProblemError(400, f"Invalid {name} {value!r}: include a timezone, such as Z.")
    return moment
