"""Clocks for the emulator: the system clock, and a manual clock that tests advance."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current time in UTC."""
        ...


class SystemClock:
    """The real time, read from the operating system."""

    def now(self) -> datetime:
        """Return the current time in UTC."""
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that changes only when `advance` moves it forward.

    It starts at `start`, or at the system time when `start` is None, so that
    timestamps look current and webhook timestamps pass a receiver's tolerance
    check. It is safe to read and advance from several threads.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime.now(UTC)
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(
                f"ManualClock start must be timezone-aware, got {start!r}. "
                "Pass a datetime with tzinfo, for example datetime(2024, 1, 1, "
                "tzinfo=UTC)."
            )
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Return the clock's current time in UTC."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by `seconds` and return the new time."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"seconds must be a number, got {seconds!r}.")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(
                "A clock cannot go back in time: seconds must be a finite "
                f"number of 0 or more, got {seconds!r}."
            )

        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock(start={self.now().isoformat()!r})"


def format_timestamp(moment: datetime) -> str:
    """Format a datetime the way the API does: UTC, microseconds and a `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
