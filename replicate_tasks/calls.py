"""The pieces that client operations are written with, shared by sync and async forms.

A client operation is a `Call`: a generator that yields a `Request` (or a
`Sleep`) and receives the request's parsed result, or has the request's error
thrown into it, and finally returns the operation's result. The client's two
runners, blocking and async, drive the same generator, so each operation is
written once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
import pydantic

from .errors import APIConnectionError, ReplicateError, ServerError, error_from_response
from .retry import RETRYABLE_STATUSES, Repeat, parse_retry_after

if TYPE_CHECKING:
    from .client import Replicate
    from .models import Page

__all__ = [
    "Call",
    "Done",
    "Namespace",
    "Request",
    "Sleep",
    "async_iterate_pages",
    "iterate_pages",
    "may_have_taken_effect",
    "model_parser",
    "no_content",
    "parse_response",
    "raise_for_status",
    "relative_path",
    "resume",
    "single",
    "split_ref",
    "start",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Request(Generic[T]):
    """One HTTP request of a call, with the parser of its successful response.

    `timeout` overrides the client's read timeout, for requests that the server
    may hold open on purpose (`Prefer: wait`).
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    repeat: Repeat = Repeat.ALWAYS
    timeout: float | None = None


@dataclass(frozen=True)
class Sleep:
    """A pause between the requests of a call, such as between two polls."""

    seconds: float


Call = Generator[Request[Any] | Sleep, Any, T]
"""A client operation: yields requests, receives each one's result, returns its own."""


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T


def start(call: Call[T]) -> Request[Any] | Sleep | Done[T]:
    try:
        return next(call)
    except StopIteration as stop:
        return Done(stop.value)


def resume(
    call: Call[T], *, result: Any = None, error: ReplicateError | None = None
) -> Request[Any] | Sleep | Done[T]:
    try:
        if error is not None:
            return call.throw(error)
        return call.send(result)
    except StopIteration as stop:
        return Done(stop.value)


def single(request: Request[T]) -> Call[T]:
    result: T = yield request
    return result


def raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    raise error_from_response(response, retry_after=retry_after)


def parse_response(request: Request[T], response: httpx.Response) -> T:
    try:
        return request.parse(response)
    except (ValueError, pydantic.ValidationError) as error:
        raise ReplicateError(
            f"{request.method} {response.request.url} returned a response "
            f"that could not be parsed: {error}"
        ) from error


def model_parser(model_type: type[T]) -> Callable[[httpx.Response], T]:
    adapter = pydantic.TypeAdapter(model_type)

    def parse(response: httpx.Response) -> T:
        return adapter.validate_json(response.content)

    return parse


def no_content(response: httpx.Response) -> None:
    return None


def split_ref(owner: str, name: str | None, kind: str) -> tuple[str, str]:
    """Accept `("owner", "name")` or `("owner/name", None)`, as the official client does."""
    if name is None:
        parts = owner.split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(
                f"{kind} {owner!r} is not of the form 'owner/name'; pass owner and name."
            )
        return parts[0], parts[1]
    if not owner or not name or "/" in owner or "/" in name:
        raise ValueError(
            f"{kind} owner {owner!r} and name {name!r} must be non-empty and contain no '/'."
        )
    return owner, name


def relative_path(cursor: str) -> str:
    """Reduce a `next` URL to its path and query, so the token only goes to the base URL."""
    url = httpx.URL(cursor)
    query = url.query.decode()
    return url.path + (f"?{query}" if query else "")


def may_have_taken_effect(error: ReplicateError) -> bool:
    """Return whether a failed request may still have been acted on by the server."""
    if isinstance(error, APIConnectionError):
        return error.request_sent
    return isinstance(error, ServerError) and error.status in RETRYABLE_STATUSES


PageT = TypeVar("PageT", bound="Page[Any]")


def iterate_pages(list_page: Callable[[str | None], PageT]) -> Iterator[PageT]:
    """Yield every page that `list_page(cursor)` returns, following `next` until the last."""
    page = list_page(None)
    yield page
    while page.next:
        page = list_page(page.next)
        yield page


async def async_iterate_pages(
    list_page: Callable[[str | None], Awaitable[PageT]],
) -> AsyncIterator[PageT]:
    page = await list_page(None)
    yield page
    while page.next:
        page = await list_page(page.next)
        yield page


class Namespace:
    """Base of the client's namespaces (`client.deployments`, …): runs calls on the client."""

    def __init__(self, client: Replicate) -> None:
        self._client = client

    def _run(self, call: Call[T]) -> T:
        return self._client._run(call)

    async def _async_run(self, call: Call[T]) -> T:
        return await self._client._async_run(call)
