"""An httpx transport that sends requests to the emulator app in process."""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp

from .app import ConnectionDropped


class EmulatorTransport(httpx.AsyncBaseTransport):
    """Send requests to the emulator's ASGI app, with no socket.

    A connection that the emulator drops surfaces as `httpx.RemoteProtocolError`,
    the error a client sees when a real server closes the connection early.
    Other exceptions raised by the app propagate unchanged, so bugs stay
    visible in tests.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Run the request through the app and return its response."""
        try:
            return await self._asgi.handle_async_request(request)
        except ConnectionDropped as error:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a complete response.",
                request=request,
            ) from error

    async def aclose(self) -> None:
        """Close the wrapped ASGI transport."""
        await self._asgi.aclose()
