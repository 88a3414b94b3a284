"""The Replicate API client.

`Replicate` offers each call in two forms, as the official `replicate` package
does: `client.deployments.get(...)` blocks, `client.deployments.async_get(...)`
is awaited. Both forms run the same call: a generator that yields the requests
to send and receives their parsed results (or their errors). The client sends
each request through one of two small runners, sync or async, which apply the
rate limiter and the retry policy. Request building and response parsing are
written once (see `calls`).

Example:
    ```python
    from replicate_tasks import Replicate

    with Replicate() as client:  # REPLICATE_API_TOKEN from the environment
        deployment = client.deployments.get("acme", "image-generator")
        print(deployment.version, deployment.hardware, deployment.min_instances)
    ```
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import threading
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import tenacity
from pydantic import SecretStr

from .calls import Call, Done, Request, Sleep, parse_response, raise_for_status, resume, start
from .errors import ReplicateError
from .resources.accounts import Accounts, HardwareList
from .resources.deployments import Deployments
from .resources.models import Models
from .resources.predictions import Predictions, RunMixin
from .resources.webhooks import Webhooks
from .retry import RateLimit, RateLimiter, RetryPolicy, connection_error

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "Replicate", "__version__"]

DEFAULT_BASE_URL = "https://api.replicate.com"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0, pool=10.0)

try:
    __version__ = package_version("replicate-tasks")
except PackageNotFoundError:  # pragma: no cover - only when run from a bare source tree
    __version__ = "0.0.0"

USER_AGENT = f"replicate-tasks/{__version__}"

# Prediction creations have their own, smaller rate limit.
_PREDICTION_CREATE = re.compile(r"^/v1/(predictions|(models|deployments)/[^/]+/[^/]+/predictions)$")

REPLICATE_RATE_LIMIT = RateLimit()
"""Replicate's published limits: 600 prediction creations and 3000 other requests a minute."""

default_logger = logging.getLogger("replicate_tasks.client")

T = TypeVar("T")


class Replicate(RunMixin):
    """A client of the Replicate HTTP API.

    Args:
        api_token: The API token. Defaults to the `REPLICATE_API_TOKEN`
            environment variable.
        base_url: The API's address without the `/v1` prefix. Defaults to
            `REPLICATE_BASE_URL`, then `https://api.replicate.com`.
        timeout: Seconds, or an `httpx.Timeout`, for each request.
        retry: How transient failures are retried.
        rate_limit: The request budgets the client keeps to, so that bulk work
            waits instead of collecting 429s; None disables the limiter.
        transport: An httpx transport for the blocking calls (tests pass one).
        async_transport: An httpx transport for the `async_` calls.
        logger: Where retries are logged; Prefect tasks pass their run logger.
    """

    def __init__(
        self,
        api_token: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = REPLICATE_RATE_LIMIT,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        token = api_token or os.environ.get("REPLICATE_API_TOKEN") or None
        self._api_token = SecretStr(token) if token else None
        self.base_url = _normalize_base_url(
            base_url or os.environ.get("REPLICATE_BASE_URL") or DEFAULT_BASE_URL
        )
        if isinstance(timeout, httpx.Timeout):
            self.timeout = timeout
        else:
            self.timeout = DEFAULT_TIMEOUT if timeout is None else httpx.Timeout(timeout)
        self.retry = retry or RetryPolicy()
        self.limiter = (
            shared_limiter(self.base_url, self._api_token, rate_limit)
            if rate_limit is not None
            else None
        )
        self._transport = transport
        self._async_transport = async_transport
        self._logger = logger or default_logger
        self._sync_http: httpx.Client | None = None
        self._async_http: httpx.AsyncClient | None = None

        self.accounts = Accounts(self)
        self.deployments = Deployments(self)
        self.hardware = HardwareList(self)
        self.models = Models(self)
        self.predictions = Predictions(self)
        self.webhooks = Webhooks(self)

    def __repr__(self) -> str:
        return f"Replicate(base_url={self.base_url!r})"

    # Connection management

    def close(self) -> None:
        if self._sync_http is not None:
            self._sync_http.close()
            self._sync_http = None

    async def aclose(self) -> None:
        if self._async_http is not None:
            await self._async_http.aclose()
            self._async_http = None
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _headers(self) -> dict[str, str]:
        if not self._api_token:
            raise ReplicateError(
                "No Replicate API token: set the REPLICATE_API_TOKEN environment "
                "variable or pass api_token to Replicate()."
            )
        return {
            "Authorization": f"Bearer {self._api_token.get_secret_value()}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }

    def _sync_client(self) -> httpx.Client:
        if self._sync_http is None:
            self._sync_http = httpx.Client(
                base_url=self.base_url, timeout=self.timeout, transport=self._transport
            )
        return self._sync_http

    def _async_client(self) -> httpx.AsyncClient:
        if self._async_http is None:
            self._async_http = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=self.timeout,
                transport=self._async_transport,
            )
        return self._async_http

    # The two runners

    def _run(self, call: Call[T]) -> T:
        """Drive a call to its result, sending each request it yields."""
        step = start(call)
        while not isinstance(step, Done):
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                step = resume(call)
                continue
            try:
                result = self._send(step)
            except ReplicateError as error:
                step = resume(call, error=error)
            else:
                step = resume(call, result=result)
        return step.value

    async def _async_run(self, call: Call[T]) -> T:
        step = start(call)
        while not isinstance(step, Done):
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                step = resume(call)
                continue
            try:
                result = await self._async_send(step)
            except ReplicateError as error:
                step = resume(call, error=error)
            else:
                step = resume(call, result=result)
        return step.value

    def _send(self, request: Request[T]) -> T:
        http = self._sync_client()
        description = f"{request.method} {self.base_url}{request.path}"
        options = self.retry.tenacity_options(
            request.repeat, description=description, logger=self._logger
        )
        for attempt in tenacity.Retrying(**options):
            with attempt:
                built = self._build(http, request)
                if self.limiter is not None:
                    self.limiter.acquire(_limit_kind(request))
                try:
                    response = http.send(built)
                except httpx.TransportError as error:
                    raise connection_error(error, description) from error
                raise_for_status(response)
        return parse_response(request, response)

    async def _async_send(self, request: Request[T]) -> T:
        http = self._async_client()
        description = f"{request.method} {self.base_url}{request.path}"
        options = self.retry.tenacity_options(
            request.repeat, description=description, logger=self._logger
        )
        async for attempt in tenacity.AsyncRetrying(**options):
            with attempt:
                built = self._build(http, request)
                if self.limiter is not None:
                    await self.limiter.async_acquire(_limit_kind(request))
                try:
                    response = await http.send(built)
                except httpx.TransportError as error:
                    raise connection_error(error, description) from error
                raise_for_status(response)
        return parse_response(request, response)

    def _build(
        self, http: httpx.Client | httpx.AsyncClient, request: Request[Any]
    ) -> httpx.Request:
        headers = self._headers()
        if request.headers:
            headers.update(request.headers)
        timeout = self.timeout
        if request.timeout is not None:
            timeout = httpx.Timeout(self.timeout, read=request.timeout)
        return http.build_request(
            request.method,
            request.path,
            json=request.json,
            params=request.params,
            headers=headers,
            timeout=timeout,
        )


_limiters: dict[tuple[str, str, RateLimit], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(base_url: str, token: SecretStr | None, limit: RateLimit) -> RateLimiter:
    """Return the process's limiter for one account at one address.

    Replicate counts requests per account, and Prefect tasks each open their
    own client, so clients of the same token and base URL share one limiter.
    The token is keyed by its hash, so the registry contains no token.
    """
    secret = token.get_secret_value() if token else ""
    key = (base_url, hashlib.sha256(secret.encode()).hexdigest(), limit)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = RateLimiter(limit)
        return limiter


def _limit_kind(request: Request[Any]) -> str:
    if request.method == "POST" and _PREDICTION_CREATE.match(request.path):
        return "predictions"
    return "other"


def _normalize_base_url(url: str) -> str:
    if not url.startswith(("https://", "http://")):
        raise ValueError(
            f"base URL {url!r} (from base_url or REPLICATE_BASE_URL) is invalid; expected an "
            f"http(s) URL such as https://api.replicate.com"
        )
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url
