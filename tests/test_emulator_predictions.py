"""Tests of the emulator's predictions API, lifecycle timing and outputs."""

from __future__ import annotations

import base64
import struct
import time
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from replicate_tasks.emulator import Emulator, ManualClock, ScaledClock, SystemClock

AUTH = {"Authorization": "Bearer test-token"}
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

SDXL = "stability-ai/sdxl"
SDXL_LATEST = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"
SDXL_NOVEMBER = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
HELLO_WORLD = "replicate/hello-world"
HELLO_WORLD_VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
WHISPER_VERSION = "4d50797290df275329f202e48c76360b3f22b08d28c196cbc54600319435f8d2"
LLAMA_OFFICIAL = "meta/meta-llama-3-8b-instruct"
FLUX_OFFICIAL = "black-forest-labs/flux-schnell"

REQUIRED_FIELDS = {
    "id",
    "model",
    "version",
    "input",
    "output",
    "data_removed",
    "error",
    "status",
    "created_at",
    "urls",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(clock=ManualClock(START))


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(emulator) as http:
        yield http


def in_process_client(emulator: Emulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://emulator.test", headers=AUTH
    )


def advance(emulator: Emulator, seconds: float) -> None:
    assert isinstance(emulator.clock, ManualClock)
    emulator.clock.advance(seconds)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def deploy(client: httpx.AsyncClient, name: str = "app", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "model": SDXL,
        "version": SDXL_LATEST,
        "hardware": "gpu-t4",
        "min_instances": 0,
        "max_instances": 2,
    }
    body.update(overrides)
    response = await client.post("/v1/deployments", json=body)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


async def run_deployment(
    client: httpx.AsyncClient, name: str = "app", **options: Any
) -> httpx.Response:
    body = {"input": {"prompt": "a red fox"}, **options.pop("body", {})}
    return await client.post(f"/v1/deployments/acme/{name}/predictions", json=body, **options)


async def get(client: httpx.AsyncClient, prediction_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/predictions/{prediction_id}")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a PNG into its chunks, checking each chunk's CRC."""
    assert data.startswith(PNG_SIGNATURE)
    chunks = []
    offset = len(PNG_SIGNATURE)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF
        chunks.append((kind, payload))
        offset += 12 + length
    return chunks


def assert_problem(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail: str = response.json()["detail"]
    for word in words:
        assert word in detail
    return detail


# Creating predictions


async def test_version_prediction_shape(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/predictions",
        json={"version": HELLO_WORLD_VERSION, "input": {"text": "Alice"}},
    )

    assert response.status_code == 202
    prediction = response.json()
    assert set(prediction) >= REQUIRED_FIELDS
    assert "deployment" not in prediction
    assert "deadline" not in prediction
    assert len(prediction["id"]) == 26
    assert prediction["model"] == HELLO_WORLD
    assert prediction["version"] == HELLO_WORLD_VERSION
    assert prediction["input"] == {"text": "Alice"}
    assert prediction["output"] is None
    assert prediction["data_removed"] is False
    assert prediction["error"] is None
    assert prediction["source"] == "api"
    assert prediction["status"] == "processing"
    assert prediction["created_at"] == "2024-05-01T12:00:00.000000Z"
    assert prediction["started_at"] == "2024-05-01T12:00:00.000000Z"
    assert prediction["completed_at"] is None
    assert prediction["metrics"] == {}
    assert prediction["urls"] == {
        "get": f"http://emulator.test/v1/predictions/{prediction['id']}",
        "cancel": f"http://emulator.test/v1/predictions/{prediction['id']}/cancel",
        "web": f"https://replicate.com/p/{prediction['id']}",
    }


@pytest.mark.parametrize(
    ("version", "model", "shown"),
    [
        (f"{HELLO_WORLD}:{HELLO_WORLD_VERSION}", HELLO_WORLD, HELLO_WORLD_VERSION),
        (LLAMA_OFFICIAL, LLAMA_OFFICIAL, "hidden"),
    ],
)
async def test_version_reference_forms(
    client: httpx.AsyncClient, version: str, model: str, shown: str
) -> None:
    body = {"version": version, "input": {"text": "Bob", "prompt": "Bob"}}
    response = await client.post("/v1/predictions", json=body)

    assert response.status_code == 202, response.text
    assert response.json()["model"] == model
    assert response.json()["version"] == shown


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"input": {}}, ["Missing required field version"]),
        ({"version": HELLO_WORLD, "input": {"text": "x"}}, ["not an official model"]),
        ({"version": "f" * 64, "input": {}}, ["no model in the emulator catalog"]),
        (
            {"version": f"{SDXL}:{HELLO_WORLD_VERSION}", "input": {}},
            [f"{HELLO_WORLD_VERSION} is not a version of {SDXL}"],
        ),
        ({"version": "nobody/nothing", "input": {}}, ["nobody/nothing was not found"]),
        ({"version": "not a version", "input": {}}, ['"not a version"']),
        ({"version": 7, "input": {}}, ["Invalid version 7"]),
    ],
)
async def test_create_invalid_version_422(
    client: httpx.AsyncClient, body: dict[str, Any], words: list[str]
) -> None:
    response = await client.post("/v1/predictions", json=body)

    assert_problem(response, 422, *words)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"version": HELLO_WORLD_VERSION}, ["Missing required field input"]),
        ({"version": HELLO_WORLD_VERSION, "input": "hi"}, ['Invalid input "hi"']),
        (
            {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}, "webhook_completed": "x"},
            ["Unknown field webhook_completed"],
        ),
        (
            {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}, "stream": "yes"},
            ['Invalid stream "yes"'],
        ),
        (
            {
                "version": HELLO_WORLD_VERSION,
                "input": {"text": "x"},
                "webhook_events_filter": ["started"],
            },
            ["webhook_events_filter", '"started"'],
        ),
        (
            {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}, "webhook": "ftp://x"},
            ['Invalid webhook "ftp://x"'],
        ),
    ],
)
async def test_create_invalid_body_422(
    client: httpx.AsyncClient, body: dict[str, Any], words: list[str]
) -> None:
    response = await client.post("/v1/predictions", json=body)

    assert_problem(response, 422, *words)


@pytest.mark.parametrize(
    ("input", "words"),
    [
        ({}, ["input.text is required"]),
        ({"text": 42}, ["input.text must be a string, got 42"]),
    ],
)
async def test_input_checked_against_schema(
    client: httpx.AsyncClient, input: dict[str, Any], words: list[str]
) -> None:
    body = {"version": HELLO_WORLD_VERSION, "input": input}
    response = await client.post("/v1/predictions", json=body)

    assert_problem(response, 422, *words)
    assert response.json()["title"] == "Input validation failed"


CHECKED_VERSION = "c" * 64
CHECKED_MODEL = {
    "owner": "acme",
    "name": "checked",
    "openapi_schema": {
        "components": {
            "schemas": {
                "Input": {
                    "type": "object",
                    "required": ["prompt"],
                    "properties": {
                        "prompt": {"type": "string"},
                        "width": {"type": "integer", "minimum": 64, "maximum": 2048},
                        "strength": {"type": "number", "minimum": 0, "maximum": 1},
                        "tags": {"type": "array"},
                        "options": {"type": "object"},
                        "scheduler": {"allOf": [{"$ref": "#/components/schemas/scheduler"}]},
                    },
                },
                "scheduler": {"type": "string", "enum": ["DDIM", "K_EULER"]},
                "Output": {"type": "string"},
            }
        }
    },
    "versions": [{"id": CHECKED_VERSION, "created_at": "2024-01-01T00:00:00Z"}],
}


@pytest.mark.parametrize(
    ("input", "words"),
    [
        ({"prompt": "x", "width": "wide"}, ['input.width must be an integer, got "wide"']),
        ({"prompt": "x", "width": True}, ["input.width must be an integer, got true"]),
        ({"prompt": "x", "width": 32}, ["input.width must be at least 64, got 32"]),
        ({"prompt": "x", "strength": 1.5}, ["input.strength must be at most 1, got 1.5"]),
        ({"prompt": "x", "tags": "a"}, ["input.tags must be an array"]),
        ({"prompt": "x", "options": []}, ["input.options must be an object"]),
        ({"prompt": "x", "scheduler": "FAST"}, ["input.scheduler must be one of", '"FAST"']),
        ({"prompt": 1, "width": "s"}, ["input.prompt must be a string", "input.width"]),
    ],
)
async def test_input_types_enums_and_bounds(input: dict[str, Any], words: list[str]) -> None:
    emulator = Emulator(clock=ManualClock(START), models=[CHECKED_MODEL])
    body = {"version": CHECKED_VERSION, "input": input}
    async with in_process_client(emulator) as client:
        response = await client.post("/v1/predictions", json=body)

    assert_problem(response, 422, *words)


async def test_input_valid_against_checks() -> None:
    emulator = Emulator(clock=ManualClock(START), models=[CHECKED_MODEL])
    input = {"prompt": "x", "width": 64, "strength": 0, "scheduler": "DDIM", "tags": []}
    async with in_process_client(emulator) as client:
        response = await client.post(
            "/v1/predictions", json={"version": CHECKED_VERSION, "input": input}
        )

    assert response.status_code == 202, response.text


async def test_input_extra_properties_accepted(client: httpx.AsyncClient) -> None:
    body = {"version": HELLO_WORLD_VERSION, "input": {"text": "x", "unused": 1}}
    response = await client.post("/v1/predictions", json=body)

    assert response.status_code == 202
    assert response.json()["input"] == {"text": "x", "unused": 1}


async def test_model_endpoint_official_hidden(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"/v1/models/{FLUX_OFFICIAL}/predictions", json={"input": {"prompt": "a fox"}}
    )
    model = (await client.get(f"/v1/models/{FLUX_OFFICIAL}")).json()

    assert response.status_code == 202
    assert response.json()["model"] == FLUX_OFFICIAL
    assert response.json()["version"] == "hidden"
    assert model["is_official"] is True
    assert model["latest_version"] is None


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/models/nobody/nothing/predictions", {"input": {}}, 404, ["not found"]),
        (f"/v1/models/{HELLO_WORLD}/predictions", {"input": {}}, 404, ["not an official"]),
        (
            f"/v1/models/{FLUX_OFFICIAL}/predictions",
            {"input": {"prompt": "x"}, "version": "x"},
            422,
            ["Unknown field version"],
        ),
        (f"/v1/models/{FLUX_OFFICIAL}/predictions", {"input": {}}, 422, ["input.prompt"]),
    ],
)
async def test_model_endpoint_errors(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int, words: list[str]
) -> None:
    response = await client.post(path, json=body)

    assert_problem(response, status, *words)


async def test_deployment_prediction_records_release(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    await deploy(client)
    first = await run_deployment(client)
    await client.patch("/v1/deployments/acme/app", json={"version": SDXL_NOVEMBER})
    second = await run_deployment(client)

    assert first.status_code == 202
    assert first.json()["deployment"] == "acme/app"
    assert first.json()["model"] == SDXL
    assert first.json()["version"] == SDXL_LATEST
    assert first.json()["status"] == "starting"
    assert second.json()["version"] == SDXL_NOVEMBER
    assert (await get(client, first.json()["id"]))["version"] == SDXL_LATEST


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"input": {"prompt": "x"}, "version": SDXL_LATEST}, ["Unknown field version"]),
        ({"input": {"prompt": "x"}, "model": SDXL}, ["Unknown field model"]),
        ({}, ["Missing required field input"]),
        ({"input": {"width": "wide"}}, ["input.width"]),
    ],
)
async def test_deployment_prediction_body_422(
    client: httpx.AsyncClient, body: dict[str, Any], words: list[str]
) -> None:
    await deploy(client)

    response = await client.post("/v1/deployments/acme/app/predictions", json=body)

    assert_problem(response, 422, *words)


async def test_deployment_prediction_unknown_404(client: httpx.AsyncClient) -> None:
    response = await run_deployment(client, "missing")

    assert_problem(response, 404, "acme/missing was not found")


async def test_deployment_prediction_restarts_delete_window(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    await deploy(client)
    advance(emulator, 600)
    await run_deployment(client)
    advance(emulator, 600)

    refused = await client.delete("/v1/deployments/acme/app")

    assert_problem(refused, 409, "offline and unused")


async def test_create_malformed_json_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/predictions", content=b"{", headers={"content-type": "application/json"}
    )

    assert_problem(response, 400, "not valid JSON")


# Reading, listing and canceling


async def test_get_unknown_prediction_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/predictions/doesnotexist")

    assert_problem(response, 404, "doesnotexist was not found")


async def test_list_newest_first_paginated() -> None:
    emulator = Emulator(clock=ManualClock(START), page_size=2)
    async with in_process_client(emulator) as client:
        ids = []
        for name in ("a", "b", "c"):
            created = await client.post(
                "/v1/predictions", json={"version": HELLO_WORLD_VERSION, "input": {"text": name}}
            )
            ids.append(created.json()["id"])
            advance(emulator, 1)
        first = (await client.get("/v1/predictions")).json()
        second = (await client.get(first["next"])).json()

    assert [item["id"] for item in first["results"]] == [ids[2], ids[1]]
    assert [item["id"] for item in second["results"]] == [ids[0]]
    assert first["next"].startswith("http://emulator.test/v1/predictions?cursor=")
    assert first["previous"] is None
    assert second["next"] is None
    assert second["results"][0]["status"] == "succeeded"


async def test_list_filters_by_creation_time(client: httpx.AsyncClient, emulator: Emulator) -> None:
    body = {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}}
    await client.post("/v1/predictions", json=body)
    advance(emulator, 60)
    later = (await client.post("/v1/predictions", json=body)).json()

    after = await client.get(
        "/v1/predictions", params={"created_after": "2024-05-01T12:00:30+00:00"}
    )
    before = await client.get("/v1/predictions", params={"created_before": "2024-05-01T12:00:30Z"})
    web = await client.get("/v1/predictions", params={"source": "web"})
    invalid_time = await client.get("/v1/predictions", params={"created_after": "yesterday"})
    invalid_source = await client.get("/v1/predictions", params={"source": "api"})

    assert [item["id"] for item in after.json()["results"]] == [later["id"]]
    assert len(before.json()["results"]) == 1
    assert before.json()["results"][0]["id"] != later["id"]
    assert web.json()["results"] == []
    assert_problem(invalid_time, 400, "created_after", "yesterday")
    assert_problem(invalid_source, 400, "'web'")


async def test_cancel_running_prediction(client: httpx.AsyncClient, emulator: Emulator) -> None:
    await deploy(client)
    created = (await run_deployment(client)).json()
    advance(emulator, 5)

    response = await client.post(f"/v1/predictions/{created['id']}/cancel")
    advance(emulator, 100)
    later = await get(client, created["id"])

    assert response.status_code == 200
    canceled = response.json()
    assert canceled["status"] == "canceled"
    assert canceled["started_at"] is None
    assert canceled["completed_at"] == "2024-05-01T12:00:05.000000Z"
    assert canceled["metrics"] == {"total_time": 5.0}
    assert later["status"] == "canceled"
    assert later["completed_at"] == canceled["completed_at"]


async def test_cancel_finished_prediction_unchanged(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    body = {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}}
    created = (await client.post("/v1/predictions", json=body)).json()
    advance(emulator, 10)
    before = await get(client, created["id"])

    response = await client.post(f"/v1/predictions/{created['id']}/cancel")

    assert response.status_code == 200
    assert before["status"] == "succeeded"
    assert response.json() == before


async def test_cancel_unknown_prediction_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/predictions/doesnotexist/cancel")

    assert_problem(response, 404, "doesnotexist")


# Lifecycle on the emulator clock


async def test_cold_boot_then_predict(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.configure(deployment="acme/app", boot_seconds=10, predict_seconds=3)
    await deploy(client)
    prediction_id = (await run_deployment(client)).json()["id"]

    statuses = []
    for _ in range(14):
        statuses.append((await get(client, prediction_id))["status"])
        advance(emulator, 1)
    final = await get(client, prediction_id)

    assert statuses == ["starting"] * 10 + ["processing"] * 3 + ["succeeded"]
    created_at = parse_time(final["created_at"])
    assert parse_time(final["started_at"]) - created_at == timedelta(seconds=10)
    assert parse_time(final["completed_at"]) - created_at == timedelta(seconds=13)
    assert final["metrics"] == {"predict_time": 3.0, "total_time": 13.0}


async def test_default_boot_and_predict_times(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    await deploy(client)
    final_id = (await run_deployment(client)).json()["id"]
    advance(emulator, 32)

    final = await get(client, final_id)

    assert final["status"] == "succeeded"
    assert final["metrics"] == {"predict_time": 2.0, "total_time": 32.0}


async def test_min_instances_skip_boot_once_booted(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.configure(boot_seconds=20, predict_seconds=1)
    await deploy(client, min_instances=1)
    advance(emulator, 5)
    during_boot = (await run_deployment(client)).json()
    advance(emulator, 20)
    warm = (await run_deployment(client)).json()
    advance(emulator, 5)

    booted = await get(client, during_boot["id"])
    finished = await get(client, warm["id"])

    assert booted["metrics"]["total_time"] == 16.0
    assert warm["status"] == "processing"
    assert finished["metrics"] == {"predict_time": 1.0, "total_time": 1.0}


async def test_version_change_reboots(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.configure(boot_seconds=20, predict_seconds=1)
    await deploy(client, min_instances=1)
    advance(emulator, 30)
    await client.patch("/v1/deployments/acme/app", json={"max_instances": 3})
    after_scale = (await run_deployment(client)).json()
    await client.patch("/v1/deployments/acme/app", json={"version": SDXL_NOVEMBER})
    after_version = (await run_deployment(client)).json()
    advance(emulator, 25)
    await client.patch("/v1/deployments/acme/app", json={"hardware": "gpu-a40-large"})
    after_hardware = (await run_deployment(client)).json()

    assert after_scale["status"] == "processing"
    assert after_version["status"] == "starting"
    assert after_hardware["status"] == "starting"
    finished = await get(client, after_version["id"])
    assert finished["metrics"]["total_time"] == 21.0


async def test_idle_window_keeps_instance_warm(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.configure(deployment="acme/app", boot_seconds=10, predict_seconds=1, idle_seconds=60)
    await deploy(client)
    cold = (await run_deployment(client)).json()
    advance(emulator, 5)
    shares_boot = (await run_deployment(client)).json()
    advance(emulator, 66)
    warm = (await run_deployment(client)).json()
    advance(emulator, 62)
    cold_again = (await run_deployment(client)).json()
    advance(emulator, 100)

    assert (await get(client, cold["id"]))["metrics"]["total_time"] == 11.0
    assert (await get(client, shares_boot["id"]))["metrics"]["total_time"] == 6.0
    assert warm["status"] == "processing"
    assert cold_again["status"] == "starting"
    assert (await get(client, cold_again["id"]))["metrics"]["total_time"] == 11.0


async def test_version_predictions_start_warm(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.configure(boot_seconds=100)
    warm = await client.post(
        "/v1/predictions", json={"version": HELLO_WORLD_VERSION, "input": {"text": "x"}}
    )
    emulator.configure(model=HELLO_WORLD, boot_seconds=7)
    advance(emulator, 1000)
    cold = await client.post(
        "/v1/predictions", json={"version": HELLO_WORLD_VERSION, "input": {"text": "x"}}
    )

    assert warm.json()["status"] == "processing"
    assert cold.json()["status"] == "starting"
    advance(emulator, 9)
    assert (await get(client, cold.json()["id"]))["metrics"]["total_time"] == 9.0


async def test_most_specific_setting_wins(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.configure(predict_seconds=50, boot_seconds=0)
    emulator.configure(model=SDXL, predict_seconds=40)
    emulator.configure(version=SDXL_LATEST, predict_seconds=30)
    await deploy(client, "pinned")
    await deploy(client, "other", version=SDXL_NOVEMBER)
    emulator.configure(deployment="acme/pinned", predict_seconds=4)
    pinned = (await run_deployment(client, "pinned")).json()
    other = (await run_deployment(client, "other")).json()
    emulator.configure(deployment="acme/pinned", predict_seconds=None)
    by_version = (await run_deployment(client, "pinned")).json()
    advance(emulator, 60)

    assert (await get(client, pinned["id"]))["metrics"]["predict_time"] == 4.0
    assert (await get(client, other["id"]))["metrics"]["predict_time"] == 40.0
    assert (await get(client, by_version["id"]))["metrics"]["predict_time"] == 30.0


async def test_configured_failure(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.configure(model=SDXL, failure="CUDA out of memory", boot_seconds=0)
    await deploy(client)
    created = (await run_deployment(client)).json()
    advance(emulator, 2)

    failed = await get(client, created["id"])

    assert failed["status"] == "failed"
    assert failed["error"] == "CUDA out of memory"
    assert failed["output"] is None
    assert failed["logs"].endswith("Error: CUDA out of memory\n")
    assert failed["metrics"]["predict_time"] == 2.0


async def test_fail_rate_extremes(client: httpx.AsyncClient, emulator: Emulator) -> None:
    body = {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}}
    emulator.configure(fail_rate=1.0)
    always = [(await client.post("/v1/predictions", json=body)).json()["id"] for _ in range(3)]
    emulator.configure(fail_rate=0.0)
    never = [(await client.post("/v1/predictions", json=body)).json()["id"] for _ in range(3)]
    advance(emulator, 5)

    assert [(await get(client, item))["status"] for item in always] == ["failed"] * 3
    assert [(await get(client, item))["status"] for item in never] == ["succeeded"] * 3
    assert "fail_rate" in (await get(client, always[0]))["error"]


def test_configure_rejects_bad_arguments(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="at most one"):
        emulator.configure(model=SDXL, deployment="acme/app", boot_seconds=1)
    with pytest.raises(ValueError, match="boot_seconds"):
        emulator.configure(boot_seconds=-1)
    with pytest.raises(ValueError, match="fail_rate"):
        emulator.configure(fail_rate=1.5)
    with pytest.raises(TypeError, match="failure"):
        emulator.configure(failure="")


async def test_logs_grow_while_processing(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.configure(predict_seconds=4)
    body = {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}}
    prediction_id = (await client.post("/v1/predictions", json=body)).json()["id"]

    logs = []
    for _ in range(5):
        logs.append((await get(client, prediction_id))["logs"])
        advance(emulator, 1)

    assert [len(text.splitlines()) for text in logs] == [1, 2, 3, 4, 5]
    assert logs[0] == "  0%|          | 0/4\n"
    assert logs[-1].splitlines()[-1] == "100%|##########| 4/4"


# Prefer: wait and Cancel-After


async def test_prefer_wait_manual_clock_returns_now(
    client: httpx.AsyncClient,
) -> None:
    await deploy(client)
    started = time.monotonic()

    response = await run_deployment(client, headers={"Prefer": "wait=5"})

    assert time.monotonic() - started < 1
    assert response.status_code == 202
    assert response.json()["status"] == "starting"
    assert response.headers["preference-applied"] == "wait=5"


async def test_prefer_wait_finished_is_201(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.configure(predict_seconds=0)
    body = {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}}

    response = await client.post("/v1/predictions", json=body, headers={"Prefer": "wait"})

    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"
    assert response.json()["output"].startswith("Emulated output")


async def test_prefer_wait_scaled_clock_blocks() -> None:
    emulator = Emulator(clock=ScaledClock(100))
    emulator.configure(predict_seconds=20)
    async with in_process_client(emulator) as client:
        started = time.monotonic()
        response = await client.post(
            "/v1/predictions",
            json={"version": HELLO_WORLD_VERSION, "input": {"text": "x"}},
            headers={"Prefer": "wait=30"},
        )
        elapsed = time.monotonic() - started

    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"
    assert response.json()["metrics"]["predict_time"] == 20.0
    assert 0.15 <= elapsed < 2


async def test_prefer_wait_limit_in_emulated_time() -> None:
    emulator = Emulator(clock=ScaledClock(100))
    emulator.configure(predict_seconds=50)
    async with in_process_client(emulator) as client:
        started = time.monotonic()
        response = await client.post(
            "/v1/predictions",
            json={"version": HELLO_WORLD_VERSION, "input": {"text": "x"}},
            headers={"Prefer": "wait=10"},
        )
        elapsed = time.monotonic() - started

    assert response.status_code == 202
    assert response.json()["status"] == "processing"
    assert 0.08 <= elapsed < 0.4


async def test_prefer_wait_times_out_in_real_time() -> None:
    emulator = Emulator(clock=SystemClock())
    emulator.configure(predict_seconds=600)
    async with in_process_client(emulator) as client:
        started = time.monotonic()
        response = await client.post(
            "/v1/predictions",
            json={"version": HELLO_WORLD_VERSION, "input": {"text": "x"}},
            headers={"Prefer": "wait=1"},
        )
        elapsed = time.monotonic() - started

    assert response.status_code == 202
    assert response.json()["status"] == "processing"
    assert 0.9 <= elapsed < 3


@pytest.mark.parametrize("value", ["wait=0", "wait=61", "wait=abc", "soon", "wait=5s"])
async def test_prefer_invalid_400(client: httpx.AsyncClient, value: str) -> None:
    body = {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}}

    response = await client.post("/v1/predictions", json=body, headers={"Prefer": value})

    assert_problem(response, 400, "Prefer header", repr(value))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m45s", 5445), ("10", 10), ("2h", 7200), ("1.5m", 90)],
)
async def test_cancel_after_sets_deadline(
    client: httpx.AsyncClient, value: str, seconds: int
) -> None:
    body = {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}}

    response = await client.post("/v1/predictions", json=body, headers={"Cancel-After": value})

    deadline = parse_time(response.json()["deadline"])
    assert deadline - START == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["4s", "3", "soon", "", "5x", "m"])
async def test_cancel_after_invalid_400(client: httpx.AsyncClient, value: str) -> None:
    body = {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}}

    response = await client.post("/v1/predictions", json=body, headers={"Cancel-After": value})

    assert_problem(response, 400, "Cancel-After header")


async def test_cancel_after_aborts_before_start(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    await deploy(client)
    created = (await run_deployment(client, headers={"Cancel-After": "10s"})).json()
    advance(emulator, 9)
    before = await get(client, created["id"])
    advance(emulator, 1)
    after = await get(client, created["id"])

    assert before["status"] == "starting"
    assert after["status"] == "aborted"
    assert after["started_at"] is None
    assert after["completed_at"] == after["deadline"] == "2024-05-01T12:00:10.000000Z"
    assert after["metrics"] == {"total_time": 10.0}


async def test_cancel_after_cancels_while_running(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.configure(deployment="acme/app", boot_seconds=5, predict_seconds=60)
    await deploy(client)
    created = (await run_deployment(client, headers={"Cancel-After": "15s"})).json()
    advance(emulator, 20)

    canceled = await get(client, created["id"])

    assert canceled["status"] == "canceled"
    assert canceled["started_at"] == "2024-05-01T12:00:05.000000Z"
    assert canceled["completed_at"] == "2024-05-01T12:00:15.000000Z"
    assert canceled["metrics"] == {"predict_time": 10.0, "total_time": 15.0}


# Outputs


async def test_text_output_deterministic(client: httpx.AsyncClient, emulator: Emulator) -> None:
    def body(text: str) -> dict[str, Any]:
        return {"version": HELLO_WORLD_VERSION, "input": {"text": text}}

    ids = [
        (await client.post("/v1/predictions", json=body(text))).json()["id"]
        for text in ("Alice", "Alice", "Bob")
    ]
    advance(emulator, 5)
    outputs = [(await get(client, item))["output"] for item in ids]

    assert isinstance(outputs[0], str)
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]
    assert outputs[0].endswith("for: Alice")


async def test_token_output_grows(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.configure(predict_seconds=4)
    created = await client.post(
        f"/v1/models/{LLAMA_OFFICIAL}/predictions", json={"input": {"prompt": "a haiku"}}
    )
    prediction_id = created.json()["id"]
    advance(emulator, 2)
    halfway = (await get(client, prediction_id))["output"]
    advance(emulator, 2)
    final = (await get(client, prediction_id))["output"]

    assert created.json()["output"] == []
    assert isinstance(final, list)
    assert all(isinstance(token, str) for token in final)
    assert "".join(final).endswith("for: a haiku")
    assert halfway == final[: len(final) // 2]


async def test_object_output_from_schema(client: httpx.AsyncClient, emulator: Emulator) -> None:
    created = await client.post(
        "/v1/predictions",
        json={"version": WHISPER_VERSION, "input": {"audio": "https://example.test/a.mp3"}},
    )
    advance(emulator, 5)

    output = (await get(client, created.json()["id"]))["output"]

    assert isinstance(output["transcription"], str)
    assert isinstance(output["detected_language"], str)


async def test_image_output_served_png(client: httpx.AsyncClient, emulator: Emulator) -> None:
    await deploy(client)
    created = (await run_deployment(client, body={"input": {"num_outputs": 2}})).json()
    file_url = f"http://emulator.test/_emulator/files/{created['id']}/output.png"
    too_early = await client.get(file_url)
    advance(emulator, 40)

    output = (await get(client, created["id"]))["output"]
    first = await client.get(output[0], headers={"Authorization": ""})
    second = await client.get(output[1])
    missing = await client.get(f"http://emulator.test/_emulator/files/{created['id']}/x.png")

    assert output == [file_url, file_url.replace("output.png", "output-1.png")]
    assert too_early.status_code == 404
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/png"
    assert first.content.startswith(PNG_SIGNATURE)
    chunks = png_chunks(first.content)
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (width, height, depth, colour) == (16, 16, 8, 2)
    assert len(zlib.decompress(chunks[1][1])) == 16 * (1 + 16 * 3)
    assert second.content.startswith(PNG_SIGNATURE)
    assert missing.status_code == 404


async def test_data_uri_outputs_for_prefer_wait() -> None:
    emulator = Emulator(clock=ManualClock(START), data_uri_outputs=True)
    emulator.configure(predict_seconds=0)
    async with in_process_client(emulator) as client:
        waited = await client.post(
            f"/v1/models/{FLUX_OFFICIAL}/predictions",
            json={"input": {"prompt": "a fox"}},
            headers={"Prefer": "wait"},
        )
        fetched = await get(client, waited.json()["id"])

    uri = waited.json()["output"][0]
    assert waited.status_code == 201
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert fetched["output"][0].startswith("http://emulator.test/_emulator/files/")


# Clocks


def test_scaled_clock_runs_faster() -> None:
    clock = ScaledClock(1000, start=START)
    time.sleep(0.01)

    elapsed = (clock.now() - START).total_seconds()

    assert elapsed >= 10
    assert elapsed < 1000
    assert "factor=1000" in repr(clock)


def test_scaled_clock_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="above 0"):
        ScaledClock(0)
    with pytest.raises(TypeError, match="number"):
        ScaledClock("fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone"):
        ScaledClock(2, start=datetime(2024, 1, 1))


def test_served_settings_admin_route() -> None:
    emulator = Emulator(clock=ManualClock(START))
    with emulator.serve() as url, httpx.Client(base_url=url) as http:
        changed = http.post(
            "/_emulator/settings",
            json={"model": SDXL, "boot_seconds": 3, "failure": "Broken weights"},
        )
        cleared = http.post("/_emulator/settings", json={"model": SDXL, "failure": None})
        invalid = http.post("/_emulator/settings", json={"boot_seconds": -2})
        unknown = http.post("/_emulator/settings", json={"speed": 2})
        listed = http.get("/_emulator/settings")

    assert changed.status_code == 200
    assert changed.json()["models"][SDXL] == {"boot_seconds": 3.0, "failure": "Broken weights"}
    assert cleared.json()["models"][SDXL] == {"boot_seconds": 3.0}
    assert invalid.status_code == 422
    assert "boot_seconds" in invalid.json()["detail"]
    assert unknown.status_code == 422
    assert listed.json()["defaults"] == {}
