"""Exceptions raised by replicate-tasks.

The tree::

    Exception
    ├── ReplicateError                   the API could not be used
    │   ├── APIStatusError               the API returned a 4xx or 5xx response
    │   │   ├── InvalidRequestError      400 or 422: the request was rejected as invalid
    │   │   ├── AuthenticationError      401 or 403: the token is missing, wrong or lacks access
    │   │   ├── NotFoundError            404
    │   │   ├── ConflictError            409: the resource exists, or is in the wrong state
    │   │   ├── RateLimitError           429, with the delay to wait in `retry_after`
    │   │   └── ServerError              5xx
    │   ├── APIConnectionError           no response: connection failed or was dropped
    │   │   └── APITimeoutError          no response within the client's timeout
    │   ├── WaitTimeoutError             a wait passed its deadline
    │   ├── PredictionFailedError        a prediction ended failed, canceled or aborted
    │   ├── ProbeFailedError             a readiness probe failed on the new version
    │   ├── IncompatibleSchemaError      a new version breaks the live version's schema
    │   └── ConcurrentChangeError        someone else changed a deployment mid-change
    ├── ValueError
    │   ├── ConfigError                  deployments.yaml is malformed
    │   └── PlanError                    deployments.yaml names unknown hardware or versions

`ReplicateError` and its subclasses never carry the API token: messages are
built from the response body, the method and the URL only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .models import Deployment, Prediction

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "ConcurrentChangeError",
    "ConfigError",
    "ConflictError",
    "IncompatibleSchemaError",
    "InvalidRequestError",
    "NotFoundError",
    "PlanError",
    "PredictionFailedError",
    "ProbeFailedError",
    "RateLimitError",
    "ReplicateError",
    "ServerError",
    "WaitTimeoutError",
    "error_from_response",
]


class ReplicateError(Exception):
    """Base class of every error about using the Replicate API."""


class APIStatusError(ReplicateError):
    """An error response from the API, parsed from its RFC 7807 problem details.

    Replicate returns errors as `application/problem+json` bodies with
    `title`, `detail` and `status`. A body that is not JSON (a proxy's HTML 502
    page, say) still produces this class, with `detail` taken from its text.
    """

    def __init__(
        self,
        status: int,
        *,
        title: str | None = None,
        detail: str | None = None,
        type: str | None = None,
        instance: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.instance = instance
        self.method = method
        self.url = url
        super().__init__(self._format())

    def _format(self) -> str:
        summary = self.title or "error"
        if self.method and self.url:
            message = f"{self.method} {self.url} failed with status {self.status} ({summary})"
        else:
            message = f"{summary} ({self.status})"
        if self.detail:
            message += f": {self.detail}"
        return message


class InvalidRequestError(APIStatusError):
    """The API rejected the request as invalid (400 or 422)."""


class AuthenticationError(APIStatusError):
    """The API token is missing, invalid or not allowed to do this (401 or 403)."""


class NotFoundError(APIStatusError):
    """The resource does not exist, or the token's account cannot see it (404)."""


class ConflictError(APIStatusError):
    """The resource already exists or is in a state that forbids the change (409)."""


class RateLimitError(APIStatusError):
    """The API throttled the request (429).

    `retry_after` is the delay in seconds that the response asked for through
    its `Retry-After` header, or None when it gave none.
    """

    def __init__(self, status: int, *, retry_after: float | None = None, **fields: Any) -> None:
        self.retry_after = retry_after
        super().__init__(status, **fields)


class ServerError(APIStatusError):
    """The API failed on its side (5xx)."""


class APIConnectionError(ReplicateError):
    """No response arrived: the connection failed, or was dropped mid-request.

    `request_sent` is False when the request surely never reached the server
    (the connection could not be opened), so repeating it is always safe.
    """

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        self.request_sent = request_sent
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """No response arrived within the client's timeout."""


class WaitTimeoutError(ReplicateError):
    """A wait did not see the expected state before its deadline.

    `limit` is the deadline in seconds and `last_state` a description of the
    last state observed, which the message includes.
    """

    def __init__(self, message: str, *, limit: float, last_state: str | None) -> None:
        self.limit = limit
        self.last_state = last_state
        super().__init__(message)


class PredictionFailedError(ReplicateError):
    """A prediction ended without succeeding; `prediction` is its final state."""

    def __init__(self, prediction: Prediction) -> None:
        self.prediction = prediction
        message = f"prediction {prediction.id} ended {prediction.status}"
        if prediction.error:
            message += f": {prediction.error}"
        super().__init__(message)


class ProbeFailedError(ReplicateError):
    """A readiness probe prediction failed; `prediction` is the failed probe."""

    def __init__(self, message: str, *, prediction: Prediction | None = None) -> None:
        self.prediction = prediction
        super().__init__(message)


class IncompatibleSchemaError(ReplicateError):
    """A new version's inputs or outputs break callers of the live version.

    `problems` lists each removed or retyped input, new required input and
    changed output type.
    """

    def __init__(self, message: str, *, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(message)


class ConcurrentChangeError(ReplicateError):
    """A deployment's release number moved since it was read, so someone else changed it."""

    @classmethod
    def release_moved(
        cls, current: Deployment, expected: int | None, when: str, advice: str
    ) -> ConcurrentChangeError:
        """Build the error for `current` found at another release than `expected`.

        `when` places the change ("after the plan was made") and `advice` says
        what to do instead of overwriting it.
        """
        created_by = current.release.created_by
        author = created_by.username if created_by else "unknown"
        return cls(
            f"deployment {current.ref} moved from release {expected} to "
            f"{current.release_number} (by {author}) {when}, so someone else changed it; "
            f"{advice}"
        )


class ConfigError(ValueError):
    """A deployments file is malformed.

    `file` is the file's path, `field` the path of the first offending field
    inside it (such as `deployments[2].max_instances`), and `value` the value
    found there. `problems` lists every problem found, the first included.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        field: str | None = None,
        value: Any = None,
        problems: Sequence[Any] = (),
    ) -> None:
        self.file = file
        self.field = field
        self.value = value
        self.problems = list(problems)
        super().__init__(message)


class PlanError(ValueError):
    """A deployments file names something that does not exist on Replicate.

    `problems` lists one message for each unknown hardware SKU, model or version,
    so that all of them are reported at once, before anything changes.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"the plan cannot be applied:\n{lines}")


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequestError,
    429: RateLimitError,
}


def error_from_response(
    response: httpx.Response, *, retry_after: float | None = None
) -> APIStatusError:
    """Build the typed error for a 4xx or 5xx response.

    The response body must already be read. `retry_after` is the parsed
    `Retry-After` delay, passed on to a RateLimitError.
    """
    fields = _problem_fields(response)
    fields["method"] = response.request.method
    fields["url"] = str(response.request.url.copy_with(query=None))
    status = response.status_code
    if status == 429:
        return RateLimitError(status, retry_after=retry_after, **fields)
    error_class = _STATUS_CLASSES.get(status)
    if error_class is None:
        error_class = ServerError if status >= 500 else APIStatusError
    return error_class(status, **fields)


def _problem_fields(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return {
            "title": response.reason_phrase or None,
            "detail": _text_excerpt(response),
        }
    fields: dict[str, Any] = {}
    for key in ("title", "detail", "type", "instance"):
        value = body.get(key)
        if value is not None:
            fields[key] = str(value)
    return fields


def _text_excerpt(response: httpx.Response, limit: int = 200) -> str | None:
    """Return the start of a non-JSON body, whitespace collapsed, or None if it is empty."""
    text = " ".join(response.text.split())
    if not text:
        return None
    return text if len(text) <= limit else text[:limit] + "…"
