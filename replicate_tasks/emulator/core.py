"""The `Emulator`: one emulated Replicate account with its app, clock and faults."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import uvicorn

from .app import build_app
from .catalog import (
    DEFAULT_COG_VERSION,
    Catalog,
    Model,
    ModelVersion,
    minimal_openapi_schema,
    parse_version,
)
from .clock import Clock, SystemClock
from .faults import Faults
from .recording import RecordedRequest, Recorder
from .server import quiet_dropped_connections, serve_in_thread
from .state import EmulatorState
from .transport import EmulatorTransport


class Emulator:
    """An emulated Replicate account, served in process or on a local port.

    Args:
        clock: The source of time for timestamps and the delete window.
            Defaults to `SystemClock()`. Pass a `ManualClock` to control time.
        account: The username of the organization that owns the token and
            every deployment.
        api_token: The only token accepted, or None to accept any non-empty
            `Bearer` or `Token` credential. A missing or malformed
            Authorization header is always a 401.
        page_size: The number of items on each page of a list response.
        models: Extra models in the catalog.json form, added to the bundled
            catalog.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        account: str = "acme",
        api_token: str | None = None,
        page_size: int = 100,
        models: Iterable[Mapping[str, Any]] | None = None,
    ) -> None:
        if not account or "/" in account:
            raise ValueError(f"account must be a non-empty username without '/', got {account!r}.")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be an integer of 1 or more, got {page_size!r}.")

        self.clock: Clock = clock if clock is not None else SystemClock()
        self.catalog = Catalog.load_default()
        self.state = EmulatorState(
            catalog=self.catalog, clock=self.clock, account=account, page_size=page_size
        )
        self.faults = Faults()
        self._recorder = Recorder()
        self.app = build_app(
            state=self.state,
            clock=self.clock,
            faults=self.faults,
            recorder=self._recorder,
            api_token=api_token,
        )
        for spec in models or ():
            self.add_model(spec)

    @property
    def account(self) -> str:
        """The username that owns every deployment."""
        return self.state.account

    @property
    def webhook_secret(self) -> str:
        """The `whsec_...` signing secret that `GET /v1/webhooks/default/secret` returns."""
        return self.state.webhook_secret

    @property
    def requests(self) -> list[RecordedRequest]:
        """The API requests received so far, in arrival order.

        Admin routes are left out. Requests that a fault rule failed or dropped
        are included.
        """
        return self._recorder.snapshot()

    def request_count(self, method: str | None = None, path: str | None = None) -> int:
        """Count the recorded API requests with this method and path, when given."""
        return self._recorder.count(method, path)

    def add_model(self, spec: Mapping[str, Any]) -> Model:
        """Add a model in the catalog.json form; versions without `created_at` get now."""
        return self.catalog.add_model(spec, default_created_at=self.clock.now())

    def add_version(
        self,
        model: str,
        version_id: str,
        *,
        created_at: datetime | None = None,
        cog_version: str = DEFAULT_COG_VERSION,
        openapi_schema: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Add a version to the model `owner/name` and return it.

        `created_at` defaults to the emulator's current time, which makes the
        new version the model's latest.
        """
        spec: dict[str, Any] = {
            "id": version_id,
            "cog_version": cog_version,
            "openapi_schema": openapi_schema or minimal_openapi_schema(),
        }
        if created_at is not None:
            spec["created_at"] = created_at

        version = parse_version(spec, model, minimal_openapi_schema(), self.clock.now())
        self.catalog.add_version(model, version)
        return version

    def reset(self) -> None:
        """Delete every deployment, fault rule and recorded request."""
        self.state.reset()
        self.faults.clear()
        self._recorder.clear()

    def transport(self) -> httpx.AsyncBaseTransport:
        """Return an httpx transport that sends requests to this emulator in process."""
        return EmulatorTransport(self.app)

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve the emulator with uvicorn on a daemon thread and yield its base URL.

        Port 0 picks a free port. The base URL, such as `http://127.0.0.1:54321`,
        has no `/v1`: clients put `/v1/...` in each path.
        """
        with serve_in_thread(self.app, host, port) as url:
            yield url


def run(host: str = "127.0.0.1", port: int = 8787, **options: Any) -> None:
    """Serve a new emulator until interrupted; blocking.

    `options` are passed to `Emulator`, for example `account`, `api_token`,
    `page_size` or `clock=ManualClock()` to advance time through
    `POST /_emulator/clock/advance`.
    """
    emulator = Emulator(**options)
    quiet_dropped_connections()
    uvicorn.run(emulator.app, host=host, port=port, lifespan="off")
