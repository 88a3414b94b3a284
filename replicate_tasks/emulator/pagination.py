"""Cursor pagination in the API's shape: `{"next", "previous", "results"}`.

`next` and `previous` are absolute URLs with an opaque `cursor` query parameter,
as in the real API. A cursor names the sort key of the item that a page starts
after (or ends before), not an offset, so items created between two requests
do not shift later pages.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.datastructures import URL

from .problems import ProblemError

Item = TypeVar("Item")

_AFTER = "a"
_BEFORE = "b"


@dataclass(frozen=True)
class Page(Generic[Item]):
    """One page of items and the cursors to the pages around it."""

    results: list[Item]
    next_cursor: str | None
    previous_cursor: str | None

    def to_json(self, url: URL, render: Callable[[Item], Any]) -> dict[str, Any]:
        """Return the API shape, with `next`/`previous` built on the request `url`."""
        return {
            "next": _link(url, self.next_cursor),
            "previous": _link(url, self.previous_cursor),
            "results": [render(item) for item in self.results],
        }


def paginate(
    items: Sequence[Item],
    key: Callable[[Item], str],
    cursor: str | None,
    page_size: int,
) -> Page[Item]:
    """Return the page of `items` that `cursor` points at.

    `items` must be sorted newest first, which is descending `key` order, and
    each key must be unique. Raises `ProblemError` (400) for a malformed cursor.
    """
    if cursor is None:
        window = list(items[:page_size])
        return _page(items, key, window)

    direction, boundary = decode_cursor(cursor)
    if direction == _AFTER:
        older = [item for item in items if key(item) < boundary]
        window = older[:page_size]
    else:
        newer = [item for item in items if key(item) > boundary]
        window = newer[-page_size:]
    return _page(items, key, window)


def encode_cursor(direction: str, boundary: str) -> str:
    """Encode a cursor as URL-safe base64 without padding."""
    raw = f"{direction}:{boundary}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Decode a cursor into its direction and boundary key."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        text = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise _invalid_cursor(cursor) from error

    direction, separator, boundary = text.partition(":")
    if not separator or direction not in (_AFTER, _BEFORE):
        raise _invalid_cursor(cursor)
    return direction, boundary


def _page(items: Sequence[Item], key: Callable[[Item], str], window: list[Item]) -> Page[Item]:
    if not window:
        return Page(results=[], next_cursor=None, previous_cursor=None)

    first_key = key(window[0])
    last_key = key(window[-1])
    has_newer = any(key(item) > first_key for item in items)
    has_older = any(key(item) < last_key for item in items)

    return Page(
        results=window,
        next_cursor=encode_cursor(_AFTER, last_key) if has_older else None,
        previous_cursor=encode_cursor(_BEFORE, first_key) if has_newer else None,
    )


def _link(url: URL, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    return str(url.include_query_params(cursor=cursor))


def _invalid_cursor(cursor: str) -> ProblemError:
    return ProblemError(
        400,
        f"Invalid cursor {cursor!r}. Use the next or previous URL from a list "
        "response as it is, without editing its cursor.",
    )
