"""Admin routes under `/_emulator/`, for scripting an emulator that runs as a server.

They are not part of the Replicate API: they need no token, are not recorded,
and faults and latency never apply to them.

- `GET /_emulator/clock` returns `{"now"}`.
- `POST /_emulator/clock/advance` with `{"seconds": 900}` moves a manual clock.
- `GET /_emulator/faults` returns the pending rules, error rates and latency.
- `POST /_emulator/faults` adds a rule: `{"kind": "fail", "status": 503, ...}`
  takes the arguments of `Faults.fail_next`, `{"kind": "drop", ...}` those of
  `Faults.drop_next`, `{"kind": "error_rate", "status": 503, "rate": 0.2, ...}`
  those of `Faults.set_error_rate`, and `{"kind": "latency", "seconds": 0.5}`
  sets the latency.
- `DELETE /_emulator/faults` removes every rule, error rate and the latency.
- `GET /_emulator/settings` returns the prediction settings layers, and
  `POST /_emulator/settings` changes one, taking the arguments of
  `Emulator.configure`: `{"deployment": "acme/app", "boot_seconds": 0}`.
- `GET /_emulator/rate-limits` returns the limits, and `POST` replaces them:
  `{"predictions": {"count": 20, "period": 1}, "other": null}`, where null
  turns a limit off and a limit left out gets Replicate's default.
- `GET /_emulator/webhooks` returns `{"deliveries": [...]}`, and
  `POST /_emulator/webhooks/flush` with `{"timeout": 5}` waits for the
  webhooks due now (504 when they are still pending after the timeout).
- `GET /_emulator/requests` returns `{"requests": [{"method", "path", "status",
  "dropped"}]}`.
- `GET /_emulator/files/{prediction_id}/{name}` serves an output file.
- `POST /_emulator/reset` deletes every deployment, prediction, webhook
  delivery, fault, setting and recorded request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from .api import route
from .clock import ManualClock, format_timestamp
from .faults import Faults
from .files import FileRoutes
from .parts import EmulatorParts
from .problems import ProblemError
from .ratelimit import parse_rate_limits
from .settings import UNSET
from .validation import parse_json_object, show

ADMIN_PREFIX = "/_emulator/"

_FAULT_KEYS = {
    "fail": {"kind", "status", "count", "method", "path", "retry_after", "body", "content_type"},
    "drop": {"kind", "count", "method", "path", "after_change"},
    "error_rate": {"kind", "status", "rate", "method", "path", "seed", "retry_after"},
    "latency": {"kind", "seconds"},
}
_SETTINGS_TARGETS = ("model", "version", "deployment")
_SETTINGS_OPTIONS = ("boot_seconds", "predict_seconds", "idle_seconds", "failure", "fail_rate")


class AdminApi:
    """Handlers of the `/_emulator/` routes."""

    def __init__(self, parts: EmulatorParts) -> None:
        self.parts = parts
        self.state = parts.state
        self.clock = parts.clock
        self.faults = parts.faults
        self.recorder = parts.recorder
        self.files = FileRoutes(parts.predictions, parts.clock)

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
            route("/_emulator/settings", GET=self.get_settings, POST=self.change_settings),
            route(
                "/_emulator/rate-limits",
                GET=self.get_rate_limits,
                POST=self.set_rate_limits,
            ),
            route("/_emulator/webhooks", GET=self.list_deliveries),
            route("/_emulator/webhooks/flush", POST=self.flush_webhooks),
            route("/_emulator/requests", GET=self.list_requests),
            route("/_emulator/files/{prediction_id}/{name}", GET=self.files.get_file),
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
        """Remove every fault rule, error rate and the latency."""
        self.faults.clear()
        return Response(status_code=204)

    async def get_settings(self, request: Request) -> Response:
        """Return the prediction settings layers."""
        return JSONResponse(self.parts.settings.to_json())

    async def change_settings(self, request: Request) -> Response:
        """Change the options given for one settings layer."""
        body = parse_json_object(await request.body())
        _reject_unknown_keys(body, {*_SETTINGS_TARGETS, *_SETTINGS_OPTIONS})
        options = {key: body.get(key, UNSET) for key in _SETTINGS_OPTIONS}
        try:
            self.parts.settings.configure(
                model=_optional_text(body, "model"),
                version=_optional_text(body, "version"),
                deployment=_optional_text(body, "deployment"),
                **options,
            )
        except (TypeError, ValueError) as error:
            raise ProblemError(422, str(error)) from error
        return JSONResponse(self.parts.settings.to_json())

    async def get_rate_limits(self, request: Request) -> Response:
        """Return the rate limits, null where a limit is off."""
        return JSONResponse(_rate_limits_json(self.parts))

    async def set_rate_limits(self, request: Request) -> Response:
        """Replace the rate limits and empty their windows."""
        body = parse_json_object(await request.body())
        try:
            limits = parse_rate_limits(body)
        except (TypeError, ValueError) as error:
            raise ProblemError(422, str(error)) from error
        self.parts.rate_limiter.set_limits(limits)
        return JSONResponse(_rate_limits_json(self.parts))

    async def list_deliveries(self, request: Request) -> Response:
        """Return every webhook message with its attempts."""
        deliveries = [delivery.to_json() for delivery in self.parts.webhooks.deliveries]
        return JSONResponse({"deliveries": deliveries})

    async def flush_webhooks(self, request: Request) -> Response:
        """Wait for the webhooks due now; 504 when some are still pending at the timeout."""
        raw = await request.body()
        body = parse_json_object(raw) if raw.strip() else {}
        _reject_unknown_keys(body, {"timeout"})
        try:
            timeout = _number(body, "timeout") if "timeout" in body else 10.0
        except TypeError as error:
            raise ProblemError(422, str(error)) from error
        try:
            await asyncio.to_thread(self.parts.webhooks.flush, timeout)
        except TimeoutError as error:
            raise ProblemError(504, str(error)) from error
        return await self.list_deliveries(request)

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
        """Delete every deployment, prediction, delivery, fault, setting and recorded request."""
        self.parts.reset()
        return Response(status_code=204)


def _apply_fault(faults: Faults, kind: str, body: Mapping[str, Any]) -> None:
    if kind == "latency":
        faults.set_latency(_number(body, "seconds"))
        return

    method = _optional_text(body, "method")
    path = _optional_text(body, "path")
    if kind == "error_rate":
        seed = body.get("seed")
        if seed is not None:
            seed = _integer(body, "seed")
        faults.set_error_rate(
            _integer(body, "status"),
            _number(body, "rate"),
            method=method,
            path=path,
            seed=seed,
            retry_after=_optional_text(body, "retry_after"),
        )
        return

    count = body.get("count", 1)
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


def _rate_limits_json(parts: EmulatorParts) -> dict[str, Any]:
    limits = parts.rate_limiter.limits
    if limits is None:
        return {"predictions": None, "other": None}
    return limits.to_json()


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
