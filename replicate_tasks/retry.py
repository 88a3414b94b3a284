"""Retry policies for API calls, built on tenacity.

Each failure is retried in this one layer: Prefect tasks that call the client do
not retry the same failures again. Which failures are retried depends on whether
repeating the call is harmless:

- 429 is always retried, after the delay in `Retry-After` (seconds or an HTTP
  date, capped), because the API rejected the request without acting on it.
- A connection that could not be opened is always retried: nothing was sent.
- 502, 503, 504, timeouts and dropped connections are retried only for calls
  that are safe to repeat (`Repeat.ALWAYS`: GET, PATCH to fixed values, DELETE).
  For a POST, the request may have been acted on, so the caller decides.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import tenacity

from .errors import APIConnectionError, APIStatusError, APITimeoutError, RateLimitError

__all__ = [
    "RateLimit",
    "RateLimiter",
    "Repeat",
    "RetryPolicy",
    "connection_error",
    "parse_retry_after",
]

RETRYABLE_STATUSES = frozenset({502, 503, 504})


class Repeat(enum.Enum):
    """Whether a call may be sent again after a failure that it may have survived."""

    ALWAYS = "always"
    """Repeating the call is harmless: GET, DELETE, or PATCH to fixed values."""

    UNSENT = "unsent"
    """Repeat only when the request surely did not take effect (429, no connection)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long the client retries a failed call.

    The wait before attempt n+1 is drawn uniformly from 0 up to
    `min(max_wait, initial_wait * 2**n)` (capped exponential backoff with full
    jitter), unless a 429 response names its own delay.
    """

    max_attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts!r}")
        for name in ("initial_wait", "max_wait", "max_retry_after"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be zero or more seconds, got {value!r}")

    def tenacity_options(
        self,
        repeat: Repeat,
        *,
        description: str,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> dict[str, Any]:
        """Build the keyword arguments of `tenacity.Retrying` for one call.

        `description` names the call (method and URL) in the retry log lines.
        """
        return {
            "stop": tenacity.stop_after_attempt(self.max_attempts),
            "wait": self._wait,
            "retry": tenacity.retry_if_exception(_should_retry(repeat)),
            "before_sleep": _log_retry(description, self.max_attempts, logger),
            "reraise": True,
        }

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        ceiling = min(self.max_wait, self.initial_wait * 2 ** (retry_state.attempt_number - 1))
        return random.uniform(0, ceiling)


def _should_retry(repeat: Repeat) -> Callable[[BaseException], bool]:
    def should_retry(error: BaseException) -> bool:
        if isinstance(error, RateLimitError):
            return True
        if isinstance(error, APIStatusError):
            return repeat is Repeat.ALWAYS and error.status in RETRYABLE_STATUSES
        if isinstance(error, APIConnectionError):
            return repeat is Repeat.ALWAYS or not error.request_sent
        return False

    return should_retry


def _log_retry(
    description: str,
    max_attempts: int,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> Callable[[tenacity.RetryCallState], None]:
    def log_retry(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "%s failed on attempt %d of %d (%s); retrying in %.2f s",
            description,
            retry_state.attempt_number,
            max_attempts,
            _describe(error),
            wait,
        )

    return log_retry


def _describe(error: BaseException | None) -> str:
    if isinstance(error, APIStatusError):
        return f"status {error.status}"
    if error is None:
        return "no error"
    return f"{type(error).__name__}: {error}"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse a `Retry-After` header into seconds to wait, or None if absent or invalid.

    The header contains either a number of seconds or an HTTP date (RFC 9110,
    section 10.2.3). A date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN is invalid.
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)


def connection_error(error: httpx.TransportError, description: str) -> APIConnectionError:
    """Translate an httpx transport error into the client's typed error.

    A failure to open the connection (or to get one from the pool) means the
    request was never sent, which makes it safe to repeat whatever it was.
    """
    unsent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    reason = str(error) or type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        return APITimeoutError(f"{description} timed out: {reason}", request_sent=not unsent)
    return APIConnectionError(
        f"{description} failed with no response: {reason}", request_sent=not unsent
    )


@dataclass(frozen=True)
class RateLimit:
    """Request budgets per rolling period, as Replicate enforces them.

    Replicate allows 600 prediction creations and 3000 other requests a
    minute, and returns 429 above that, as Replicate's rate-limits
    documentation states. `margin` widens the period a little, because the server sees each
    request a network delay after the client sends it.
    """

    predictions: int = 600
    other: int = 3000
    period: float = 60.0
    margin: float = 0.05

    def __post_init__(self) -> None:
        if self.predictions < 1 or self.other < 1:
            raise ValueError(
                f"rate limits must allow at least 1 request, got predictions={self.predictions!r} "
                f"and other={self.other!r}"
            )
        if self.period <= 0 or self.margin < 0:
            raise ValueError(
                f"period must be positive and margin zero or more, got {self.period!r} "
                f"and {self.margin!r}"
            )


class RateLimiter:
    """Spaces a client's requests so that no rolling period exceeds its budget.

    Each request reserves a send time: now, or else the moment the request
    `budget` places back in the log leaves the period. Reservations are made
    under a lock and recorded at once, so concurrent callers in threads and in
    event loops queue up instead of all waking at the same moment. One limiter
    serves the blocking and the async calls of one client.
    """

    def __init__(
        self, limit: RateLimit | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit or RateLimit()
        self._clock = clock
        self._lock = threading.Lock()
        self._sent: dict[str, deque[float]] = {"predictions": deque(), "other": deque()}

    def reserve(self, kind: str) -> float:
        """Reserve a send time for a request of `kind`, and return the seconds to wait for it."""
        budget = self.limit.predictions if kind == "predictions" else self.limit.other
        window = self.limit.period * (1 + self.limit.margin)
        with self._lock:
            now = self._clock()
            log = self._sent[kind]
            while log and log[0] <= now - window:
                log.popleft()
            slot = now if len(log) < budget else max(now, log[-budget] + window)
            log.append(slot)
            return slot - now

    def acquire(self, kind: str) -> None:
        delay = self.reserve(kind)
        if delay > 0:
            time.sleep(delay)

    async def async_acquire(self, kind: str) -> None:
        delay = self.reserve(kind)
        if delay > 0:
            await asyncio.sleep(delay)
