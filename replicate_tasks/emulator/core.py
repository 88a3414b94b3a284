"""The `Emulator`: one emulated Replicate account with its app, clock and faults."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
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
from .files import file_url
from .lifecycle import prediction_json
from .parts import EmulatorParts
from .predictions import PredictionStore
from .ratelimit import RateLimiter, RateLimits
from .recording import RecordedRequest, Recorder
from .server import quiet_dropped_connections, serve_in_thread
from .settings import UNSET, Settings, SettingsStore, Unset
from .state import EmulatorState
from .transport import EmulatorTransport
from .webhooks import Delivery, WebhookDispatcher, WebhookOptions


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
        rate_limits: The limits on prediction creations and on other API
            requests, counted in real time. Defaults to Replicate's published
            600 and 3000 a minute. None turns rate limiting off.
        webhook_hosts: Host names or addresses, besides loopback ones, that
            predictions may send webhooks to. By default a webhook to any other
            host is rejected with 422 when the prediction is created.
        webhook_options: Retries, timeouts and throttling of webhook delivery.
            Its `hosts` are added to `webhook_hosts`.
        data_uri_outputs: Whether a create with `Prefer: wait` that returns a
            finished prediction shows output files as data URIs instead of
            URLs, as the real API may. Later reads always show URLs.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        account: str = "acme",
        api_token: str | None = None,
        page_size: int = 100,
        models: Iterable[Mapping[str, Any]] | None = None,
        *,
        rate_limits: RateLimits | None = RateLimits(),  # noqa: B008 (immutable)
        webhook_hosts: Iterable[str] = (),
        webhook_options: WebhookOptions | None = None,
        data_uri_outputs: bool = False,
    ) -> None:
        if not account or "/" in account:
            raise ValueError(f"account must be a non-empty username without '/', got {account!r}.")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be an integer of 1 or more, got {page_size!r}.")
        if isinstance(webhook_hosts, str):
            raise TypeError(
                f"webhook_hosts must be a list of host names, got the string {webhook_hosts!r}."
            )

        self.clock: Clock = clock if clock is not None else SystemClock()
        self.catalog = Catalog.load_default()
        self.state = EmulatorState(
            catalog=self.catalog, clock=self.clock, account=account, page_size=page_size
        )
        self.faults = Faults()
        self.settings = SettingsStore()
        self.predictions = PredictionStore(clock=self.clock, settings=self.settings)
        options = webhook_options or WebhookOptions()
        self.webhook_options = WebhookOptions(
            hosts=options.hosts | frozenset(webhook_hosts),
            attempts=options.attempts,
            backoff_seconds=options.backoff_seconds,
            timeout_seconds=options.timeout_seconds,
            throttle_seconds=options.throttle_seconds,
            poll_seconds=options.poll_seconds,
        )
        self._webhooks = WebhookDispatcher(
            predictions=self.predictions,
            clock=self.clock,
            secret=self.state.webhook_secret,
            render=lambda record, at: prediction_json(record, at, file_url),
            options=self.webhook_options,
        )
        self._rate_limiter = RateLimiter(rate_limits)
        self._recorder = Recorder()
        self._parts = EmulatorParts(
            state=self.state,
            clock=self.clock,
            faults=self.faults,
            recorder=self._recorder,
            predictions=self.predictions,
            settings=self.settings,
            webhooks=self._webhooks,
            rate_limiter=self._rate_limiter,
        )
        self.app = build_app(
            self._parts,
            api_token=api_token,
            webhook_hosts=self.webhook_options.hosts,
            data_uri_outputs=data_uri_outputs,
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

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook message so far with its attempts, in the order they were queued."""
        return self._webhooks.deliveries

    def flush_webhooks(self, timeout: float = 10.0) -> None:
        """Wait until the webhooks due now are delivered or out of attempts; blocking.

        Events due later, such as `completed` for a prediction still running on
        a `ManualClock`, are not waited for. Raises TimeoutError after
        `timeout` real seconds. In async code, use `aflush_webhooks`.
        """
        self._webhooks.flush(timeout)

    async def aflush_webhooks(self, timeout: float = 10.0) -> None:
        """Wait like `flush_webhooks`, on a worker thread so the event loop keeps running."""
        await asyncio.to_thread(self._webhooks.flush, timeout)

    def configure(
        self,
        *,
        model: str | None = None,
        version: str | None = None,
        deployment: str | None = None,
        boot_seconds: float | Unset | None = UNSET,
        predict_seconds: float | Unset | None = UNSET,
        idle_seconds: float | Unset | None = UNSET,
        failure: str | Unset | None = UNSET,
        fail_rate: float | Unset | None = UNSET,
    ) -> Settings:
        """Set how simulated predictions behave, for one model, version or deployment.

        Name at most one of `model` ("owner/name"), `version` (a version id) or
        `deployment` ("owner/name"); with none, the emulator-wide defaults
        change. For each prediction the most specific setting wins: deployment,
        then version, then model, then the defaults. Options left out stay as
        they are, and None removes an option from that level.

        Args:
            boot_seconds: Cold-boot time (default 30). The default applies to
                deployment predictions only; predictions by model or version
                start warm unless their model or version sets it.
            predict_seconds: Processing time of each prediction (default 2).
            idle_seconds: How long an instance stays warm after its last
                prediction (default 60).
            failure: An error message: predictions end `failed` with it.
            fail_rate: The share of predictions, from 0 to 1, that fail,
                chosen from each prediction's id.
        """
        return self.settings.configure(
            model=model,
            version=version,
            deployment=deployment,
            boot_seconds=boot_seconds,
            predict_seconds=predict_seconds,
            idle_seconds=idle_seconds,
            failure=failure,
            fail_rate=fail_rate,
        )

    @property
    def rate_limits(self) -> RateLimits | None:
        """The rate limits in force, or None when rate limiting is off."""
        return self._rate_limiter.limits

    def set_rate_limits(self, limits: RateLimits | None) -> None:
        """Replace the rate limits (None turns them off) and empty their windows."""
        self._rate_limiter.set_limits(limits)

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
        """Delete deployments, predictions, deliveries, faults, settings and recorded requests.

        The catalog, clock, webhook secret and rate limits stay, and the
        rate-limit windows start empty.
        """
        self._parts.reset()

    def close(self) -> None:
        """Stop the webhook worker thread, if one runs. Pending messages are dropped."""
        self._webhooks.close()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

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
    try:
        uvicorn.run(emulator.app, host=host, port=port, lifespan="off")
    finally:
        emulator.close()
