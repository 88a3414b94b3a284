"""Routes of the Replicate HTTP API: account, hardware, deployments, models, webhooks.

Each handler builds its response from the emulator state in the shapes of
Replicate's openapi.json and recorded responses. Errors are raised as
`ProblemError` and rendered as problem+json by the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .catalog import ModelVersion
from .pagination import paginate
from .problems import ProblemError
from .state import DeploymentRecord, EmulatorState
from .validation import parse_json_object, validate_create, validate_update

Handler = Callable[[Request], Awaitable[Response]]


class ReplicateApi:
    """Handlers of the `/v1` routes over one `EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def routes(self) -> list[BaseRoute]:
        """Return the `/v1` routes, one per path so that a 405 lists every method."""
        deployment = "/v1/deployments/{owner}/{name}"
        model = "/v1/models/{owner}/{name}"
        return [
            route("/v1/account", GET=self.get_account),
            route("/v1/hardware", GET=self.list_hardware),
            route(
                "/v1/deployments",
                GET=self.list_deployments,
                POST=self.create_deployment,
            ),
            route(
                deployment,
                GET=self.get_deployment,
                PATCH=self.update_deployment,
                DELETE=self.delete_deployment,
            ),
            route(model, GET=self.get_model),
            route(f"{model}/versions", GET=self.list_versions),
            route(f"{model}/versions/{{version_id}}", GET=self.get_version),
            route("/v1/webhooks/default/secret", GET=self.get_webhook_secret),
        ]

    async def get_account(self, request: Request) -> Response:
        """`GET /v1/account`: the account that owns the token."""
        return JSONResponse(self.state.account_json())

    async def list_hardware(self, request: Request) -> Response:
        """`GET /v1/hardware`: a bare array of `{"sku", "name"}`."""
        return JSONResponse(self.state.hardware_json())

    async def list_deployments(self, request: Request) -> Response:
        """`GET /v1/deployments`: deployments newest first, one page at a time."""
        records = self.state.list_deployments()
        page = paginate(
            records,
            key=_deployment_sort_key,
            cursor=request.query_params.get("cursor"),
            page_size=self.state.page_size,
        )
        return JSONResponse(page.to_json(request.url, self.state.deployment_json))

    async def create_deployment(self, request: Request) -> Response:
        """`POST /v1/deployments`: create a deployment owned by the account."""
        body = parse_json_object(await request.body())
        checked = validate_create(body, self.state.catalog)
        record = self.state.create_deployment(checked)
        return JSONResponse(self.state.deployment_json(record))

    async def get_deployment(self, request: Request) -> Response:
        """`GET /v1/deployments/{owner}/{name}`."""
        owner, name = _owner_and_name(request)
        record = self.state.get_deployment(owner, name)
        return JSONResponse(self.state.deployment_json(record))

    async def update_deployment(self, request: Request) -> Response:
        """`PATCH /v1/deployments/{owner}/{name}`: make a new release."""
        owner, name = _owner_and_name(request)
        self.state.get_deployment(owner, name)

        body = parse_json_object(await request.body())
        checked = validate_update(body, self.state.catalog)
        record = self.state.update_deployment(owner, name, checked)
        return JSONResponse(self.state.deployment_json(record))

    async def delete_deployment(self, request: Request) -> Response:
        """`DELETE /v1/deployments/{owner}/{name}`: 204 with an empty body."""
        owner, name = _owner_and_name(request)
        self.state.delete_deployment(owner, name)
        return Response(status_code=204)

    async def get_model(self, request: Request) -> Response:
        """`GET /v1/models/{owner}/{name}`."""
        owner, name = _owner_and_name(request)
        model = self.state.catalog.get_model(owner, name)
        if model is None:
            raise _model_not_found(owner, name)
        return JSONResponse(model.to_json())

    async def list_versions(self, request: Request) -> Response:
        """`GET /v1/models/{owner}/{name}/versions`: versions newest first."""
        owner, name = _owner_and_name(request)
        model = self.state.catalog.get_model(owner, name)
        if model is None:
            raise _model_not_found(owner, name)

        page = paginate(
            model.versions,
            key=ModelVersion.sort_key,
            cursor=request.query_params.get("cursor"),
            page_size=self.state.page_size,
        )
        return JSONResponse(page.to_json(request.url, ModelVersion.to_json))

    async def get_version(self, request: Request) -> Response:
        """`GET /v1/models/{owner}/{name}/versions/{version_id}`."""
        owner, name = _owner_and_name(request)
        version_id = str(request.path_params["version_id"])
        if self.state.catalog.get_model(owner, name) is None:
            raise _model_not_found(owner, name)

        version = self.state.catalog.get_version(owner, name, version_id)
        if version is None:
            raise ProblemError(
                404,
                f"Version {version_id} of model {owner}/{name} was not found. List "
                f"the versions with GET /v1/models/{owner}/{name}/versions.",
            )
        return JSONResponse(version.to_json())

    async def get_webhook_secret(self, request: Request) -> Response:
        """`GET /v1/webhooks/default/secret`: the account's signing secret."""
        document: dict[str, Any] = {"key": self.state.webhook_secret}
        return JSONResponse(document)


def route(path: str, **handlers: Handler) -> Route:
    """Build one route for `path` that calls the handler named by the method."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, dispatch, methods=list(handlers))


def _owner_and_name(request: Request) -> tuple[str, str]:
    return str(request.path_params["owner"]), str(request.path_params["name"])


def _deployment_sort_key(record: DeploymentRecord) -> str:
    return f"{record.sequence:012d}"


def _model_not_found(owner: str, name: str) -> ProblemError:
    return ProblemError(
        404,
        f"Model {owner}/{name} was not found. Check the owner and name, or add the "
        "model to the emulator catalog.",
    )
