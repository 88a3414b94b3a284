"""Clocks for the emulator: the system clock, a manual clock that tests advance, and
a scaled clock that runs faster than real time."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
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
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> datetime:
        """Return the clock's current time in UTC."""
        with self._lock:
            return self._now

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after each `advance`; return a function that removes it.

        The emulator's webhook worker listens, so that events due at the new
        time are sent at once.
        """
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

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
            now = self._now
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
        return now

    def __repr__(self) -> str:
        return f"ManualClock(start={self.now().isoformat()!r})"


class ScaledClock:
    """A clock that runs `factor` times faster than real time, for accelerated runs.

    It starts at `start`, or at the system time when `start` is None, and from
    then on moves `factor` emulated seconds per real second, measured with
    `time.monotonic`. With factor 60, a 30-second cold boot takes half a real
    second.
    """

    def __init__(self, factor: float, start: datetime | None = None) -> None:
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            raise TypeError(f"factor must be a number, got {factor!r}.")
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"factor must be a finite number above 0, got {factor!r}.")
        if start is None:
            start = datetime.now(UTC)
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"ScaledClock start must be timezone-aware, got {start!r}.")
        self.factor = float(factor)
        self._start = start.astimezone(UTC)
        self._origin = time.monotonic()

    def now(self) -> datetime:
        """Return the scaled time in UTC."""
        elapsed = (time.monotonic() - self._origin) * self.factor
        return self._start + timedelta(seconds=elapsed)

    def __repr__(self) -> str:
        return f"ScaledClock(factor={self.factor:g}, start={self._start.isoformat()!r})"


def format_timestamp(moment: datetime) -> str:
    """Format a datetime the way the API does: UTC, microseconds and a `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
