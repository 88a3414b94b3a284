"""Rate limits of the emulated API: prediction creations and other requests per rolling window.

Replicate documents 600 prediction creations and 3000 other requests a minute,
and rejects requests beyond that with 429. The emulator counts requests in a
rolling window of `period` seconds, measured in real monotonic time rather than
on the emulator clock: a limit protects a server from the load it receives in
real time, so advancing a `ManualClock` neither refills nor drains it.

NOTE: Replicate does not document `Retry-After` or the meaning of the
`ratelimit-reset` header that its responses carry. The emulator sends both as
the whole seconds, rounded up, until the oldest request in the window leaves
it, which is when the next request is accepted again.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PREDICTIONS = "predictions"
OTHER = "other"

_PREDICTION_CREATE = re.compile(
    r"^/v1/(?:predictions|models/[^/]+/[^/]+/predictions|deployments/[^/]+/[^/]+/predictions)$"
)


@dataclass(frozen=True)
class RateLimit:
    """At most `count` requests in any `period` seconds of real time."""

    count: int
    period: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"count must be an integer of 1 or more, got {self.count!r}.")
        if (
            isinstance(self.period, bool)
            or not isinstance(self.period, int | float)
            or not math.isfinite(self.period)
            or self.period <= 0
        ):
            raise ValueError(f"period must be a number of seconds above 0, got {self.period!r}.")

    def to_json(self) -> dict[str, Any]:
        """Return `{"count", "period"}`."""
        return {"count": self.count, "period": self.period}


@dataclass(frozen=True)
class RateLimits:
    """The limit on prediction creations and the limit on every other API request.

    None turns a limit off. The defaults are Replicate's published limits.
    """

    predictions: RateLimit | None = RateLimit(600)
    other: RateLimit | None = RateLimit(3000)

    def to_json(self) -> dict[str, Any]:
        """Return both limits, null where one is off."""
        return {
            PREDICTIONS: self.predictions.to_json() if self.predictions else None,
            OTHER: self.other.to_json() if self.other else None,
        }


@dataclass(frozen=True)
class Decision:
    """Whether a request may proceed, and the values of the rate-limit headers.

    `reset_seconds` is 0 when the window contains no request.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        """Return the `ratelimit-remaining` and `ratelimit-reset` headers."""
        return {
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(self.reset_seconds),
        }


def bucket_for(method: str, path: str) -> str:
    """Return which limit a request counts against: predictions or other."""
    if method.upper() == "POST" and _PREDICTION_CREATE.match(path):
        return PREDICTIONS
    return OTHER


class RateLimiter:
    """Counts API requests in rolling windows. Safe to use from several threads."""

    def __init__(
        self,
        limits: RateLimits | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._limits = limits
        self._windows: dict[str, deque[float]] = {PREDICTIONS: deque(), OTHER: deque()}

    @property
    def limits(self) -> RateLimits | None:
        """The limits in force, or None when rate limiting is off."""
        with self._lock:
            return self._limits

    def set_limits(self, limits: RateLimits | None) -> None:
        """Replace the limits, None to turn rate limiting off, and empty the windows."""
        with self._lock:
            self._limits = limits
            for window in self._windows.values():
                window.clear()

    def reset(self) -> None:
        """Forget every counted request."""
        with self._lock:
            for window in self._windows.values():
                window.clear()

    def check(self, method: str, path: str) -> Decision | None:
        """Count a request if its limit allows it; None when no limit applies.

        A rejected request is not counted, so a client that keeps retrying is
        let through as soon as the window has room.
        """
        bucket = bucket_for(method, path)
        with self._lock:
            limits = self._limits
            limit = None if limits is None else getattr(limits, bucket)
            if limit is None:
                return None

            now = self._monotonic()
            window = self._windows[bucket]
            while window and window[0] <= now - limit.period:
                window.popleft()

            allowed = len(window) < limit.count
            if allowed:
                window.append(now)
            reset_seconds = max(math.ceil(window[0] + limit.period - now), 1) if window else 0
            return Decision(
                allowed=allowed,
                limit=limit.count,
                remaining=limit.count - len(window),
                reset_seconds=reset_seconds,
            )


def parse_rate_limits(document: Any) -> RateLimits | None:
    """Build `RateLimits` from the admin JSON form, or None for `null`.

    The form is `{"predictions": {"count", "period"} | null, "other": ...}`;
    a limit left out keeps Replicate's default. Raises ValueError or TypeError
    when the form is invalid.
    """
    if document is None:
        return None
    if not isinstance(document, dict):
        raise TypeError(f"rate limits must be an object or null, got {document!r}.")
    unknown = sorted(set(document) - {PREDICTIONS, OTHER})
    if unknown:
        raise ValueError(
            f"Unknown rate limit names: {', '.join(unknown)}. Use predictions and other."
        )

    defaults = RateLimits()
    limits: dict[str, RateLimit | None] = {
        PREDICTIONS: defaults.predictions,
        OTHER: defaults.other,
    }
    for name in (PREDICTIONS, OTHER):
        if name not in document:
            continue
        value = document[name]
        if value is None:
            limits[name] = None
            continue
        if not isinstance(value, dict) or set(value) - {"count", "period"}:
            raise ValueError(
                f'The {name} rate limit must be null or {{"count", "period"}}, got {value!r}.'
            )
        limits[name] = RateLimit(count=value.get("count", 0), period=value.get("period", 60.0))
    return RateLimits(predictions=limits[PREDICTIONS], other=limits[OTHER])
