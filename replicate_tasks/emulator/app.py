"""The emulator's Starlette app: routes, problem+json errors, auth, faults, rate limits,
recording.

Every API request passes through `EmulatorMiddleware`, which records it, waits
for the configured latency, applies the next matching fault, counts it against
the rate limits, checks the Authorization header and then calls the routes.
Admin routes under `/_emulator/` skip all of that.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Collection, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .admin import ADMIN_PREFIX, AdminApi
from .api import ReplicateApi
from .faults import DropFault, FailFault, Faults
from .parts import EmulatorParts
from .prediction_api import PredictionApi
from .problems import ProblemError, problem_response, response_for
from .ratelimit import Decision, RateLimiter
from .recording import Recorder

logger = logging.getLogger("replicate_tasks.emulator")

_NO_BODY_STATUSES = {204, 304}


class ConnectionDropped(Exception):
    """Raised by the app after a partial response, so the server closes the connection.

    The in-process transport turns it into `httpx.RemoteProtocolError`, and
    uvicorn closes the socket when an app raises after starting a response.
    """


def build_app(
    parts: EmulatorParts,
    *,
    api_token: str | None,
    webhook_hosts: Collection[str],
    data_uri_outputs: bool,
) -> Starlette:
    """Build the ASGI app over the emulator's parts."""
    api = ReplicateApi(parts.state)
    predictions = PredictionApi(
        state=parts.state,
        predictions=parts.predictions,
        webhooks=parts.webhooks,
        clock=parts.clock,
        webhook_hosts=webhook_hosts,
        data_uri_outputs=data_uri_outputs,
    )
    admin = AdminApi(parts)
    app = Starlette(
        routes=[*api.routes(), *predictions.routes(), *admin.routes()],
        middleware=[
            Middleware(
                EmulatorMiddleware,
                faults=parts.faults,
                recorder=parts.recorder,
                rate_limiter=parts.rate_limiter,
                api_token=api_token,
            )
        ],
        exception_handlers={
            ProblemError: _handle_problem,
            HTTPException: _handle_http_exception,
        },
    )
    # The real API documents no trailing-slash redirects, so an unknown path
    # is a 404 problem, not a 307 that the client would have to follow.
    app.router.redirect_slashes = False
    return app


@dataclass
class _CapturedResponse:
    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)


class EmulatorMiddleware:
    """Record, delay, fault, rate-limit and authenticate each API request (pure ASGI)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        faults: Faults,
        recorder: Recorder,
        rate_limiter: RateLimiter,
        api_token: str | None,
    ) -> None:
        self.app = app
        self.faults = faults
        self.recorder = recorder
        self.rate_limiter = rate_limiter
        self.api_token = api_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_admin_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        method: str = scope["method"]
        path: str = scope["path"]
        entry = self.recorder.start(method, path)

        latency = self.faults.latency
        if latency > 0:
            await asyncio.sleep(latency)

        fault = self.faults.take(method, path)
        if isinstance(fault, FailFault):
            logger.info("Injected a %s response to %s %s.", fault.status, method, path)
            await _fault_response(fault)(scope, receive, send)
            self.recorder.finish(entry, fault.status)
            return

        if isinstance(fault, DropFault):
            await self._drop(scope, receive, send, entry, fault)

        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._answer(scope, receive, send_and_note_status)
        finally:
            self.recorder.finish(entry, status)

    async def _drop(
        self, scope: Scope, receive: Receive, send: Send, entry: int, fault: DropFault
    ) -> NoReturn:
        """Drop the connection. With `after_change`, process the request first."""
        method: str = scope["method"]
        path: str = scope["path"]
        if not fault.after_change:
            self.recorder.finish(entry, 0, dropped=True)
            await _drop_connection(send, method, path, status=200, body_length=1)

        captured = await self._answer_captured(scope, receive)
        self.recorder.finish(entry, captured.status, dropped=True)
        await _drop_connection(
            send, method, path, status=captured.status, body_length=len(captured.body) + 1
        )

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        decision = self.rate_limiter.check(scope["method"], scope["path"])
        if decision is not None:
            send = _with_headers(send, decision.headers())
            if not decision.allowed:
                logger.info("Rate limit: rejected %s %s with 429.", scope["method"], scope["path"])
                await _throttled(decision)(scope, receive, send)
                return

        problem = self._authentication_problem(Headers(scope=scope))
        if problem is not None:
            await problem(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _answer_captured(self, scope: Scope, receive: Receive) -> _CapturedResponse:
        captured = _CapturedResponse()

        async def capture(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                captured.status = message["status"]
                captured.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured.body += message.get("body", b"")

        await self._answer(scope, receive, capture)
        return captured

    def _authentication_problem(self, headers: Headers) -> Response | None:
        value = headers.get("authorization")
        if value is None:
            logger.debug("Rejected a request without an Authorization header.")
            return _unauthenticated(
                "Missing Authorization header. Send 'Authorization: Bearer <API token>'."
            )

        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme.lower() not in ("bearer", "token") or not token:
            logger.debug("Rejected a malformed Authorization header.")
            return _unauthenticated(
                "Malformed Authorization header: expected 'Bearer <API token>' "
                "or 'Token <API token>'."
            )

        if self.api_token is not None and not hmac.compare_digest(
            token.encode(), self.api_token.encode()
        ):
            logger.debug("Rejected a request whose API token does not match.")
            return _unauthenticated(
                "You did not pass a valid authentication token. Check the API "
                "token that the client sends."
            )
        return None


def _with_headers(send: Send, headers: dict[str, str]) -> Send:
    """Wrap `send` so that the response starts with these extra headers."""
    encoded = [(name.encode(), value.encode()) for name, value in headers.items()]

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *encoded]}
        await send(message)

    return send_with_headers


def _throttled(decision: Decision) -> Response:
    seconds = decision.reset_seconds
    return problem_response(
        429,
        f"Request was throttled. Your rate limit resets in ~{seconds}s.",
        headers={"Retry-After": str(seconds)},
    )


def _is_admin_path(path: str) -> bool:
    return path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/")


def _unauthenticated(detail: str) -> Response:
    return problem_response(
        401,
        detail,
        title="Unauthenticated",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _fault_response(fault: FailFault) -> Response:
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after

    if fault.body is None:
        return problem_response(fault.status, fault.detail(), headers=headers)
    return Response(
        fault.body,
        status_code=fault.status,
        headers=headers,
        media_type=fault.content_type,
    )


async def _drop_connection(
    send: Send, method: str, path: str, *, status: int, body_length: int
) -> NoReturn:
    """Start a response that promises a body, then raise so that none follows.

    A status that cannot carry a body (204, 304) would make the empty response
    complete, so those are sent as 200.
    """
    if status in _NO_BODY_STATUSES or status < 200:
        status = 200

    logger.info("Dropping the connection of %s %s, as a fault rule requests.", method, path)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(body_length).encode()),
            ],
        }
    )
    raise ConnectionDropped(f"The emulator dropped the connection of {method} {path}.")


async def _handle_problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, ProblemError)
    return response_for(error)


async def _handle_http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    headers = dict(error.headers or {})
    if error.status_code == 404:
        detail = (
            f"No route matches {request.method} {request.url.path}. API paths "
            "start with /v1/, such as /v1/deployments."
        )
    elif error.status_code == 405:
        allowed = headers.get("Allow", "")
        detail = (
            f"Method {request.method} is not allowed for {request.url.path}. "
            f"Allowed methods: {allowed}."
        )
    else:
        detail = str(error.detail)
    return problem_response(error.status_code, detail, headers=headers)
