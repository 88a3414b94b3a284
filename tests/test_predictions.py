"""Predictions through the client, against the emulator served on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from replicate_tasks import (
    APIConnectionError,
    FileOutput,
    PredictionFailedError,
    RateLimit,
    Replicate,
    WaitTimeoutError,
)
from replicate_tasks.emulator import Emulator, ManualClock, ScaledClock
from replicate_tasks.emulator.ratelimit import RateLimit as ServerLimit
from replicate_tasks.emulator.ratelimit import RateLimits
from replicate_tasks.retry import RateLimiter

from .conftest import FAST_RETRY

SDXL = "stability-ai/sdxl"
V1 = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
PROMPT = {"prompt": "a red bicycle"}


@pytest.fixture
def deployment(client: Replicate) -> str:
    client.deployments.create("app", SDXL, V1, hardware="gpu-t4", min_instances=0, max_instances=1)
    return "acme/app"


def test_deployment_prediction_reports_version(
    client: Replicate, emulator: Emulator, deployment: str
) -> None:
    prediction = client.deployments.predictions.create(deployment, PROMPT)

    assert prediction.status == "starting"
    assert prediction.version == V1
    assert prediction.deployment == deployment
    assert prediction.input == PROMPT
    assert not prediction.is_terminal


def test_create_by_version_forms(client: Replicate) -> None:
    by_id = client.predictions.create(V1, PROMPT)
    by_ref = client.predictions.create(f"{SDXL}:{V1}", PROMPT)
    by_model = client.predictions.create(model="black-forest-labs/flux-schnell", input=PROMPT)

    assert by_id.version == V1
    assert by_ref.version == V1
    assert by_model.model == "black-forest-labs/flux-schnell"
    assert by_model.version == "hidden"


def test_create_options_are_checked_before_sending(client: Replicate, emulator: Emulator) -> None:
    cases = [
        ({"version": V1, "input": PROMPT, "webhook_events_filter": ["done"]}, "unknown events"),
        ({"version": V1, "input": PROMPT, "wait": 61}, "wait must be True or 1 to 60"),
        ({"version": V1, "input": PROMPT, "cancel_after": 2}, "at least 5 seconds"),
        ({"version": V1, "input": PROMPT, "cancel_after": "soon"}, "not a duration"),
        ({"input": PROMPT}, "pass either version"),
        ({"version": V1, "input": PROMPT, "webhook": "ftp://x"}, "not an http"),
    ]
    for arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            client.predictions.create(**arguments)  # type: ignore[arg-type]

    assert emulator.requests == []


def test_cold_boot_timing_on_emulator_clock(emulator: Emulator) -> None:
    scaled = Emulator(clock=ScaledClock(100))
    scaled.configure(deployment="acme/app", boot_seconds=60, predict_seconds=10)
    with scaled.serve() as url, Replicate("token", url, retry=FAST_RETRY) as client:
        client.deployments.create(
            "app", SDXL, V1, hardware="gpu-t4", min_instances=0, max_instances=1
        )
        prediction = client.deployments.predictions.create("acme/app", PROMPT)
        interval = 0.05
        finished = client.predictions.wait(prediction, interval=interval)
        returned_at = scaled.clock.now()

    assert finished.status == "succeeded"
    assert finished.created_at is not None
    assert finished.completed_at is not None
    took = (finished.completed_at - finished.created_at).total_seconds()
    assert took == pytest.approx(70, abs=0.5)
    # wait() returned within one poll interval (plus request time) of completion.
    late = (returned_at - finished.completed_at).total_seconds() / 100
    assert 0 <= late <= interval + 0.05


def test_wait_timeout_names_status(client: Replicate, deployment: str) -> None:
    prediction = client.deployments.predictions.create(deployment, PROMPT)

    with pytest.raises(WaitTimeoutError) as raised:
        client.predictions.wait(prediction, timeout=0.2, interval=0.05)

    assert raised.value.last_state == "starting"
    assert f"prediction {prediction.id}" in str(raised.value)
    assert "may still be running" in str(raised.value)


def test_cancel_and_aborted_are_terminal(
    client: Replicate, emulator: Emulator, deployment: str
) -> None:
    running = client.deployments.predictions.create(deployment, PROMPT)
    canceled = client.predictions.cancel(running.id)
    aborting = client.deployments.predictions.create(deployment, PROMPT, cancel_after="5s")
    emulator.clock.advance(6)  # type: ignore[attr-defined]

    aborted = client.predictions.wait(aborting.id, timeout=5, interval=0.05)

    assert canceled.status == "canceled"
    assert canceled.is_terminal
    assert aborted.status == "aborted"
    assert aborted.is_terminal


def test_run_returns_file_outputs(tmp_path: Path, deployment: str) -> None:
    scaled = Emulator(clock=ScaledClock(1000))
    with scaled.serve() as url, Replicate("token", url, retry=FAST_RETRY) as client:
        client.deployments.create(
            "app", SDXL, V1, hardware="gpu-t4", min_instances=1, max_instances=1
        )
        output = client.run("acme/app", PROMPT, interval=0.05)
        saved = output[0].save(tmp_path / "out.png")

    assert isinstance(output, list)
    assert isinstance(output[0], FileOutput)
    assert saved.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_run_falls_back_to_official_model() -> None:
    scaled = Emulator(clock=ScaledClock(1000))
    with scaled.serve() as url, Replicate("token", url, retry=FAST_RETRY) as client:
        output = client.run("meta/meta-llama-3-8b-instruct", {"prompt": "hi"}, interval=0.05)

    assert (
        scaled.request_count("POST", "/v1/deployments/meta/meta-llama-3-8b-instruct/predictions")
        == 1
    )
    assert scaled.request_count("POST", "/v1/models/meta/meta-llama-3-8b-instruct/predictions") == 1
    assert output is not None


def test_run_raises_on_failed_prediction() -> None:
    scaled = Emulator(clock=ScaledClock(1000))
    scaled.configure(version=V1, failure="out of memory")
    with (
        scaled.serve() as url,
        Replicate("token", url, retry=FAST_RETRY) as client,
        pytest.raises(PredictionFailedError) as raised,
    ):
        client.run(f"{SDXL}:{V1}", PROMPT, interval=0.05)

    assert raised.value.prediction.status == "failed"
    assert str(raised.value).endswith("ended failed: out of memory")


def test_data_uri_output_reads_locally() -> None:
    output = FileOutput("data:text/plain;base64,aGVsbG8=")

    assert output.read() == b"hello"
    with pytest.raises(ValueError, match="larger than max_bytes=2"):
        output.read(max_bytes=2)
    with pytest.raises(ValueError, match="not a file output"):
        FileOutput("ftp://example.invalid/file")


def test_create_is_never_repeated_after_send(
    client: Replicate, emulator: Emulator, deployment: str
) -> None:
    path = "/v1/deployments/acme/app/predictions"
    emulator.faults.drop_next(count=1, method="POST", path=path, after_change=True)

    with pytest.raises(APIConnectionError) as raised:
        client.deployments.predictions.create(deployment, PROMPT)

    assert raised.value.request_sent is True
    assert emulator.request_count("POST", path) == 1
    assert len(client.predictions.list().results) == 1


def test_create_retries_429(client: Replicate, emulator: Emulator, deployment: str) -> None:
    path = "/v1/deployments/acme/app/predictions"
    emulator.faults.fail_next(429, count=1, method="POST", path=path, retry_after="0")

    prediction = client.deployments.predictions.create(deployment, PROMPT)

    assert prediction.status == "starting"
    assert emulator.request_count("POST", path) == 2


def test_list_and_pages(client: Replicate, deployment: str) -> None:
    created = [client.deployments.predictions.create(deployment, PROMPT).id for _ in range(3)]

    listed = [p.id for page in client.predictions.pages() for p in page.results]

    assert listed == list(reversed(created))


def test_webhook_secret_is_hidden(client: Replicate, emulator: Emulator) -> None:
    secret = client.webhooks.default.secret()

    assert secret.key.get_secret_value().startswith("whsec_")
    assert secret.key.get_secret_value() not in repr(secret)
    assert secret.key.get_secret_value() not in secret.model_dump_json()


async def test_async_prediction_forms(client: Replicate, deployment: str) -> None:
    created = await client.deployments.predictions.async_create(deployment, PROMPT)
    fetched = await client.predictions.async_get(created.id)
    canceled = await client.predictions.async_cancel(created.id)
    secret = await client.webhooks.default.async_secret()
    await client.aclose()

    assert fetched.id == created.id
    assert canceled.status == "canceled"
    assert secret.key.get_secret_value().startswith("whsec_")


# The client-side rate limiter


def test_limiter_keeps_burst_under_server_limit() -> None:
    """A burst of 5 times the limit, with the limiter matched to the server: no 429."""
    budget, period = 20, 1.0
    server = Emulator(
        clock=ManualClock(),
        rate_limits=RateLimits(
            predictions=ServerLimit(budget, period), other=ServerLimit(budget, period)
        ),
    )
    # On a busy 2-core machine a request can reach the server a few hundred
    # milliseconds after its reserved time, so the margin is wider than the
    # default 5 %, which is 3 s of Replicate's 60 s period.
    limit = RateLimit(predictions=budget, other=budget, period=period, margin=0.3)
    with (
        server.serve() as url,
        Replicate("token", url, rate_limit=limit, retry=FAST_RETRY) as client,
    ):

        def call_ten_times() -> None:
            for _ in range(10):
                client.hardware.list()

        threads = [threading.Thread(target=call_ten_times) for _ in range(budget // 2)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started

    statuses = [r.status for r in server.requests]
    assert len(statuses) == 5 * budget
    assert statuses.count(429) == 0
    assert elapsed >= 4 * period  # the burst was spread over at least 4 more periods


def test_burst_without_limiter_gets_429() -> None:
    server = Emulator(
        clock=ManualClock(),
        rate_limits=RateLimits(predictions=ServerLimit(5, 60), other=ServerLimit(5, 60)),
    )
    policy = FAST_RETRY
    with server.serve() as url, Replicate("token", url, rate_limit=None, retry=policy) as client:
        for _ in range(5):
            client.hardware.list()
        with pytest.raises(Exception) as raised:
            client.hardware.list()

    assert type(raised.value).__name__ == "RateLimitError"
    assert server.requests[5].status == 429


def test_limiter_reservations_are_spaced() -> None:
    now = [0.0]
    limiter = RateLimiter(
        RateLimit(predictions=2, other=3, period=10, margin=0), clock=lambda: now[0]
    )

    waits = [limiter.reserve("other") for _ in range(7)]
    prediction_waits = [limiter.reserve("predictions") for _ in range(3)]

    assert waits == [0, 0, 0, 10, 10, 10, 20]
    assert prediction_waits == [0, 0, 10]
