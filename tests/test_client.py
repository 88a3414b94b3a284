"""The client against the emulator served on 127.0.0.1, over real HTTP."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from replicate_tasks import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    Replicate,
    ReplicateError,
    RetryPolicy,
    ServerError,
)
from replicate_tasks.emulator import Emulator, ManualClock

from .conftest import FAST_RETRY

SDXL = "stability-ai/sdxl"
SDXL_VERSION = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
SDXL_OTHER_VERSION = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"


def create_sdxl(client: Replicate, name: str = "images", **overrides: object) -> object:
    options: dict[str, object] = {"hardware": "gpu-t4", "min_instances": 0, "max_instances": 2}
    options.update(overrides)
    return client.deployments.create(name, SDXL, SDXL_VERSION, **options)  # type: ignore[arg-type]


def test_create_returns_first_release(client: Replicate) -> None:
    deployment = client.deployments.create(
        "images", SDXL, SDXL_VERSION, hardware="gpu-t4", min_instances=1, max_instances=3
    )

    assert deployment.owner == "acme"
    assert deployment.name == "images"
    assert deployment.release_number == 1
    assert deployment.model == SDXL
    assert deployment.version == SDXL_VERSION
    assert deployment.hardware == "gpu-t4"
    assert deployment.min_instances == 1
    assert deployment.max_instances == 3
    assert deployment.release.created_by is not None
    assert deployment.release.created_by.username == "acme"


def test_get_accepts_both_reference_forms(client: Replicate) -> None:
    create_sdxl(client)

    by_parts = client.deployments.get("acme", "images")
    by_ref = client.deployments.get("acme/images")

    assert by_parts == by_ref
    assert by_parts.ref == "acme/images"


def test_update_makes_new_release(client: Replicate) -> None:
    create_sdxl(client)

    first = client.deployments.update("acme", "images", max_instances=5)
    second = client.deployments.update("acme", "images", version=SDXL_OTHER_VERSION)

    assert first.release_number == 2
    assert first.max_instances == 5
    assert second.release_number == 3
    assert second.version == SDXL_OTHER_VERSION
    assert second.max_instances == 5


def test_update_without_fields_sends_nothing(client: Replicate, emulator: Emulator) -> None:
    create_sdxl(client)
    before = len(emulator.requests)

    with pytest.raises(ValueError, match="at least one of version, hardware"):
        client.deployments.update("acme", "images")

    assert len(emulator.requests) == before


def test_delete_after_offline_window(client: Replicate, emulator: Emulator) -> None:
    create_sdxl(client)
    assert isinstance(emulator.clock, ManualClock)

    with pytest.raises(ConflictError) as refused:
        client.deployments.delete("acme", "images")
    emulator.clock.advance(15 * 60)
    client.deployments.delete("acme", "images")

    assert refused.value.status == 409
    with pytest.raises(NotFoundError):
        client.deployments.get("acme", "images")


def test_hardware_and_account(client: Replicate) -> None:
    hardware = client.hardware.list()
    account = client.accounts.current()

    skus = [item.sku for item in hardware]
    assert "cpu" in skus
    assert "gpu-t4" in skus
    assert all(item.name for item in hardware)
    assert account.username == "acme"
    assert account.type == "organization"


def test_models_and_versions(client: Replicate) -> None:
    model = client.models.get(SDXL)
    version = client.models.versions.get(SDXL, SDXL_VERSION)

    assert model.owner == "stability-ai"
    assert model.name == "sdxl"
    assert version.id == SDXL_VERSION
    assert version.openapi_schema is not None
    with pytest.raises(NotFoundError):
        client.models.versions.get(SDXL, "0" * 64)
    with pytest.raises(NotFoundError):
        client.models.get("nobody/nothing")


async def test_async_forms(client: Replicate) -> None:
    created = await client.deployments.async_create(
        "images", SDXL, SDXL_VERSION, hardware="gpu-t4", min_instances=0, max_instances=1
    )
    updated = await client.deployments.async_update("acme", "images", hardware="gpu-a40-large")
    fetched = await client.deployments.async_get("acme/images")
    listed = await client.deployments.async_list_all()
    hardware = await client.hardware.async_list()
    account = await client.accounts.async_current()
    await client.aclose()

    assert created.release_number == 1
    assert updated.release_number == 2
    assert fetched.hardware == "gpu-a40-large"
    assert [deployment.ref for deployment in listed] == ["acme/images"]
    assert "gpu-a40-large" in [item.sku for item in hardware]
    assert account.username == "acme"


# Pagination


def test_pagination_across_pages() -> None:
    emulator = Emulator(clock=ManualClock(), page_size=2)
    with emulator.serve() as url, Replicate("token", url, retry=FAST_RETRY) as client:
        for index in range(5):
            create_sdxl(client, f"app-{index}")
            emulator.clock.advance(1)  # type: ignore[attr-defined]

        first = client.deployments.list()
        pages = list(client.deployments.pages())
        everything = client.deployments.list_all()

    assert len(first.results) == 2
    assert first.next is not None
    assert first.next.startswith(url)
    assert [len(page.results) for page in pages] == [2, 2, 1]
    assert pages[-1].next is None
    assert [d.name for d in everything] == ["app-4", "app-3", "app-2", "app-1", "app-0"]


def test_next_url_host_is_not_trusted(client: Replicate, emulator: Emulator) -> None:
    create_sdxl(client)

    page = client.deployments.list("https://attacker.example/v1/deployments")

    # The cursor's path is requested from the configured base URL, not from its host.
    assert [d.name for d in page.results] == ["images"]


# Retries


def test_retry_through_429(client: Replicate, emulator: Emulator) -> None:
    emulator.faults.fail_next(429, count=2, path="/v1/hardware", retry_after="0")

    hardware = client.hardware.list()

    assert len(hardware) > 0
    assert emulator.request_count("GET", "/v1/hardware") == 3


def test_retry_after_as_http_date(client: Replicate, emulator: Emulator) -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=1), usegmt=True)
    emulator.faults.fail_next(429, count=1, path="/v1/account", retry_after=soon)

    account = client.accounts.current()

    assert account.username == "acme"
    assert emulator.request_count("GET", "/v1/account") == 2


def test_retry_through_503(client: Replicate, emulator: Emulator) -> None:
    emulator.faults.fail_next(503, count=3, path="/v1/account")

    account = client.accounts.current()

    assert account.username == "acme"
    assert emulator.request_count("GET", "/v1/account") == 4


def test_retry_through_dropped_connection(client: Replicate, emulator: Emulator) -> None:
    emulator.faults.drop_next(count=1, path="/v1/hardware")

    hardware = client.hardware.list()

    assert len(hardware) > 0
    assert emulator.request_count("GET", "/v1/hardware") == 2


def test_retries_exhausted_raise_last_error(client: Replicate, emulator: Emulator) -> None:
    emulator.faults.fail_next(429, count=10, path="/v1/account", retry_after="0")

    with pytest.raises(RateLimitError) as raised:
        client.accounts.current()

    assert raised.value.retry_after == 0
    assert emulator.request_count("GET", "/v1/account") == FAST_RETRY.max_attempts


def test_retry_is_logged(
    client: Replicate, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.faults.fail_next(503, count=1, path="/v1/account")

    with caplog.at_level(logging.WARNING, logger="replicate_tasks.client"):
        client.accounts.current()

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "/v1/account failed on attempt 1 of 4 (status 503); retrying in" in messages[0]


def test_create_after_lost_response_is_not_repeated(client: Replicate, emulator: Emulator) -> None:
    emulator.faults.drop_next(count=1, method="POST", path="/v1/deployments", after_change=True)

    deployment = create_sdxl(client)

    assert deployment.release_number == 1  # type: ignore[attr-defined]
    assert emulator.request_count("POST", "/v1/deployments") == 1
    assert emulator.request_count("GET", "/v1/deployments/acme/images") == 1


def test_create_after_503_checks_then_posts_again(client: Replicate, emulator: Emulator) -> None:
    emulator.faults.fail_next(503, count=1, method="POST", path="/v1/deployments")

    deployment = create_sdxl(client)

    assert deployment.release_number == 1  # type: ignore[attr-defined]
    assert emulator.request_count("POST", "/v1/deployments") == 2
    assert emulator.request_count("GET", "/v1/deployments/acme/images") == 1


def test_create_is_not_retried_on_500(client: Replicate, emulator: Emulator) -> None:
    emulator.faults.fail_next(500, count=1, method="POST", path="/v1/deployments")

    with pytest.raises(ServerError):
        create_sdxl(client)

    assert emulator.request_count("POST", "/v1/deployments") == 1


def test_delete_after_lost_response_succeeds(client: Replicate, emulator: Emulator) -> None:
    create_sdxl(client)
    emulator.clock.advance(15 * 60)  # type: ignore[attr-defined]
    emulator.faults.drop_next(count=1, method="DELETE", after_change=True)

    client.deployments.delete("acme", "images")

    assert emulator.request_count("DELETE", "/v1/deployments/acme/images") == 1
    with pytest.raises(NotFoundError):
        client.deployments.get("acme", "images")


def test_read_timeout_retried_for_get(emulator: Emulator, emulator_url: str) -> None:
    emulator.faults.set_latency(0.5)
    policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01)

    with (
        Replicate("token", emulator_url, timeout=0.1, retry=policy) as client,
        pytest.raises(APITimeoutError) as raised,
    ):
        client.accounts.current()

    assert raised.value.request_sent is True
    assert emulator.request_count("GET", "/v1/account") == 2


def test_connection_refused_is_typed() -> None:
    policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01)
    # Port 9 on loopback: nothing listens there, so the connection is refused at once.
    with (
        Replicate("token", "http://127.0.0.1:9", retry=policy) as client,
        pytest.raises(APIConnectionError) as raised,
    ):
        client.hardware.list()

    assert raised.value.request_sent is False
    assert "failed with no response" in str(raised.value)


# Errors from real responses


def test_invalid_request_names_field(client: Replicate) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        create_sdxl(client, min_instances=9)

    assert raised.value.status == 422
    assert "min_instances" in str(raised.value)
    assert client.deployments.list_all() == []


def test_duplicate_name_is_conflict(client: Replicate) -> None:
    create_sdxl(client)

    with pytest.raises(ConflictError) as raised:
        create_sdxl(client)

    assert raised.value.status == 409
    assert str(raised.value).startswith("POST ")


def test_wrong_token_is_authentication_error() -> None:
    emulator = Emulator(clock=ManualClock(), api_token="right-token")
    with (
        emulator.serve() as url,
        Replicate("wrong-token", url, retry=FAST_RETRY) as client,
        pytest.raises(AuthenticationError) as raised,
    ):
        client.accounts.current()

    assert raised.value.status == 401
    assert "wrong-token" not in str(raised.value)
    assert "right-token" not in str(raised.value)


def test_html_502_becomes_server_error(client: Replicate, emulator: Emulator) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    emulator.faults.fail_next(
        502, count=10, path="/v1/account", body=page, content_type="text/html"
    )

    with pytest.raises(ServerError) as raised:
        client.accounts.current()

    assert raised.value.status == 502
    assert raised.value.detail == page


def test_missing_token_sends_nothing(
    emulator: Emulator, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)

    with Replicate(base_url=emulator_url) as client, pytest.raises(ReplicateError) as raised:
        client.hardware.list()

    assert "REPLICATE_API_TOKEN" in str(raised.value)
    assert len(emulator.requests) == 0


# Configuration


def test_environment_configures_client(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[{"sku": "cpu", "name": "CPU"}])

    monkeypatch.setenv("REPLICATE_API_TOKEN", "env-token")
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://replicate.test/v1/")
    with Replicate(transport=httpx.MockTransport(record)) as client:
        client.hardware.list()

    assert str(seen[0].url) == "http://replicate.test/v1/hardware"
    assert seen[0].headers["Authorization"] == "Bearer env-token"
    assert seen[0].headers["User-Agent"].startswith("replicate-tasks/")
    assert "env-token" not in repr(client)


def test_in_process_transport(emulator: Emulator) -> None:
    import asyncio

    async def main() -> str:
        async with Replicate(
            "token", "http://emulator.test", async_transport=emulator.transport()
        ) as client:
            account = await client.accounts.async_current()
            return account.username

    assert asyncio.run(main()) == "acme"


def test_base_url_without_scheme_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_BASE_URL", "127.0.0.1:8787")

    with pytest.raises(
        ValueError, match=r"base URL '127\.0\.0\.1:8787' \(from base_url or REPLICATE_BASE_URL\)"
    ):
        Replicate("token")
