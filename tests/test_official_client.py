"""The official `replicate` client against a served emulator: it must accept every shape.

The official client parses responses into its own models, so it referees the
emulator's shapes independently of this project's client.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import replicate
from replicate.webhook import WebhookSigningSecret

from replicate_tasks.emulator import Emulator, ManualClock, ScaledClock, WebhookOptions

START = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
SDXL = "stability-ai/sdxl"
SDXL_LATEST = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"
SDXL_NOVEMBER = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
HELLO_WORLD_VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
POLL_SECONDS = 0.05
REQUIRED_SKUS = {
    "cpu",
    "gpu-t4",
    "gpu-l40s",
    "gpu-a40-small",
    "gpu-a40-large",
    "gpu-a100-large",
    "gpu-h100",
}


def official_client(url: str) -> replicate.Client:
    client = replicate.Client(api_token="test-token", base_url=url)
    # The official client polls every 0.5 s (REPLICATE_POLL_INTERVAL); poll faster here.
    client.poll_interval = POLL_SECONDS
    return client


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], str]]]]:
    received: list[tuple[dict[str, str], str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body.decode()))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_account_hardware_and_deployments() -> None:
    emulator = Emulator(clock=ManualClock(START), page_size=1)
    with emulator.serve() as url:
        client = official_client(url)
        account = client.accounts.current()
        hardware = client.hardware.list()
        created = client.deployments.create(
            name="acme/image-generator",
            model=SDXL,
            version=SDXL_LATEST,
            hardware="gpu-t4",
            min_instances=1,
            max_instances=2,
        )
        client.deployments.create(
            name="second",
            model="replicate/hello-world",
            version=HELLO_WORLD_VERSION,
            hardware="cpu",
            min_instances=0,
            max_instances=1,
        )
        fetched = client.deployments.get("acme/image-generator")
        first_page = client.deployments.list()
        assert first_page.next is not None
        second_page = client.deployments.list(first_page.next)
        updated = client.deployments.update(
            "acme", "image-generator", version=SDXL_NOVEMBER, min_instances=0
        )
        assert isinstance(emulator.clock, ManualClock)
        emulator.clock.advance(900)
        deleted = client.deployments.delete("acme", "image-generator")
        with pytest.raises(replicate.exceptions.ReplicateError) as missing:
            client.deployments.get("acme/image-generator")

    assert account.username == "acme"
    assert account.type == "organization"
    assert account.name == "Acme"
    assert {item.sku for item in hardware} >= REQUIRED_SKUS
    assert created.owner == "acme"
    assert created.name == "image-generator"
    assert created.current_release is not None
    assert created.current_release.number == 1
    assert created.current_release.configuration.hardware == "gpu-t4"
    assert created.current_release.created_by is not None
    assert created.current_release.created_by.username == "acme"
    assert fetched.current_release is not None
    assert fetched.current_release.version == SDXL_LATEST
    assert [item.name for item in first_page.results] == ["second"]
    assert [item.name for item in second_page.results] == ["image-generator"]
    assert second_page.next is None
    assert updated.current_release is not None
    assert updated.current_release.number == 2
    assert updated.current_release.version == SDXL_NOVEMBER
    assert updated.current_release.configuration.min_instances == 0
    assert deleted is True
    assert missing.value.status == 404


def test_models_versions_and_webhook_secret() -> None:
    emulator = Emulator(clock=ManualClock(START))
    with emulator.serve() as url:
        client = official_client(url)
        model = client.models.get(SDXL)
        version = model.versions.get(SDXL_NOVEMBER)
        versions = model.versions.list()
        secret = client.webhooks.default.secret()

    assert model.owner == "stability-ai"
    assert model.name == "sdxl"
    assert model.latest_version is not None
    assert model.latest_version.id == SDXL_LATEST
    assert version.id == SDXL_NOVEMBER
    assert version.cog_version == "0.8.6"
    assert "Input" in version.openapi_schema["components"]["schemas"]
    assert versions.results[0].id == SDXL_LATEST
    assert secret.key == emulator.webhook_secret
    assert secret.key.startswith("whsec_")


def test_deployment_prediction_runs_to_completion() -> None:
    # 200 emulated seconds pass per real second: the default 30 s cold boot
    # and 2 s prediction take about 160 ms.
    emulator = Emulator(clock=ScaledClock(200))
    with emulator.serve() as url:
        client = official_client(url)
        client.deployments.create(
            name="images",
            model=SDXL,
            version=SDXL_LATEST,
            hardware="gpu-t4",
            min_instances=0,
            max_instances=1,
        )
        prediction = client.deployments.predictions.create(
            "acme/images", input={"prompt": "a red fox", "num_outputs": 1}
        )
        status_at_create = prediction.status
        prediction.wait()
        fetched = client.predictions.get(prediction.id)
        listed = client.predictions.list()

    assert status_at_create == "starting"
    assert prediction.status == "succeeded"
    assert prediction.version == SDXL_LATEST
    assert prediction.model == SDXL
    assert prediction.error is None
    assert isinstance(prediction.output, list)
    assert prediction.output[0].endswith(f"/_emulator/files/{prediction.id}/output.png")
    assert prediction.metrics is not None
    assert prediction.metrics["predict_time"] == 2.0
    assert prediction.progress is not None
    assert prediction.progress.percentage == 1.0
    assert fetched.completed_at is not None
    assert fetched.urls is not None
    assert fetched.urls["get"] == f"{url}/v1/predictions/{prediction.id}"
    assert [item.id for item in listed.results] == [prediction.id]


def test_official_model_prediction_with_wait() -> None:
    emulator = Emulator(clock=ScaledClock(1000))
    with emulator.serve() as url:
        client = official_client(url)
        prediction = client.models.predictions.create(
            "meta/meta-llama-3-8b-instruct", input={"prompt": "a haiku"}, wait=5
        )

    assert prediction.status == "succeeded"
    assert prediction.version == "hidden"
    assert isinstance(prediction.output, list)
    assert "".join(prediction.output).endswith("for: a haiku")


def test_cancel_prediction() -> None:
    emulator = Emulator(clock=ManualClock(START))
    with emulator.serve() as url:
        client = official_client(url)
        prediction = client.predictions.create(version=HELLO_WORLD_VERSION, input={"text": "Alice"})
        status_before = prediction.status
        prediction.cancel()
        fetched = client.predictions.get(prediction.id)

    assert status_before == "processing"
    assert prediction.status == "canceled"
    assert fetched.status == "canceled"
    assert fetched.completed_at is not None


def test_failed_prediction_reported() -> None:
    emulator = Emulator(clock=ScaledClock(1000))
    emulator.configure(failure="CUDA out of memory")
    with emulator.serve() as url:
        client = official_client(url)
        prediction = client.predictions.create(version=HELLO_WORLD_VERSION, input={"text": "Alice"})
        prediction.wait()

    assert prediction.status == "failed"
    assert prediction.error == "CUDA out of memory"
    assert prediction.output is None


def test_webhook_passes_official_validation() -> None:
    options = WebhookOptions(backoff_seconds=0.01, throttle_seconds=0)
    with (
        Emulator(clock=ScaledClock(1000), webhook_options=options) as emulator,
        webhook_receiver() as (hook_url, received),
        emulator.serve() as url,
    ):
        client = official_client(url)
        prediction = client.predictions.create(
            version=HELLO_WORLD_VERSION,
            input={"text": "Alice"},
            webhook=hook_url,
            webhook_events_filter=["start", "completed"],
        )
        prediction.wait()
        emulator.flush_webhooks(timeout=5)
        secret = client.webhooks.default.secret()

    assert len(received) == 2
    for headers, body in received:
        assert replicate.webhooks.validate(headers=headers, body=body, secret=secret) is None
        assert (
            replicate.webhooks.validate(headers=headers, body=body, secret=secret, tolerance=300)
            is None
        )
    wrong = WebhookSigningSecret(key="whsec_" + "A" * 44)
    with pytest.raises(replicate.webhook.InvalidSignatureError):
        replicate.webhooks.validate(headers=received[0][0], body=received[0][1], secret=wrong)
    assert json.loads(received[-1][1])["status"] == "succeeded"
    assert json.loads(received[-1][1])["id"] == prediction.id
