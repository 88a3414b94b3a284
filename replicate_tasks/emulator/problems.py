"""Errors as RFC 7807 problem details, the way the Replicate API reports them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus

from starlette.responses import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ProblemError(Exception):
    """A request failure that the emulator reports as a problem+json response.

    Raised by the state and the request checks. The route layer turns it into a
    response with `status`, `title` and `detail`.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or default_title(status)
        self.headers = dict(headers or {})


def default_title(status: int) -> str:
    """Return the standard reason phrase for `status`, such as "Not Found"."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(status: int, detail: str, title: str | None = None) -> bytes:
    """Encode a problem document with `title`, `detail` and `status`."""
    document = {
        "title": title or default_title(status),
        "detail": detail,
        "status": status,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build a problem+json response."""
    return Response(
        problem_body(status, detail, title),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_CONTENT_TYPE,
    )


def response_for(error: ProblemError) -> Response:
    """Build the response for a raised `ProblemError`."""
    return problem_response(error.status, error.detail, title=error.title, headers=error.headers)
