"""The log of API requests that an emulator received, in arrival order."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RecordedRequest:
    """One API request: its method, path (without query) and response status.

    `status` is 0 while the request is in flight, and for a connection dropped
    before the request was processed. `dropped` is True when the client got no
    complete response.
    """

    method: str
    path: str
    status: int
    dropped: bool = False


class Recorder:
    """Records requests as they arrive and fills in the status when they end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._entries: dict[int, RecordedRequest] = {}

    def start(self, method: str, path: str) -> int:
        """Record an arriving request and return its id."""
        with self._lock:
            entry_id = next(self._ids)
            self._entries[entry_id] = RecordedRequest(method=method, path=path, status=0)
            return entry_id

    def finish(self, entry_id: int, status: int, *, dropped: bool = False) -> None:
        """Set the status of a recorded request, unless the log was cleared since."""
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is not None:
                self._entries[entry_id] = replace(entry, status=status, dropped=dropped)

    def snapshot(self) -> list[RecordedRequest]:
        """Return a copy of the log, oldest first."""
        with self._lock:
            return list(self._entries.values())

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Count the requests that match `method` and `path` when they are given."""
        normalized_method = method.upper() if method is not None else None
        return sum(
            1
            for entry in self.snapshot()
            if (normalized_method is None or entry.method == normalized_method)
            and (path is None or entry.path == path)
        )

    def clear(self) -> None:
        """Forget every recorded request."""
        with self._lock:
            self._entries.clear()
