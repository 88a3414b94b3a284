"""Admin routes under `/_emulator/`, for scripting an emulator that runs as a server.

They are not part of the Replicate API: they need no token, are not recorded,
and faults and latency never apply to them.

- `GET /_emulator/clock` returns `{"now"}`.
- `POST /_emulator/clock/advance` with `{"seconds": 900}` moves a manual clock.
- `GET /_emulator/faults` returns the pending rules and the latency.
- `POST /_emulator/faults` adds a rule: `{"kind": "fail", "status": 503, ...}`
  takes the arguments of `Faults.fail_next`, `{"kind": "drop", ...}` those of
  `Faults.drop_next`, and `{"kind": "latency", "seconds": 0.5}` sets the latency.
- `DELETE /_emulator/faults` removes every rule and the latency.
- `GET /_emulator/requests` returns `{"requests": [{"method", "path", "status",
  "dropped"}]}`.
- `POST /_emulator/reset` deletes every deployment, fault and recorded request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from .api import route
from .clock import Clock, ManualClock, format_timestamp
from .faults import Faults
from .problems import ProblemError
from .recording import Recorder
from .state import EmulatorState
from .validation import parse_json_object, show

ADMIN_PREFIX = "/_emulator/"

_FAULT_KEYS = {
    "fail": {"kind", "status", "count", "method", "path", "retry_after", "body", "content_type"},
    "drop": {"kind", "count", "method", "path", "after_change"},
    "latency": {"kind", "seconds"},
}


class AdminApi:
    """Handlers of the `/_emulator/` routes."""

    def __init__(
        self,
        *,
        state: EmulatorState,
        clock: Clock,
        faults: Faults,
        recorder: Recorder,
    ) -> None:
        self.state = state
        self.clock = clock
        self.faults = faults
        self.recorder = recorder

    def routes(self) -> list[BaseRoute]:
        """Return the `/_emulator/` routes."""
        return [
            route("/_emulator/clock", GET=self.get_clock),
            route("/_emulator/clock/advance", POST=self.advance_clock),
            route(
                "/_emulator/faults",
                GET=self.get_faults,
                POST=self.add_fault,
                DELETE=self.clear_faults,
            ),
            route("/_emulator/requests", GET=self.list_requests),
            route("/_emulator/reset", POST=self.reset),
        ]

    async def get_clock(self, request: Request) -> Response:
        """Return the emulator's current time."""
        return JSONResponse({"now": format_timestamp(self.clock.now())})

    async def advance_clock(self, request: Request) -> Response:
        """Move a `ManualClock` forward; 409 for any other clock."""
        if not isinstance(self.clock, ManualClock):
            raise ProblemError(
                409,
                f"The emulator clock is {self.clock!r}, which cannot be advanced. "
                "Start the emulator with clock=ManualClock() to control time.",
            )

        body = parse_json_object(await request.body())
        _reject_unknown_keys(body, {"seconds"})
        seconds = body.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ProblemError(
                422,
                f"Invalid seconds {show(seconds)}: expected a number of seconds, 0 or more.",
            )
        try:
            now = self.clock.advance(seconds)
        except ValueError as error:
            raise ProblemError(422, str(error)) from error
        return JSONResponse({"now": format_timestamp(now)})

    async def get_faults(self, request: Request) -> Response:
        """Return the pending fault rules and the latency."""
        return JSONResponse(self.faults.to_json())

    async def add_fault(self, request: Request) -> Response:
        """Add a fault rule or set the latency, from its JSON form."""
        body = parse_json_object(await request.body())
        kind = body.get("kind")
        if kind not in _FAULT_KEYS:
            raise ProblemError(
                422,
                f"Invalid kind {show(kind)}: expected one of {', '.join(sorted(_FAULT_KEYS))}.",
            )
        _reject_unknown_keys(body, _FAULT_KEYS[str(kind)])

        try:
            _apply_fault(self.faults, str(kind), body)
        except (TypeError, ValueError) as error:
            raise ProblemError(422, str(error)) from error
        return JSONResponse(self.faults.to_json())

    async def clear_faults(self, request: Request) -> Response:
        """Remove every fault rule and the latency."""
        self.faults.clear()
        return Response(status_code=204)

    async def list_requests(self, request: Request) -> Response:
        """Return the recorded API requests in arrival order."""
        entries = [
            {
                "method": entry.method,
                "path": entry.path,
                "status": entry.status,
                "dropped": entry.dropped,
            }
            for entry in self.recorder.snapshot()
        ]
        return JSONResponse({"requests": entries})

    async def reset(self, request: Request) -> Response:
        """Delete every deployment, fault rule and recorded request."""
        self.state.reset()
        self.faults.clear()
        self.recorder.clear()
        return Response(status_code=204)


def _apply_fault(faults: Faults, kind: str, body: Mapping[str, Any]) -> None:
    if kind == "latency":
        faults.set_latency(_number(body, "seconds"))
        return

    count = body.get("count", 1)
    method = _optional_text(body, "method")
    path = _optional_text(body, "path")
    if kind == "drop":
        after_change = body.get("after_change", False)
        if not isinstance(after_change, bool):
            raise TypeError(f"after_change must be true or false, got {show(after_change)}.")
        faults.drop_next(count=count, method=method, path=path, after_change=after_change)
        return

    faults.fail_next(
        _integer(body, "status"),
        count=count,
        method=method,
        path=path,
        retry_after=_optional_text(body, "retry_after"),
        body=_optional_text(body, "body"),
        content_type=_optional_text(body, "content_type"),
    )


def _number(body: Mapping[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key} must be a number, got {show(value)}.")
    return float(value)


def _integer(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer, got {show(value)}.")
    return value


def _optional_text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string or null, got {show(value)}.")
    return value


def _reject_unknown_keys(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ProblemError(
            422,
            f"Unknown fields: {', '.join(unknown)}. Allowed fields: {', '.join(sorted(allowed))}.",
        )
