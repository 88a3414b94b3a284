"""Tests of the Replicate API emulator, driven over HTTP in process and served."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from typing import Any

import httpx
import pytest

from replicate_tasks.emulator import Emulator, ManualClock, SystemClock

AUTH = {"Authorization": "Bearer test-token"}
START = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)

SDXL = "stability-ai/sdxl"
SDXL_LATEST = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"
SDXL_NOVEMBER = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
SDXL_VERSIONS = [
    SDXL_LATEST,
    SDXL_NOVEMBER,
    "a00d0b7dcbb9c3fbb34ba87d2d5b46c56969c84a628bf778a7fdaec30b1b99c5",
    "d02f1e612690b04427b4be7700c4e17457a71758d21805e9ebc54698429bf05e",
]
HELLO_WORLD_VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
REQUIRED_SKUS = {
    "cpu",
    "gpu-t4",
    "gpu-l40s",
    "gpu-a40-small",
    "gpu-a40-large",
    "gpu-a100-large",
    "gpu-h100",
}


def create_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "image-generator",
        "model": SDXL,
        "version": SDXL_LATEST,
        "hardware": "gpu-t4",
        "min_instances": 0,
        "max_instances": 3,
    }
    body.update(overrides)
    return body


def manual_clock(emulator: Emulator) -> ManualClock:
    assert isinstance(emulator.clock, ManualClock)
    return emulator.clock


def in_process_client(emulator: Emulator, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://emulator.test", **options
    )


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(clock=ManualClock(START))


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(emulator, headers=AUTH) as http:
        yield http


async def create(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/v1/deployments", json=create_body(**overrides))
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    document: dict[str, Any] = response.json()
    assert set(document) == {"title", "detail", "status"}
    assert document["status"] == status
    assert isinstance(document["title"], str)
    return document


# Account, hardware and the webhook secret


async def test_account_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/account")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "type": "organization",
        "username": "acme",
        "name": "Acme",
        "github_url": "https://github.com/acme",
    }


async def test_account_uses_configured_username() -> None:
    emulator = Emulator(account="blue-sky")
    async with in_process_client(emulator, headers=AUTH) as http:
        response = await http.get("/v1/account")

    assert response.json()["username"] == "blue-sky"
    assert response.json()["name"] == "Blue Sky"


async def test_hardware_is_bare_array(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/hardware")

    assert response.status_code == 200
    hardware = response.json()
    assert isinstance(hardware, list)
    assert {item["sku"] for item in hardware} >= REQUIRED_SKUS
    for item in hardware:
        assert set(item) == {"sku", "name"}
        assert item["name"]
    assert hardware[0] == {"sku": "cpu", "name": "CPU"}
    assert {"sku": "gpu-t4", "name": "Nvidia T4 GPU"} in hardware


async def test_webhook_secret_stable_per_emulator(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    first = (await client.get("/v1/webhooks/default/secret")).json()
    second = (await client.get("/v1/webhooks/default/secret")).json()

    assert set(first) == {"key"}
    assert first == second
    assert first["key"] == emulator.webhook_secret
    prefix, _, encoded = first["key"].partition("_")
    assert prefix == "whsec"
    assert len(base64.b64decode(encoded, validate=True)) == 32
    assert Emulator().webhook_secret != emulator.webhook_secret


# Deployments: create and get


async def test_create_deployment_shape(client: httpx.AsyncClient, emulator: Emulator) -> None:
    response = await client.post("/v1/deployments", json=create_body())

    assert response.status_code == 200
    deployment = response.json()
    assert set(deployment) == {"owner", "name", "current_release"}
    assert deployment["owner"] == "acme"
    assert deployment["name"] == "image-generator"

    release = deployment["current_release"]
    assert set(release) == {
        "number",
        "model",
        "version",
        "created_at",
        "created_by",
        "configuration",
    }
    assert release["number"] == 1
    assert release["model"] == SDXL
    assert release["version"] == SDXL_LATEST
    assert release["created_at"] == "2024-05-01T12:00:00.123456Z"
    assert release["created_by"] == (await client.get("/v1/account")).json()
    assert release["configuration"] == {
        "hardware": "gpu-t4",
        "min_instances": 0,
        "max_instances": 3,
    }


async def test_created_at_converted_to_utc() -> None:
    clock = ManualClock(datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    local = Emulator(clock=clock)
    async with in_process_client(local, headers=AUTH) as http:
        deployment = await create(http)

    assert deployment["current_release"]["created_at"] == "2024-05-01T12:00:00.000000Z"


async def test_get_deployment_returns_created(client: httpx.AsyncClient) -> None:
    created = await create(client)

    response = await client.get("/v1/deployments/acme/image-generator")

    assert response.status_code == 200
    assert response.json() == created


async def test_get_unknown_deployment_404(client: httpx.AsyncClient) -> None:
    await create(client)

    missing = await client.get("/v1/deployments/acme/nothing-here")
    other_owner = await client.get("/v1/deployments/someone-else/image-generator")

    detail = assert_problem(missing, 404)["detail"]
    assert "acme/nothing-here" in detail
    assert "not found" in detail
    assert "someone-else/image-generator" in assert_problem(other_owner, 404)["detail"]


async def test_create_duplicate_name_409(client: httpx.AsyncClient) -> None:
    first = await create(client)

    response = await client.post("/v1/deployments", json=create_body(hardware="cpu"))

    detail = assert_problem(response, 409)["detail"]
    assert "acme/image-generator" in detail
    assert "already exists" in detail
    unchanged = await client.get("/v1/deployments/acme/image-generator")
    assert unchanged.json() == first


@pytest.mark.parametrize(
    ("overrides", "removed", "expected"),
    [
        ({}, "name", ["Missing required fields: name"]),
        ({}, "max_instances", ["Missing required fields: max_instances"]),
        ({"name": 7}, None, ["name", "7"]),
        ({"name": "acme/thing"}, None, ["name", '"acme/thing"']),
        ({"model": "stability-ai"}, None, ["model", '"stability-ai"']),
        ({"model": "nobody/nothing"}, None, ["model", '"nobody/nothing"', "not found"]),
        ({"version": "abc123"}, None, ["version", '"abc123"', "64"]),
        ({"version": SDXL_LATEST.upper()}, None, ["version", SDXL_LATEST.upper()]),
        (
            {"version": HELLO_WORLD_VERSION},
            None,
            ["version", HELLO_WORLD_VERSION, "not a version of model stability-ai/sdxl"],
        ),
        ({"hardware": "gpu-z9"}, None, ["hardware", '"gpu-z9"', "gpu-t4"]),
        ({"hardware": None}, None, ["hardware", "null"]),
        ({"min_instances": True}, None, ["min_instances", "true", "integer"]),
        ({"min_instances": 6}, None, ["min_instances", "6", "0 to 5"]),
        ({"min_instances": -1}, None, ["min_instances", "-1"]),
        ({"min_instances": "1"}, None, ["min_instances", '"1"']),
        ({"max_instances": 21}, None, ["max_instances", "21", "0 to 20"]),
        ({"max_instances": 2.5}, None, ["max_instances", "2.5"]),
        ({"min_instances": 3, "max_instances": 2}, None, ["min_instances 3", "max_instances 2"]),
        ({"region": "us-east"}, None, ["Unknown field region", '"us-east"']),
    ],
)
async def test_create_validation_error_changes_nothing(
    client: httpx.AsyncClient,
    overrides: dict[str, Any],
    removed: str | None,
    expected: list[str],
) -> None:
    body = create_body(**overrides)
    if removed is not None:
        del body[removed]

    response = await client.post("/v1/deployments", json=body)

    detail = assert_problem(response, 422)["detail"]
    for fragment in expected:
        assert fragment in detail
    listing = (await client.get("/v1/deployments")).json()
    assert listing["results"] == []


async def test_create_lists_every_problem(client: httpx.AsyncClient) -> None:
    body = create_body(hardware="tpu", min_instances=9, extra=1)

    response = await client.post("/v1/deployments", json=body)

    detail = assert_problem(response, 422)["detail"]
    assert 'Invalid hardware "tpu"' in detail
    assert "Invalid min_instances 9" in detail
    assert "Unknown field extra" in detail


async def test_create_malformed_json_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/deployments",
        content=b'{"name": "x",',
        headers={"Content-Type": "application/json"},
    )

    detail = assert_problem(response, 400)["detail"]
    assert "not valid JSON" in detail
    assert (await client.get("/v1/deployments")).json()["results"] == []


async def test_create_non_object_body_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/deployments", json=["image-generator"])

    detail = assert_problem(response, 422)["detail"]
    assert "JSON object" in detail
    assert '["image-generator"]' in detail


# Deployments: update


async def test_update_makes_numbered_releases(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    await create(client)
    clock = manual_clock(emulator)

    clock.advance(60)
    second = await client.patch(
        "/v1/deployments/acme/image-generator", json={"version": SDXL_NOVEMBER}
    )
    clock.advance(60)
    third = await client.patch(
        "/v1/deployments/acme/image-generator",
        json={"hardware": "gpu-a40-large", "min_instances": 1, "max_instances": 5},
    )

    assert second.status_code == 200
    release = second.json()["current_release"]
    assert release["number"] == 2
    assert release["version"] == SDXL_NOVEMBER
    assert release["model"] == SDXL
    assert release["created_at"] == "2024-05-01T12:01:00.123456Z"
    assert release["configuration"] == {
        "hardware": "gpu-t4",
        "min_instances": 0,
        "max_instances": 3,
    }

    assert third.status_code == 200
    release = third.json()["current_release"]
    assert release["number"] == 3
    assert release["version"] == SDXL_NOVEMBER
    assert release["created_at"] == "2024-05-01T12:02:00.123456Z"
    assert release["created_by"]["username"] == "acme"
    assert release["configuration"] == {
        "hardware": "gpu-a40-large",
        "min_instances": 1,
        "max_instances": 5,
    }
    fetched = await client.get("/v1/deployments/acme/image-generator")
    assert fetched.json() == third.json()


async def test_update_empty_body_new_release(client: httpx.AsyncClient) -> None:
    created = await create(client)

    response = await client.patch("/v1/deployments/acme/image-generator", json={})

    assert response.status_code == 200
    release = response.json()["current_release"]
    assert release["number"] == 2
    assert release["configuration"] == created["current_release"]["configuration"]
    assert release["version"] == created["current_release"]["version"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"model": "replicate/hello-world"}, ["model", '"replicate/hello-world"', "cannot"]),
        ({"name": "renamed"}, ["name", '"renamed"', "cannot"]),
        ({"region": "eu"}, ["Unknown field region", '"eu"']),
        ({"version": HELLO_WORLD_VERSION}, ["version", HELLO_WORLD_VERSION, SDXL]),
        ({"version": "xyz"}, ["version", '"xyz"']),
        ({"hardware": "gpu-q1"}, ["hardware", '"gpu-q1"']),
        ({"min_instances": False}, ["min_instances", "false"]),
        ({"min_instances": 4}, ["min_instances 4", "max_instances 3"]),
        ({"max_instances": 25}, ["max_instances", "25"]),
    ],
)
async def test_update_validation_error_changes_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], expected: list[str]
) -> None:
    created = await create(client)

    response = await client.patch("/v1/deployments/acme/image-generator", json=body)

    detail = assert_problem(response, 422)["detail"]
    for fragment in expected:
        assert fragment in detail
    unchanged = await client.get("/v1/deployments/acme/image-generator")
    assert unchanged.json() == created


async def test_update_checks_merged_range(client: httpx.AsyncClient) -> None:
    await create(client, min_instances=2, max_instances=4)

    response = await client.patch("/v1/deployments/acme/image-generator", json={"max_instances": 1})

    detail = assert_problem(response, 422)["detail"]
    assert "min_instances 2" in detail
    assert "max_instances 1" in detail


async def test_update_unknown_deployment_404(client: httpx.AsyncClient) -> None:
    response = await client.patch("/v1/deployments/acme/ghost", json={"min_instances": 1})

    assert "acme/ghost" in assert_problem(response, 404)["detail"]


async def test_update_malformed_json_400(client: httpx.AsyncClient) -> None:
    created = await create(client)

    response = await client.patch("/v1/deployments/acme/image-generator", content=b"not json")

    assert_problem(response, 400)
    unchanged = await client.get("/v1/deployments/acme/image-generator")
    assert unchanged.json() == created


# Deployments: list and pagination


async def test_list_pages_follow_absolute_next() -> None:
    emulator = Emulator(clock=ManualClock(START), page_size=2)
    async with in_process_client(emulator, headers=AUTH) as http:
        for index in range(5):
            await create(http, name=f"deployment-{index}")

        pages = [await http.get("/v1/deployments")]
        while pages[-1].json()["next"] is not None:
            next_url = pages[-1].json()["next"]
            assert next_url.startswith("http://emulator.test/v1/deployments?cursor=")
            pages.append(await http.get(next_url))

        back = await http.get(pages[1].json()["previous"])

    names = [[item["name"] for item in page.json()["results"]] for page in pages]
    assert names == [
        ["deployment-4", "deployment-3"],
        ["deployment-2", "deployment-1"],
        ["deployment-0"],
    ]
    assert pages[0].json()["previous"] is None
    assert pages[2].json()["next"] is None
    assert pages[2].json()["previous"].startswith("http://emulator.test/v1/deployments?cursor=")
    assert back.json() == pages[0].json()
    for page in pages:
        assert set(page.json()) == {"next", "previous", "results"}


async def test_list_page_stable_when_created_between() -> None:
    small = Emulator(clock=ManualClock(START), page_size=2)
    async with in_process_client(small, headers=AUTH) as http:
        for index in range(3):
            await create(http, name=f"deployment-{index}")
        first = (await http.get("/v1/deployments")).json()
        await create(http, name="deployment-new")
        second = (await http.get(first["next"])).json()

    assert [item["name"] for item in second["results"]] == ["deployment-0"]


async def test_list_invalid_cursor_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/deployments", params={"cursor": "!!not-a-cursor"})

    detail = assert_problem(response, 400)["detail"]
    assert "!!not-a-cursor" in detail


# Deployments: delete


async def test_delete_waits_for_idle_window(client: httpx.AsyncClient, emulator: Emulator) -> None:
    await create(client, min_instances=0)
    clock = manual_clock(emulator)

    clock.advance(600)
    early = await client.delete("/v1/deployments/acme/image-generator")
    clock.advance(300)
    allowed = await client.delete("/v1/deployments/acme/image-generator")

    detail = assert_problem(early, 409)["detail"]
    assert "300 seconds remain" in detail
    assert "offline and unused" in detail
    assert allowed.status_code == 204
    assert allowed.content == b""
    assert_problem(await client.get("/v1/deployments/acme/image-generator"), 404)
    assert_problem(await client.delete("/v1/deployments/acme/image-generator"), 404)


async def test_delete_refused_while_online(client: httpx.AsyncClient, emulator: Emulator) -> None:
    await create(client, min_instances=1)
    clock = manual_clock(emulator)

    clock.advance(3600)
    online = await client.delete("/v1/deployments/acme/image-generator")
    await client.patch("/v1/deployments/acme/image-generator", json={"min_instances": 0})
    clock.advance(899)
    too_soon = await client.delete("/v1/deployments/acme/image-generator")
    clock.advance(1)
    allowed = await client.delete("/v1/deployments/acme/image-generator")

    detail = assert_problem(online, 409)["detail"]
    assert "online" in detail
    assert "min_instances 1" in detail
    assert "1 seconds remain" in assert_problem(too_soon, 409)["detail"]
    assert allowed.status_code == 204


async def test_delete_window_restarts_on_use(client: httpx.AsyncClient, emulator: Emulator) -> None:
    await create(client, min_instances=0)
    clock = manual_clock(emulator)

    clock.advance(800)
    emulator.state.touch("acme", "image-generator")
    clock.advance(800)
    rejected = await client.delete("/v1/deployments/acme/image-generator")
    clock.advance(100)
    allowed = await client.delete("/v1/deployments/acme/image-generator")

    assert "100 seconds remain" in assert_problem(rejected, 409)["detail"]
    assert allowed.status_code == 204


async def test_delete_version_swap_keeps_window(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    await create(client, min_instances=0)
    clock = manual_clock(emulator)

    clock.advance(600)
    await client.patch("/v1/deployments/acme/image-generator", json={"version": SDXL_NOVEMBER})
    clock.advance(300)
    response = await client.delete("/v1/deployments/acme/image-generator")

    assert response.status_code == 204


async def test_delete_unknown_deployment_404(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/deployments/acme/ghost")

    assert "acme/ghost" in assert_problem(response, 404)["detail"]


# Models and versions


async def test_model_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models/stability-ai/sdxl")

    assert response.status_code == 200
    model = response.json()
    assert set(model) == {
        "url",
        "owner",
        "name",
        "description",
        "visibility",
        "github_url",
        "paper_url",
        "license_url",
        "run_count",
        "cover_image_url",
        "default_example",
        "latest_version",
        "is_official",
    }
    assert model["url"] == "https://replicate.com/stability-ai/sdxl"
    assert model["owner"] == "stability-ai"
    assert model["name"] == "sdxl"
    assert model["visibility"] == "public"
    assert model["default_example"] is None
    assert model["is_official"] is False
    assert model["latest_version"]["id"] == SDXL_LATEST
    assert "notes" not in model


async def test_versions_newest_first(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models/stability-ai/sdxl/versions")

    assert response.status_code == 200
    page = response.json()
    assert [version["id"] for version in page["results"]] == SDXL_VERSIONS
    assert page["next"] is None
    assert page["previous"] is None


async def test_versions_paginate() -> None:
    emulator = Emulator(page_size=3)
    async with in_process_client(emulator, headers=AUTH) as http:
        first = (await http.get("/v1/models/stability-ai/sdxl/versions")).json()
        second = (await http.get(first["next"])).json()

    ids = [version["id"] for version in first["results"] + second["results"]]
    assert ids == SDXL_VERSIONS
    assert first["next"].startswith("http://emulator.test/v1/models/stability-ai/sdxl/versions?")
    assert second["next"] is None


async def test_version_shape(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/models/stability-ai/sdxl/versions/{SDXL_NOVEMBER}")

    assert response.status_code == 200
    version = response.json()
    assert set(version) == {"id", "created_at", "cog_version", "openapi_schema"}
    assert version["id"] == SDXL_NOVEMBER
    assert version["created_at"] == "2023-11-06T23:13:07.906314Z"
    assert version["cog_version"] == "0.8.6"
    schemas = version["openapi_schema"]["components"]["schemas"]
    assert "prompt" in schemas["Input"]["properties"]
    assert schemas["Output"]["type"] == "array"


async def test_catalog_versions_are_real_ids(client: httpx.AsyncClient) -> None:
    models = [
        ("replicate", "hello-world", 1),
        ("andreasjansson", "blip-2", 2),
        ("openai", "whisper", 1),
        ("meta", "llama-2-70b-chat", 1),
        ("nightmareai", "real-esrgan", 1),
    ]
    for owner, name, count in models:
        page = (await client.get(f"/v1/models/{owner}/{name}/versions")).json()
        assert len(page["results"]) == count, f"{owner}/{name}"
        for version in page["results"]:
            assert len(version["id"]) == 64
            schemas = version["openapi_schema"]["components"]["schemas"]
            assert schemas["Input"]["required"]
            assert "Output" in schemas


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/nobody/nothing",
        "/v1/models/nobody/nothing/versions",
        f"/v1/models/stability-ai/sdxl/versions/{HELLO_WORLD_VERSION}",
        "/v1/models/stability-ai/sdxl/versions/unknown",
    ],
)
async def test_unknown_model_or_version_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert "not found" in assert_problem(response, 404)["detail"]


async def test_added_version_becomes_latest(client: httpx.AsyncClient, emulator: Emulator) -> None:
    new_id = "f" * 64
    emulator.add_version(SDXL, new_id)

    model = (await client.get("/v1/models/stability-ai/sdxl")).json()
    deployment = await create(client, version=new_id)

    assert model["latest_version"]["id"] == new_id
    assert model["latest_version"]["created_at"] == "2024-05-01T12:00:00.123456Z"
    assert deployment["current_release"]["version"] == new_id


async def test_extra_models_argument(client: httpx.AsyncClient) -> None:
    spec = {
        "owner": "acme",
        "name": "classifier",
        "versions": [{"id": "e" * 64, "created_at": "2024-04-01T00:00:00Z"}],
    }
    emulator = Emulator(models=[spec])
    async with in_process_client(emulator, headers=AUTH) as http:
        model = (await http.get("/v1/models/acme/classifier")).json()
        created = await http.post(
            "/v1/deployments", json=create_body(model="acme/classifier", version="e" * 64)
        )

    assert model["latest_version"]["id"] == "e" * 64
    assert model["latest_version"]["created_at"] == "2024-04-01T00:00:00.000000Z"
    assert created.status_code == 200


def test_add_model_rejects_bad_spec(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="64 lowercase hexadecimal"):
        emulator.add_model({"owner": "acme", "name": "bad", "versions": [{"id": "xyz"}]})
    with pytest.raises(ValueError, match="already belongs to stability-ai/sdxl"):
        emulator.add_version("replicate/hello-world", SDXL_LATEST)
    with pytest.raises(ValueError, match="already in the catalog"):
        emulator.add_model({"owner": "stability-ai", "name": "sdxl"})


# Routing errors and authentication


async def test_unknown_path_404_problem(client: httpx.AsyncClient) -> None:
    for path in ["/v1/nothing", "/v1/deployments/acme", "/", "/v1/deployments/"]:
        response = await client.get(path)
        detail = assert_problem(response, 404)["detail"]
        assert path in detail


async def test_wrong_method_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.put("/v1/deployments")

    detail = assert_problem(response, 405)["detail"]
    assert "PUT" in detail
    assert "/v1/deployments" in detail
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert_problem(await client.delete("/v1/hardware"), 405)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "Missing Authorization header"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Malformed Authorization header"),
        ({"Authorization": "Bearer "}, "Malformed Authorization header"),
    ],
)
async def test_auth_missing_or_malformed_401(
    emulator: Emulator, headers: dict[str, str], expected: str
) -> None:
    async with in_process_client(emulator, headers=headers) as http:
        response = await http.post("/v1/deployments", json=create_body())

    document = assert_problem(response, 401)
    assert document["title"] == "Unauthenticated"
    assert expected in document["detail"]
    assert emulator.state.list_deployments() == []


async def test_auth_token_scheme_accepted(emulator: Emulator) -> None:
    async with in_process_client(emulator, headers={"Authorization": "Token abc"}) as http:
        response = await http.get("/v1/account")

    assert response.status_code == 200


async def test_auth_configured_token_only() -> None:
    emulator = Emulator(api_token="r8_secret")
    async with in_process_client(emulator) as http:
        wrong = await http.get("/v1/account", headers={"Authorization": "Bearer r8_other"})
        right = await http.get("/v1/account", headers={"Authorization": "Bearer r8_secret"})

    detail = assert_problem(wrong, 401)["detail"]
    assert "r8_other" not in detail
    assert right.status_code == 200


# Faults


async def test_fault_429_then_success(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.fail_next(429, retry_after="7", path="/v1/hardware")

    throttled = await client.get("/v1/hardware")
    recovered = await client.get("/v1/hardware")

    detail = assert_problem(throttled, 429)["detail"]
    assert "~7s" in detail
    assert throttled.headers["retry-after"] == "7"
    assert recovered.status_code == 200


async def test_fault_503_problem(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.fail_next(503, count=2)

    responses = [await client.get("/v1/account") for _ in range(3)]

    assert_problem(responses[0], 503)
    assert_problem(responses[1], 503)
    assert responses[2].status_code == 200
    assert "retry-after" not in responses[0].headers


async def test_fault_html_502_body(client: httpx.AsyncClient, emulator: Emulator) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    emulator.faults.fail_next(502, body=page, content_type="text/html")

    response = await client.get("/v1/account")

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == page


async def test_fault_matches_method_and_path(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.fail_next(500, method="post", path="/v1/deployments")
    emulator.faults.fail_next(504, path="/v1/deployments/*")

    listing = await client.get("/v1/deployments")
    created = await client.post("/v1/deployments", json=create_body())
    created_again = await client.post("/v1/deployments", json=create_body())
    fetched = await client.get("/v1/deployments/acme/image-generator")

    assert listing.status_code == 200
    assert_problem(created, 500)
    assert created_again.status_code == 200
    assert_problem(fetched, 504)


async def test_fault_preempts_processing(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.fail_next(503, method="POST")

    response = await client.post("/v1/deployments", json=create_body())

    assert_problem(response, 503)
    assert emulator.state.list_deployments() == []


async def test_fault_clear_removes_rules(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.fail_next(503, count=5)
    emulator.faults.set_latency(1.0)
    emulator.faults.clear()

    response = await client.get("/v1/account")

    assert response.status_code == 200
    assert emulator.faults.latency == 0.0


def test_fault_arguments_validated(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="400 to 599"):
        emulator.faults.fail_next(200)
    with pytest.raises(ValueError, match="count"):
        emulator.faults.drop_next(count=0)
    with pytest.raises(ValueError, match="without a body"):
        emulator.faults.fail_next(502, content_type="text/html")
    with pytest.raises(ValueError, match="0 or more"):
        emulator.faults.set_latency(-1)


async def test_drop_in_process_protocol_error(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.faults.drop_next(path="/v1/deployments")

    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/v1/deployments", json=create_body())
    after = await client.get("/v1/deployments")

    assert after.json()["results"] == []
    assert emulator.requests[0].dropped is True
    assert emulator.requests[0].status == 0


async def test_drop_after_change_keeps_deployment(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.faults.drop_next(method="POST", after_change=True)

    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/v1/deployments", json=create_body())
    fetched = await client.get("/v1/deployments/acme/image-generator")

    assert fetched.status_code == 200
    assert fetched.json()["current_release"]["number"] == 1
    assert emulator.requests[0].status == 200
    assert emulator.requests[0].dropped is True


async def test_drop_after_change_delete_still_fails(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    await create(client, min_instances=0)
    manual_clock(emulator).advance(900)
    emulator.faults.drop_next(method="DELETE", after_change=True)

    with pytest.raises(httpx.RemoteProtocolError):
        await client.delete("/v1/deployments/acme/image-generator")

    assert_problem(await client.get("/v1/deployments/acme/image-generator"), 404)


async def test_latency_delays_response(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.set_latency(0.05)

    started = time.perf_counter()
    response = await client.get("/v1/account")
    elapsed = time.perf_counter() - started

    assert response.status_code == 200
    assert elapsed >= 0.05


# Request recording


async def test_request_recording_and_counts(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.fail_next(429, path="/v1/hardware")
    await client.get("/v1/hardware")
    await client.get("/v1/hardware")
    await client.post("/v1/deployments", json=create_body())
    await client.get("/v1/deployments/acme/image-generator", params={"x": "1"})
    await client.get("/_emulator/requests")

    recorded = [(entry.method, entry.path, entry.status) for entry in emulator.requests]

    assert recorded == [
        ("GET", "/v1/hardware", 429),
        ("GET", "/v1/hardware", 200),
        ("POST", "/v1/deployments", 200),
        ("GET", "/v1/deployments/acme/image-generator", 200),
    ]
    assert emulator.request_count() == 4
    assert emulator.request_count(method="GET") == 3
    assert emulator.request_count(path="/v1/hardware") == 2
    assert emulator.request_count(method="get", path="/v1/deployments") == 0
    assert emulator.request_count(method="POST", path="/v1/deployments") == 1


async def test_reset_clears_state(client: httpx.AsyncClient, emulator: Emulator) -> None:
    await create(client)
    emulator.faults.fail_next(503)
    secret = emulator.webhook_secret

    emulator.reset()
    response = await client.get("/v1/deployments")

    assert response.status_code == 200
    assert response.json()["results"] == []
    assert emulator.request_count() == 1
    assert emulator.webhook_secret == secret


# Clocks


def test_manual_clock_advances() -> None:
    clock = ManualClock(START)

    moved = clock.advance(90.5)

    assert moved == START + timedelta(seconds=90.5)
    assert clock.now() == moved
    assert clock.now().tzinfo is not None


def test_manual_clock_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="0 or more"):
        ManualClock(START).advance(-1)
    with pytest.raises(TypeError, match="number"):
        ManualClock(START).advance("5")  # type: ignore[arg-type]


def test_default_clocks() -> None:
    before = datetime.now(UTC)

    system_now = SystemClock().now()
    manual_now = ManualClock().now()

    assert isinstance(Emulator().clock, SystemClock)
    assert system_now >= before
    assert manual_now >= before
    assert system_now.tzinfo is not None


def test_emulator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="page_size"):
        Emulator(page_size=0)
    with pytest.raises(ValueError, match="account"):
        Emulator(account="a/b")


# The served emulator


def test_served_drop_closes_connection() -> None:
    emulator = Emulator()
    with emulator.serve() as url, httpx.Client(base_url=url, headers=AUTH) as http:
        emulator.faults.drop_next(path="/v1/account")
        with pytest.raises(httpx.RemoteProtocolError):
            http.get("/v1/account")
        after = http.get("/v1/account")

    assert url.startswith("http://127.0.0.1:")
    assert after.status_code == 200
    assert [entry.dropped for entry in emulator.requests] == [True, False]


def test_served_drop_after_change() -> None:
    emulator = Emulator()
    with emulator.serve() as url, httpx.Client(base_url=url, headers=AUTH) as http:
        emulator.faults.drop_next(method="POST", after_change=True)
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/v1/deployments", json=create_body())
        fetched = http.get("/v1/deployments/acme/image-generator")

    assert fetched.status_code == 200


def test_served_admin_endpoints() -> None:
    emulator = Emulator(clock=ManualClock(START))
    with emulator.serve() as url, httpx.Client(base_url=url) as http:
        created = http.post("/v1/deployments", json=create_body(), headers=AUTH)
        advanced = http.post("/_emulator/clock/advance", json={"seconds": 900})
        deleted = http.delete("/v1/deployments/acme/image-generator", headers=AUTH)

        added = http.post("/_emulator/faults", json={"kind": "fail", "status": 503, "count": 2})
        failed = http.get("/v1/account", headers=AUTH)
        cleared = http.delete("/_emulator/faults")
        recovered = http.get("/v1/account", headers=AUTH)

        http.post("/_emulator/faults", json={"kind": "drop", "path": "/v1/hardware"})
        with pytest.raises(httpx.RemoteProtocolError):
            http.get("/v1/hardware", headers=AUTH)

        latency = http.post("/_emulator/faults", json={"kind": "latency", "seconds": 0.01})
        requests = http.get("/_emulator/requests")
        reset = http.post("/_emulator/reset")
        after_reset = http.get("/_emulator/requests")

    assert created.status_code == 200
    assert advanced.status_code == 200
    assert advanced.json() == {"now": "2024-05-01T12:15:00.123456Z"}
    assert deleted.status_code == 204
    assert added.status_code == 200
    assert added.json()["rules"][0]["status"] == 503
    assert failed.status_code == 503
    assert cleared.status_code == 204
    assert recovered.status_code == 200
    assert latency.json()["latency"] == 0.01
    assert requests.json()["requests"] == [
        {"method": "POST", "path": "/v1/deployments", "status": 200, "dropped": False},
        {
            "method": "DELETE",
            "path": "/v1/deployments/acme/image-generator",
            "status": 204,
            "dropped": False,
        },
        {"method": "GET", "path": "/v1/account", "status": 503, "dropped": False},
        {"method": "GET", "path": "/v1/account", "status": 200, "dropped": False},
        {"method": "GET", "path": "/v1/hardware", "status": 0, "dropped": True},
    ]
    assert reset.status_code == 204
    assert after_reset.json() == {"requests": []}
    assert emulator.faults.latency == 0.0


def test_served_admin_rejects_bad_input() -> None:
    emulator = Emulator()
    with emulator.serve() as url, httpx.Client(base_url=url) as http:
        system_clock = http.post("/_emulator/clock/advance", json={"seconds": 1})
        bad_kind = http.post("/_emulator/faults", json={"kind": "explode"})
        bad_status = http.post("/_emulator/faults", json={"kind": "fail", "status": 200})
        bad_field = http.post("/_emulator/faults", json={"kind": "drop", "colour": "red"})
        bad_json = http.post("/_emulator/faults", content=b"{")

    assert "ManualClock" in assert_problem(system_clock, 409)["detail"]
    assert '"explode"' in assert_problem(bad_kind, 422)["detail"]
    assert "200" in assert_problem(bad_status, 422)["detail"]
    assert "colour" in assert_problem(bad_field, 422)["detail"]
    assert_problem(bad_json, 400)
    assert emulator.faults.to_json()["rules"] == []


def test_served_advance_negative_422() -> None:
    emulator = Emulator(clock=ManualClock(START))
    with emulator.serve() as url:
        response = httpx.post(f"{url}/_emulator/clock/advance", json={"seconds": -5})

    assert "-5" in assert_problem(response, 422)["detail"]
    assert emulator.clock.now() == START


def test_catalog_json_is_valid() -> None:
    text = resources.files("replicate_tasks.emulator").joinpath("catalog.json").read_text()
    data = json.loads(text)

    ids = [version["id"] for model in data["models"] for version in model["versions"]]
    assert len(ids) == len(set(ids))
    assert len(data["models"]) >= 4
    assert sum(1 for model in data["models"] if len(model["versions"]) >= 2) >= 2
