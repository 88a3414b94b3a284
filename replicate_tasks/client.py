"""The Replicate API client.

`Replicate` offers each call in two forms, as the official `replicate` package
does: `client.deployments.get(...)` blocks, `client.deployments.async_get(...)`
is awaited. Both forms run the same call: a generator that yields the requests
to send and receives their parsed results (or their errors). The client sends
each request through one of two small runners, sync or async, which apply the
retry policy. Request building and response parsing are written once.

Example:
    ```python
    from replicate_tasks import Replicate

    with Replicate() as client:  # REPLICATE_API_TOKEN from the environment
        deployment = client.deployments.get("acme", "image-generator")
        print(deployment.version, deployment.hardware, deployment.min_instances)
    ```
"""

from __future__ import annotations

import builtins
import logging
import os
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import httpx
import pydantic
import tenacity

from .errors import (
    APIConnectionError,
    ConflictError,
    NotFoundError,
    ReplicateError,
    ServerError,
    error_from_response,
)
from .models import Account, Deployment, Hardware, Model, ModelVersion, Page
from .retry import (
    RETRYABLE_STATUSES,
    Repeat,
    RetryPolicy,
    connection_error,
    parse_retry_after,
)

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "Replicate"]

DEFAULT_BASE_URL = "https://api.replicate.com"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0, pool=10.0)

try:
    __version__ = package_version("replicate-tasks")
except PackageNotFoundError:  # pragma: no cover - only when run from a bare source tree
    __version__ = "0.0.0"

USER_AGENT = f"replicate-tasks/{__version__}"

logger = logging.getLogger("replicate_tasks.client")

T = TypeVar("T")


@dataclass(frozen=True)
class Request(Generic[T]):
    """One HTTP request of a call, with the parser of its successful response."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: Mapping[str, str] | None = None
    repeat: Repeat = Repeat.ALWAYS


Call = Generator[Request[Any], Any, T]
"""A client operation: yields requests, receives each one's result, returns its own."""


class Replicate:
    """A client of the Replicate HTTP API.

    Args:
        api_token: The API token. Defaults to the `REPLICATE_API_TOKEN`
            environment variable.
        base_url: The API's address without the `/v1` prefix. Defaults to
            `REPLICATE_BASE_URL`, then `https://api.replicate.com`.
        timeout: Seconds, or an `httpx.Timeout`, for each request.
        retry: How transient failures are retried.
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
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self._api_token = api_token or os.environ.get("REPLICATE_API_TOKEN") or None
        self.base_url = _normalize_base_url(
            base_url or os.environ.get("REPLICATE_BASE_URL") or DEFAULT_BASE_URL
        )
        self.timeout = (
            timeout
            if isinstance(timeout, httpx.Timeout)
            else (httpx.Timeout(timeout) if timeout is not None else DEFAULT_TIMEOUT)
        )
        self.retry = retry or RetryPolicy()
        self._transport = transport
        self._async_transport = async_transport
        self._logger = logger or globals()["logger"]
        self._sync_http: httpx.Client | None = None
        self._async_http: httpx.AsyncClient | None = None

        self.accounts = Accounts(self)
        self.deployments = Deployments(self)
        self.hardware = HardwareList(self)
        self.models = Models(self)

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
                "No Replicate API token: set the REPLICATE_API_TOKEN environment variable "
                "or pass api_token to Replicate()."
            )
        return {
            "Authorization": f"Bearer {self._api_token}",
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
        step = _start(call)
        while isinstance(step, Request):
            try:
                result = self._send(step)
            except ReplicateError as error:
                step = _resume(call, error=error)
            else:
                step = _resume(call, result=result)
        return step.value

    async def _async_run(self, call: Call[T]) -> T:
        step = _start(call)
        while isinstance(step, Request):
            try:
                result = await self._async_send(step)
            except ReplicateError as error:
                step = _resume(call, error=error)
            else:
                step = _resume(call, result=result)
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
                try:
                    response = http.send(built)
                except httpx.TransportError as error:
                    raise connection_error(error, description) from error
                _raise_for_status(response)
        return _parse(request, response)

    async def _async_send(self, request: Request[T]) -> T:
        http = self._async_client()
        description = f"{request.method} {self.base_url}{request.path}"
        options = self.retry.tenacity_options(
            request.repeat, description=description, logger=self._logger
        )
        async for attempt in tenacity.AsyncRetrying(**options):
            with attempt:
                built = self._build(http, request)
                try:
                    response = await http.send(built)
                except httpx.TransportError as error:
                    raise connection_error(error, description) from error
                _raise_for_status(response)
        return _parse(request, response)

    def _build(
        self, http: httpx.Client | httpx.AsyncClient, request: Request[Any]
    ) -> httpx.Request:
        return http.build_request(
            request.method,
            request.path,
            json=request.json,
            params=request.params,
            headers=self._headers(),
        )


@dataclass(frozen=True)
class _Done(Generic[T]):
    value: T


def _start(call: Call[T]) -> Request[Any] | _Done[T]:
    try:
        return next(call)
    except StopIteration as stop:
        return _Done(stop.value)


def _resume(
    call: Call[T], *, result: Any = None, error: ReplicateError | None = None
) -> Request[Any] | _Done[T]:
    try:
        if error is not None:
            return call.throw(error)
        return call.send(result)
    except StopIteration as stop:
        return _Done(stop.value)


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    raise error_from_response(response, retry_after=retry_after)


def _parse(request: Request[T], response: httpx.Response) -> T:
    try:
        return request.parse(response)
    except (ValueError, pydantic.ValidationError) as error:
        raise ReplicateError(
            f"{request.method} {response.request.url} returned a response "
            f"that could not be parsed: {error}"
        ) from error


def _normalize_base_url(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def _split_ref(owner: str, name: str | None, kind: str) -> tuple[str, str]:
    """Accept `("owner", "name")` or `("owner/name", None)`, as the official client does."""
    if name is None:
        parts = owner.split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(
                f"{kind} {owner!r} is not of the form 'owner/name'; pass owner and name."
            )
        return parts[0], parts[1]
    if not owner or not name or "/" in owner or "/" in name:
        raise ValueError(
            f"{kind} owner {owner!r} and name {name!r} must be non-empty and contain no '/'."
        )
    return owner, name


def _model_parser(model_type: type[T]) -> Callable[[httpx.Response], T]:
    adapter = pydantic.TypeAdapter(model_type)

    def parse(response: httpx.Response) -> T:
        return adapter.validate_json(response.content)

    return parse


def _no_content(response: httpx.Response) -> None:
    return None


_deployment = _model_parser(Deployment)
_deployment_page = _model_parser(Page[Deployment])
_account = _model_parser(Account)
_hardware_list = _model_parser(list[Hardware])
_model = _model_parser(Model)
_version = _model_parser(ModelVersion)
_version_page = _model_parser(Page[ModelVersion])


def _relative(cursor: str) -> str:
    """Reduce a `next` URL to its path and query, so the token only goes to the base URL."""
    url = httpx.URL(cursor)
    query = url.query.decode()
    return url.path + (f"?{query}" if query else "")


def _may_have_taken_effect(error: ReplicateError) -> bool:
    if isinstance(error, APIConnectionError):
        return error.request_sent
    return isinstance(error, ServerError) and error.status in RETRYABLE_STATUSES


# Calls


def _get_deployment(owner: str, name: str) -> Request[Deployment]:
    return Request("GET", f"/v1/deployments/{owner}/{name}", _deployment)


def _create_deployment(body: dict[str, Any]) -> Call[Deployment]:
    post = Request("POST", "/v1/deployments", _deployment, json=body, repeat=Repeat.UNSENT)
    try:
        created: Deployment = yield post
        return created
    except ReplicateError as error:
        if not _may_have_taken_effect(error):
            raise
        failure = error

    # The POST may have created the deployment before its response was lost:
    # look for it instead of repeating a request that would then fail with 409.
    account: Account = yield Request("GET", "/v1/account", _account)
    try:
        existing: Deployment = yield _get_deployment(account.username, body["name"])
    except NotFoundError:
        created = yield post
        return created
    if _release_matches(existing, body):
        return existing
    raise ConflictError(
        409,
        title="Conflict",
        detail=(
            f"deployment {existing.ref} exists with other settings after a create request "
            f"whose response was lost ({failure}); inspect it before retrying."
        ),
    )


def _release_matches(deployment: Deployment, body: Mapping[str, Any]) -> bool:
    release = deployment.current_release
    if release is None:
        return False
    configuration = release.configuration
    return bool(
        release.model == body["model"]
        and release.version == body["version"]
        and configuration.hardware == body["hardware"]
        and configuration.min_instances == body["min_instances"]
        and configuration.max_instances == body["max_instances"]
    )


def _delete_deployment(owner: str, name: str) -> Call[None]:
    delete = Request("DELETE", f"/v1/deployments/{owner}/{name}", _no_content, repeat=Repeat.UNSENT)
    try:
        yield delete
        return
    except ReplicateError as error:
        if not _may_have_taken_effect(error):
            raise

    # The DELETE may have succeeded before its response was lost: a 404 now means it did.
    try:
        yield _get_deployment(owner, name)
    except NotFoundError:
        return
    yield delete


def _single(request: Request[T]) -> Call[T]:
    result: T = yield request
    return result


# Namespaces


class _Namespace:
    def __init__(self, client: Replicate) -> None:
        self._client = client

    def _run(self, call: Call[T]) -> T:
        return self._client._run(call)

    async def _async_run(self, call: Call[T]) -> T:
        return await self._client._async_run(call)


class Accounts(_Namespace):
    """The account that owns the API token."""

    def current(self) -> Account:
        return self._run(_single(Request("GET", "/v1/account", _account)))

    async def async_current(self) -> Account:
        return await self._async_run(_single(Request("GET", "/v1/account", _account)))


class HardwareList(_Namespace):
    """The hardware SKUs that deployments can use."""

    def list(self) -> builtins.list[Hardware]:
        return self._run(_single(Request("GET", "/v1/hardware", _hardware_list)))

    async def async_list(self) -> builtins.list[Hardware]:
        return await self._async_run(_single(Request("GET", "/v1/hardware", _hardware_list)))


class Deployments(_Namespace):
    """Create, read, change and delete deployments."""

    def get(self, owner: str, name: str | None = None) -> Deployment:
        """Return one deployment; `owner` may also be `"owner/name"` with no `name`."""
        return self._run(_single(_get_deployment(*_split_ref(owner, name, "deployment"))))

    async def async_get(self, owner: str, name: str | None = None) -> Deployment:
        return await self._async_run(
            _single(_get_deployment(*_split_ref(owner, name, "deployment")))
        )

    def list(self, cursor: str | None = None) -> Page[Deployment]:
        """Return one page of deployments, newest first; pass `page.next` as `cursor`."""
        return self._run(_single(_list_deployments(cursor)))

    async def async_list(self, cursor: str | None = None) -> Page[Deployment]:
        return await self._async_run(_single(_list_deployments(cursor)))

    def pages(self) -> Iterator[Page[Deployment]]:
        """Iterate over every page of deployments, following `next` until the last."""
        page = self.list()
        yield page
        while page.next:
            page = self.list(page.next)
            yield page

    async def async_pages(self) -> AsyncIterator[Page[Deployment]]:
        page = await self.async_list()
        yield page
        while page.next:
            page = await self.async_list(page.next)
            yield page

    def list_all(self) -> builtins.list[Deployment]:
        """Return every deployment of the account, from all pages."""
        return [deployment for page in self.pages() for deployment in page.results]

    async def async_list_all(self) -> builtins.list[Deployment]:
        return [deployment async for page in self.async_pages() for deployment in page.results]

    def create(
        self,
        name: str,
        model: str,
        version: str,
        *,
        hardware: str,
        min_instances: int,
        max_instances: int,
    ) -> Deployment:
        """Create a deployment owned by the token's account.

        If the response is lost after the request was sent, the client checks
        with a GET whether the deployment was created instead of sending the
        request again.
        """
        body = _create_body(name, model, version, hardware, min_instances, max_instances)
        return self._run(_create_deployment(body))

    async def async_create(
        self,
        name: str,
        model: str,
        version: str,
        *,
        hardware: str,
        min_instances: int,
        max_instances: int,
    ) -> Deployment:
        body = _create_body(name, model, version, hardware, min_instances, max_instances)
        return await self._async_run(_create_deployment(body))

    def update(
        self,
        owner: str,
        name: str,
        *,
        version: str | None = None,
        hardware: str | None = None,
        min_instances: int | None = None,
        max_instances: int | None = None,
    ) -> Deployment:
        """Change a deployment; every update makes a new release, even one that changes nothing."""
        body = _update_body(version, hardware, min_instances, max_instances)
        return self._run(_single(_update_deployment(owner, name, body)))

    async def async_update(
        self,
        owner: str,
        name: str,
        *,
        version: str | None = None,
        hardware: str | None = None,
        min_instances: int | None = None,
        max_instances: int | None = None,
    ) -> Deployment:
        body = _update_body(version, hardware, min_instances, max_instances)
        return await self._async_run(_single(_update_deployment(owner, name, body)))

    def delete(self, owner: str, name: str | None = None) -> None:
        """Delete a deployment.

        Replicate deletes only deployments that have been offline (minimum
        instances 0) and unused for 15 minutes, and returns 409 before that.
        """
        self._run(_delete_deployment(*_split_ref(owner, name, "deployment")))

    async def async_delete(self, owner: str, name: str | None = None) -> None:
        await self._async_run(_delete_deployment(*_split_ref(owner, name, "deployment")))


def _list_deployments(cursor: str | None) -> Request[Page[Deployment]]:
    path = _relative(cursor) if cursor else "/v1/deployments"
    return Request("GET", path, _deployment_page)


def _update_deployment(owner: str, name: str, body: dict[str, Any]) -> Request[Deployment]:
    owner, name = _split_ref(owner, name, "deployment")
    return Request("PATCH", f"/v1/deployments/{owner}/{name}", _deployment, json=body)


def _create_body(
    name: str,
    model: str,
    version: str,
    hardware: str,
    min_instances: int,
    max_instances: int,
) -> dict[str, Any]:
    if "/" in name:
        # Like the official client, accept "owner/name": the owner is always the token's account.
        name = name.partition("/")[2]
    return {
        "name": name,
        "model": model,
        "version": version,
        "hardware": hardware,
        "min_instances": min_instances,
        "max_instances": max_instances,
    }


def _update_body(
    version: str | None,
    hardware: str | None,
    min_instances: int | None,
    max_instances: int | None,
) -> dict[str, Any]:
    fields = {
        "version": version,
        "hardware": hardware,
        "min_instances": min_instances,
        "max_instances": max_instances,
    }
    body = {key: value for key, value in fields.items() if value is not None}
    if not body:
        raise ValueError(
            "update() needs at least one of version, hardware, min_instances or max_instances; "
            "an empty update would still make a new release."
        )
    return body


class Models(_Namespace):
    """Models and their versions."""

    def __init__(self, client: Replicate) -> None:
        super().__init__(client)
        self.versions = ModelVersions(client)

    def get(self, owner: str, name: str | None = None) -> Model:
        """Return a model; `owner` may also be `"owner/name"` with no `name`."""
        owner, name = _split_ref(owner, name, "model")
        return self._run(_single(Request("GET", f"/v1/models/{owner}/{name}", _model)))

    async def async_get(self, owner: str, name: str | None = None) -> Model:
        owner, name = _split_ref(owner, name, "model")
        return await self._async_run(_single(Request("GET", f"/v1/models/{owner}/{name}", _model)))


class ModelVersions(_Namespace):
    """The versions of a model."""

    def get(self, model: str, version_id: str) -> ModelVersion:
        """Return one version of `model` (`"owner/name"`); NotFoundError if it does not exist."""
        return self._run(_single(_get_version(model, version_id)))

    async def async_get(self, model: str, version_id: str) -> ModelVersion:
        return await self._async_run(_single(_get_version(model, version_id)))

    def list(self, model: str, cursor: str | None = None) -> Page[ModelVersion]:
        """Return one page of the versions of `model`, newest first."""
        return self._run(_single(_list_versions(model, cursor)))

    async def async_list(self, model: str, cursor: str | None = None) -> Page[ModelVersion]:
        return await self._async_run(_single(_list_versions(model, cursor)))


def _get_version(model: str, version_id: str) -> Request[ModelVersion]:
    owner, name = _split_ref(model, None, "model")
    if not version_id or "/" in version_id:
        raise ValueError(f"version id {version_id!r} is invalid; pass the 64-character id alone.")
    return Request("GET", f"/v1/models/{owner}/{name}/versions/{version_id}", _version)


def _list_versions(model: str, cursor: str | None) -> Request[Page[ModelVersion]]:
    owner, name = _split_ref(model, None, "model")
    path = _relative(cursor) if cursor else f"/v1/models/{owner}/{name}/versions"
    return Request("GET", path, _version_page)
