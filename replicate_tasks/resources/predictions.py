"""Predictions: create (by version, official model or deployment), get, list, cancel, wait, run."""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..calls import (
    Call,
    Namespace,
    Request,
    Sleep,
    async_iterate_pages,
    iterate_pages,
    model_parser,
    relative_path,
    single,
    split_ref,
)
from ..errors import NotFoundError, PredictionFailedError, WaitTimeoutError
from ..files import wrap_file_outputs
from ..models import Page, Prediction
from ..retry import Repeat

if TYPE_CHECKING:
    pass

__all__ = ["WEBHOOK_EVENTS", "DeploymentPredictions", "Predictions", "RunMixin"]

WEBHOOK_EVENTS = frozenset({"start", "output", "logs", "completed"})
DEFAULT_POLL_INTERVAL = 0.5
_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_DURATION = re.compile(r"^(?:\d+h)?(?:\d+m)?(?:\d+s)?$")

_prediction = model_parser(Prediction)
_prediction_page = model_parser(Page[Prediction])


def _create_options(
    input: Mapping[str, Any],
    webhook: str | None,
    webhook_events_filter: Sequence[str] | None,
    wait: bool | int | None,
    cancel_after: str | float | None,
) -> tuple[dict[str, Any], dict[str, str], float | None]:
    """Check the options shared by every create, and return body, headers and read timeout."""
    if not isinstance(input, Mapping):
        raise TypeError(
            f"input must be a mapping of input names to values, got {type(input).__name__}"
        )
    body: dict[str, Any] = {"input": dict(input)}
    if webhook is not None:
        if not webhook.startswith(("https://", "http://")):
            raise ValueError(f"webhook {webhook!r} is not an http(s) URL")
        body["webhook"] = webhook
    if webhook_events_filter is not None:
        unknown = sorted(set(webhook_events_filter) - WEBHOOK_EVENTS)
        if unknown:
            raise ValueError(
                f"webhook_events_filter has unknown events {unknown}; "
                f"expected some of {sorted(WEBHOOK_EVENTS)}"
            )
        body["webhook_events_filter"] = list(webhook_events_filter)

    headers: dict[str, str] = {}
    read_timeout = None
    if wait is True:
        headers["Prefer"] = "wait"
        read_timeout = 60.5
    elif wait is not None and wait is not False:
        if isinstance(wait, bool) or not 1 <= wait <= 60:
            raise ValueError(f"wait must be True or 1 to 60 seconds, got {wait!r}")
        headers["Prefer"] = f"wait={wait}"
        read_timeout = wait + 0.5
    if cancel_after is not None:
        headers["Cancel-After"] = _cancel_after(cancel_after)
    return body, headers, read_timeout


def _cancel_after(value: str | float) -> str:
    if isinstance(value, str):
        if not value or not _DURATION.match(value):
            raise ValueError(
                f"cancel_after {value!r} is not a duration such as '30s', '5m' or '1h30m'"
            )
        return value
    if value < 5:
        raise ValueError(f"cancel_after must be at least 5 seconds, got {value!r}")
    return f"{math.ceil(value)}s"


def _create(
    path: str, body: dict[str, Any], headers: dict[str, str], timeout: float | None
) -> Request[Prediction]:
    # A prediction creation is never sent twice once it may have reached the
    # server: a repeat would run (and bill) the model again.
    return Request(
        "POST", path, _prediction, json=body, headers=headers, repeat=Repeat.UNSENT, timeout=timeout
    )


def _version_request(
    version: str, options: tuple[dict[str, Any], dict[str, str], float | None]
) -> Request[Prediction]:
    body, headers, timeout = options
    return _create("/v1/predictions", {"version": version, **body}, headers, timeout)


def _model_request(
    model: str, options: tuple[dict[str, Any], dict[str, str], float | None]
) -> Request[Prediction]:
    owner, name = split_ref(model, None, "model")
    body, headers, timeout = options
    return _create(f"/v1/models/{owner}/{name}/predictions", body, headers, timeout)


def _deployment_request(
    deployment: str, options: tuple[dict[str, Any], dict[str, str], float | None]
) -> Request[Prediction]:
    owner, name = split_ref(deployment, None, "deployment")
    body, headers, timeout = options
    return _create(f"/v1/deployments/{owner}/{name}/predictions", body, headers, timeout)


def _wait(prediction: Prediction, timeout: float | None, interval: float) -> Call[Prediction]:
    """Poll a prediction until it reaches a terminal status, `aborted` included."""
    if interval <= 0:
        raise ValueError(f"interval must be positive seconds, got {interval!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    while not prediction.is_terminal:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"Timed out after {timeout:g} s waiting for prediction {prediction.id}; "
                    f"last status seen: {prediction.status}. The prediction may still be running.",
                    limit=timeout or 0.0,
                    last_state=prediction.status,
                )
            yield Sleep(min(interval, remaining))
        else:
            yield Sleep(interval)
        prediction = yield Request("GET", f"/v1/predictions/{prediction.id}", _prediction)
    return prediction


def _prediction_id(prediction: Prediction | str) -> str:
    return prediction if isinstance(prediction, str) else prediction.id


def _start_wait(
    prediction: Prediction | str, timeout: float | None, interval: float
) -> Call[Prediction]:
    if isinstance(prediction, str):
        current: Prediction = yield Request("GET", f"/v1/predictions/{prediction}", _prediction)
    else:
        current = prediction
    result: Prediction = yield from _wait(current, timeout, interval)
    return result


def _list(
    cursor: str | None, created_after: str | None, created_before: str | None
) -> Request[Page[Prediction]]:
    if cursor:
        return Request("GET", relative_path(cursor), _prediction_page)
    params = {
        key: value
        for key, value in (("created_after", created_after), ("created_before", created_before))
        if value is not None
    }
    return Request("GET", "/v1/predictions", _prediction_page, params=params or None)


class Predictions(Namespace):
    """Create, read, list, cancel and wait for predictions."""

    def create(
        self,
        version: str | None = None,
        input: Mapping[str, Any] | None = None,
        *,
        model: str | None = None,
        webhook: str | None = None,
        webhook_events_filter: Sequence[str] | None = None,
        wait: bool | int | None = None,
        cancel_after: str | float | None = None,
    ) -> Prediction:
        """Create a prediction of a model version, or of an official model.

        Args:
            version: A 64-character version id, or `owner/model:version_id`.
            input: The model's inputs.
            model: `owner/model` of an official model, instead of `version`.
            webhook: An HTTPS URL that Replicate sends the prediction to.
            webhook_events_filter: Which events trigger the webhook: `start`,
                `output`, `logs`, `completed`.
            wait: `True` (up to 60 s) or 1-60 seconds to hold the request open
                until the prediction finishes (`Prefer: wait`).
            cancel_after: A deadline after which Replicate cancels the
                prediction: seconds (at least 5) or a duration such as `"5m"`.

        The request is never sent twice once it may have reached Replicate, so
        a lost response raises instead of creating a second prediction.
        """
        return self._run(
            single(
                self._create_request(
                    version, input, model, webhook, webhook_events_filter, wait, cancel_after
                )
            )
        )

    async def async_create(
        self,
        version: str | None = None,
        input: Mapping[str, Any] | None = None,
        *,
        model: str | None = None,
        webhook: str | None = None,
        webhook_events_filter: Sequence[str] | None = None,
        wait: bool | int | None = None,
        cancel_after: str | float | None = None,
    ) -> Prediction:
        return await self._async_run(
            single(
                self._create_request(
                    version, input, model, webhook, webhook_events_filter, wait, cancel_after
                )
            )
        )

    @staticmethod
    def _create_request(
        version: str | None,
        input: Mapping[str, Any] | None,
        model: str | None,
        webhook: str | None,
        webhook_events_filter: Sequence[str] | None,
        wait: bool | int | None,
        cancel_after: str | float | None,
    ) -> Request[Prediction]:
        if (version is None) == (model is None):
            raise ValueError(
                "pass either version (an id or 'owner/model:id') or model ('owner/model')"
            )
        options = _create_options(
            input if input is not None else {}, webhook, webhook_events_filter, wait, cancel_after
        )
        if model is not None:
            return _model_request(model, options)
        assert version is not None
        return _version_request(version, options)

    def get(self, id: str) -> Prediction:
        return self._run(single(Request("GET", f"/v1/predictions/{id}", _prediction)))

    async def async_get(self, id: str) -> Prediction:
        return await self._async_run(single(Request("GET", f"/v1/predictions/{id}", _prediction)))

    def cancel(self, id: str) -> Prediction:
        """Cancel a prediction; a finished one is returned unchanged."""
        return self._run(single(Request("POST", f"/v1/predictions/{id}/cancel", _prediction)))

    async def async_cancel(self, id: str) -> Prediction:
        return await self._async_run(
            single(Request("POST", f"/v1/predictions/{id}/cancel", _prediction))
        )

    def list(
        self,
        cursor: str | None = None,
        *,
        created_after: str | None = None,
        created_before: str | None = None,
    ) -> Page[Prediction]:
        """Return one page of predictions, newest first; pass `page.next` as `cursor`."""
        return self._run(single(_list(cursor, created_after, created_before)))

    async def async_list(
        self,
        cursor: str | None = None,
        *,
        created_after: str | None = None,
        created_before: str | None = None,
    ) -> Page[Prediction]:
        return await self._async_run(single(_list(cursor, created_after, created_before)))

    def pages(self) -> Iterator[Page[Prediction]]:
        """Iterate over every page, following `next` until the last."""
        return iterate_pages(self.list)

    def async_pages(self) -> AsyncIterator[Page[Prediction]]:
        return async_iterate_pages(self.async_list)

    def wait(
        self,
        prediction: Prediction | str,
        *,
        timeout: float | None = None,
        interval: float = DEFAULT_POLL_INTERVAL,
    ) -> Prediction:
        """Poll until the prediction succeeds, fails, is canceled or aborted, and return it.

        Polls every `interval` seconds, so it returns at most one interval after
        the prediction finishes. WaitTimeoutError after `timeout` seconds, if given.
        """
        return self._run(_start_wait(prediction, timeout, interval))

    async def async_wait(
        self,
        prediction: Prediction | str,
        *,
        timeout: float | None = None,
        interval: float = DEFAULT_POLL_INTERVAL,
    ) -> Prediction:
        return await self._async_run(_start_wait(prediction, timeout, interval))


class DeploymentPredictions(Namespace):
    """Predictions on a deployment, which runs its pinned version."""

    def create(
        self,
        deployment: str,
        input: Mapping[str, Any],
        *,
        webhook: str | None = None,
        webhook_events_filter: Sequence[str] | None = None,
        wait: bool | int | None = None,
        cancel_after: str | float | None = None,
    ) -> Prediction:
        """Create a prediction on `deployment` (`owner/name`); see `Predictions.create`."""
        options = _create_options(input, webhook, webhook_events_filter, wait, cancel_after)
        return self._run(single(_deployment_request(deployment, options)))

    async def async_create(
        self,
        deployment: str,
        input: Mapping[str, Any],
        *,
        webhook: str | None = None,
        webhook_events_filter: Sequence[str] | None = None,
        wait: bool | int | None = None,
        cancel_after: str | float | None = None,
    ) -> Prediction:
        options = _create_options(input, webhook, webhook_events_filter, wait, cancel_after)
        return await self._async_run(single(_deployment_request(deployment, options)))


def _run(
    ref: str, input: Mapping[str, Any], timeout: float | None, interval: float
) -> Call[Prediction]:
    """Create a prediction for `ref` and wait for it.

    `ref` is a version id, `owner/model:version_id`, or `owner/name`, which
    names a deployment of the token's account if one exists, and otherwise an
    official model.
    """
    options = _create_options(input, None, None, None, None)
    if ":" in ref or _VERSION_ID.match(ref):
        prediction: Prediction = yield _version_request(ref, options)
    else:
        try:
            prediction = yield _deployment_request(ref, options)
        except NotFoundError:
            # No such deployment: the API refused before creating anything,
            # so trying the official model of the same name runs nothing twice.
            prediction = yield _model_request(ref, options)
    prediction = yield from _wait(prediction, timeout, interval)
    if prediction.status != "succeeded":
        raise PredictionFailedError(prediction)
    return prediction


class RunMixin:
    """`client.run(...)`: create a prediction, wait for it, return its output."""

    def _run(self, call: Call[Any]) -> Any:
        raise NotImplementedError

    async def _async_run(self, call: Call[Any]) -> Any:
        raise NotImplementedError

    def run(
        self,
        ref: str,
        input: Mapping[str, Any],
        *,
        timeout: float | None = None,
        interval: float = DEFAULT_POLL_INTERVAL,
        use_file_output: bool = True,
    ) -> Any:
        """Run a deployment or model to completion and return its output.

        Args:
            ref: `owner/name` of a deployment (or else of an official model),
                `owner/model:version_id`, or a bare version id.
            input: The model's inputs.
            timeout: Seconds to wait before WaitTimeoutError; None waits on.
            use_file_output: Return file outputs (URLs and data URIs) as
                `FileOutput` objects with `read()` and `save()`.

        Raises:
            PredictionFailedError: the prediction failed, was canceled or aborted.
        """
        prediction: Prediction = self._run(_run(ref, input, timeout, interval))
        return wrap_file_outputs(prediction.output) if use_file_output else prediction.output

    async def async_run(
        self,
        ref: str,
        input: Mapping[str, Any],
        *,
        timeout: float | None = None,
        interval: float = DEFAULT_POLL_INTERVAL,
        use_file_output: bool = True,
    ) -> Any:
        prediction: Prediction = await self._async_run(_run(ref, input, timeout, interval))
        return wrap_file_outputs(prediction.output) if use_file_output else prediction.output
