"""Typed errors built from API responses, JSON or not."""

from __future__ import annotations

import httpx
import pytest

from replicate_tasks.errors import (
    APIStatusError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ReplicateError,
    ServerError,
    error_from_response,
)

URL = "https://api.replicate.com/v1/deployments/acme/app?token=should-not-show"


def response(status: int, **kwargs: object) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", URL), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, InvalidRequestError),
        (422, InvalidRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (409, ConflictError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (418, APIStatusError),
    ],
)
def test_status_maps_to_class(status: int, error_class: type[APIStatusError]) -> None:
    problem = {"title": "Some title", "detail": "Some detail", "status": status}

    error = error_from_response(response(status, json=problem))

    assert type(error) is error_class
    assert isinstance(error, ReplicateError)
    assert error.status == status
    assert error.title == "Some title"
    assert error.detail == "Some detail"


def test_message_names_request_and_detail() -> None:
    problem = {
        "title": "Unauthenticated",
        "detail": "You did not pass a valid token",
        "status": 401,
    }

    error = error_from_response(response(401, json=problem))

    assert str(error) == (
        "GET https://api.replicate.com/v1/deployments/acme/app failed with status 401 "
        "(Unauthenticated): You did not pass a valid token"
    )
    assert "should-not-show" not in str(error)


def test_html_body_becomes_detail() -> None:
    page = "<html>\n  <body>502 Bad   Gateway</body>\n</html>"

    error = error_from_response(response(502, text=page))

    assert isinstance(error, ServerError)
    assert error.detail == "<html> <body>502 Bad Gateway</body> </html>"
    assert error.title == "Bad Gateway"


def test_long_html_body_is_cut() -> None:
    error = error_from_response(response(503, text="x" * 1000))

    assert error.detail is not None
    assert len(error.detail) == 201
    assert error.detail.endswith("…")


def test_empty_body_has_no_detail() -> None:
    error = error_from_response(response(504))

    assert error.detail is None
    assert str(error).endswith("failed with status 504 (Gateway Timeout)")


def test_json_that_is_not_an_object() -> None:
    error = error_from_response(response(500, json=["unexpected"]))

    assert isinstance(error, ServerError)
    assert error.detail == '["unexpected"]'


def test_rate_limit_carries_delay() -> None:
    body = {"detail": "Request was throttled. Your rate limit resets in ~30s."}

    error = error_from_response(response(429, json=body), retry_after=30.0)

    assert isinstance(error, RateLimitError)
    assert error.retry_after == 30.0
    assert "resets in ~30s" in str(error)
