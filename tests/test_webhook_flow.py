"""The webhook handling flows, run through Prefect's test server."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.logging import disable_run_logger
from prefect.states import State
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from flows.webhook import (
    HandledPrediction,
    OutputSaveError,
    create_flow_receiver,
    handle_prediction_event,
    handle_prediction_webhook,
    save_prediction_outputs,
)
from replicate_tasks.emulator import Emulator, ManualClock, WebhookOptions
from replicate_tasks.emulator.server import serve_in_thread
from replicate_tasks.models import Prediction
from replicate_tasks.receiver import WEBHOOK_PATH, create_receiver
from replicate_tasks.webhooks import sign_headers

pytestmark = pytest.mark.usefixtures("prefect_server")

SECRET = "whsec_" + base64.b64encode(b"flow-test-signing-key-32-bytes!!").decode()
SECRET_BASE64 = SECRET.removeprefix("whsec_")
PNG_BYTES = b"\x89PNG\r\n\x1a\n fake image"
WAIT_SECONDS = 30


@pytest.fixture(autouse=True)
def trust_loopback_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator and the test file servers serve output files from 127.0.0.1."""
    monkeypatch.setenv("REPLICATE_TASKS_OUTPUT_HOSTS", "127.0.0.1")


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_WEBHOOK_SECRET", SECRET)


@pytest.fixture
def output_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "outputs"
    monkeypatch.setenv("REPLICATE_TASKS_OUTPUT_DIR", str(directory))
    return directory


@pytest.fixture(scope="module")
def file_server() -> Iterator[str]:
    """Serve output files on 127.0.0.1, standing in for Replicate's file delivery."""

    async def image(request: Request) -> Response:
        return Response(PNG_BYTES, media_type="image/png")

    async def large(request: Request) -> Response:
        return Response(b"x" * 10_000, media_type="application/octet-stream")

    async def to_file_scheme(request: Request) -> Response:
        return RedirectResponse("file:///etc/hostname")

    app = Starlette(
        routes=[
            Route("/files/out-0.png", image),
            Route("/files/large.bin", large),
            Route("/files/redirect", to_file_scheme),
        ]
    )
    with serve_in_thread(app) as url:
        yield url


def prediction(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": f"p-{uuid.uuid4().hex[:12]}", "status": status, "version": "v1", **fields}


def delivery(document: dict[str, Any]) -> tuple[dict[str, str], str]:
    body = json.dumps(document)
    return sign_headers(SECRET, body), body


def save_outputs(document: Prediction, directory: str, **options: Any) -> list[str]:
    """Run the save task's function alone, without a flow run."""
    with disable_run_logger():
        return save_prediction_outputs.fn(document, directory, **options)


def task_runs_of(flow_run_id: uuid.UUID) -> list[TaskRun]:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


def flow_run_of(state: State[Any]) -> FlowRun:
    assert state.state_details.flow_run_id is not None
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


class TestValidationGate:
    def test_forged_webhook_runs_no_other_task(self, output_dir: Path) -> None:
        headers, body = delivery(prediction("succeeded", output="data:text/plain,hi"))
        headers["webhook-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

        state = handle_prediction_webhook(headers, body, return_state=True)

        assert state.is_failed()
        assert state.message is not None
        assert "InvalidSignatureError" in state.message
        assert "No v1 signature in the webhook-signature header matches" in state.message
        task_runs = task_runs_of(flow_run_of(state).id)
        assert [run.name.rsplit("-", 1)[0] for run in task_runs] == ["Validate Replicate webhook"]
        assert task_runs[0].state is not None
        assert task_runs[0].state.is_failed()
        assert not output_dir.exists()

    def test_stale_webhook_fails_run(self) -> None:
        body = json.dumps(prediction("succeeded"))
        headers = sign_headers(SECRET, body, timestamp=int(time.time()) - 3600)

        state = handle_prediction_webhook(headers, body, return_state=True)

        assert state.is_failed()
        assert state.message is not None
        assert "seconds in the past, beyond the tolerance of 300 seconds" in state.message

    def test_missing_secret_fails_run(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("REPLICATE_WEBHOOK_SECRET")
        headers, body = delivery(prediction("succeeded"))

        state = handle_prediction_webhook(headers, body, return_state=True)

        assert state.is_failed()
        assert state.message is not None
        assert "REPLICATE_WEBHOOK_SECRET is not set" in state.message

    def test_secret_absent_from_run_records(self, output_dir: Path) -> None:
        headers, body = delivery(prediction("succeeded", output={"text": "hello"}))
        forged_headers = headers | {"webhook-signature": "v1,AAAA"}

        passed = handle_prediction_webhook(headers, body, return_state=True)
        failed = handle_prediction_webhook(forged_headers, body, return_state=True)

        assert passed.is_completed()
        assert failed.is_failed()
        for state in (passed, failed):
            flow_run = flow_run_of(state)
            stored = [flow_run.model_dump_json(), repr(state)]
            stored += [run.model_dump_json() for run in task_runs_of(flow_run.id)]
            for text in stored:
                assert SECRET_BASE64 not in text
                assert SECRET_BASE64[:16] not in text
        assert SECRET_BASE64 not in repr(passed.result())


class TestSucceeded:
    def test_file_outputs_are_saved(self, output_dir: Path, file_server: str) -> None:
        document = prediction(
            "succeeded",
            output=[f"{file_server}/files/out-0.png", "data:text/plain;base64,aGVsbG8="],
        )
        headers, body = delivery(document)

        result = handle_prediction_webhook(headers, body)

        directory = output_dir / document["id"]
        assert result == HandledPrediction(
            prediction_id=document["id"],
            status="succeeded",
            action="saved",
            files=[str(directory / "out-0.png"), str(directory / "output.txt")],
        )
        assert (directory / "out-0.png").read_bytes() == PNG_BYTES
        assert (directory / "output.txt").read_bytes() == b"hello"
        assert not (directory / "output.json").exists()

    def test_json_output_is_written(self, output_dir: Path) -> None:
        document = prediction("succeeded", output=["Hello", ", ", "world"])
        headers, body = delivery(document)

        result = handle_prediction_webhook(headers, body)

        path = output_dir / document["id"] / "output.json"
        assert result.files == [str(path)]
        assert json.loads(path.read_text()) == ["Hello", ", ", "world"]

    def test_files_inside_json_output_are_replaced_by_names(self, tmp_path: Path) -> None:
        document = prediction(
            "succeeded",
            output={"image": "data:image/png;base64,iVBORw==", "seed": 42, "local": "file:///x"},
        )
        headers, body = delivery(document)

        result = handle_prediction_webhook(headers, body, output_dir=str(tmp_path / "given"))

        directory = tmp_path / "given" / document["id"]
        assert result.files == [str(directory / "output.png"), str(directory / "output.json")]
        assert (directory / "output.png").read_bytes() == base64.b64decode("iVBORw==")
        assert json.loads((directory / "output.json").read_text()) == {
            "image": "output.png",
            "seed": 42,
            "local": "file:///x",
        }

    def test_output_over_size_limit_fails(self, tmp_path: Path, file_server: str) -> None:
        document = Prediction(id="big", status="succeeded", output=f"{file_server}/files/large.bin")

        with pytest.raises(OutputSaveError) as caught:
            save_outputs(document, str(tmp_path), max_output_bytes=1_000)

        assert str(caught.value) == (
            f"Output {file_server}/files/large.bin declares 10000 bytes, more than the limit "
            "of 1000 bytes. Raise max_output_bytes to save it."
        )
        assert list((tmp_path / "big").iterdir()) == []

    def test_data_uri_over_size_limit_fails(self, tmp_path: Path) -> None:
        document = Prediction(id="big", status="succeeded", output="data:;base64," + "A" * 4_000)

        with pytest.raises(OutputSaveError, match="is larger than the limit of 1000 bytes"):
            save_outputs(document, str(tmp_path), max_output_bytes=1_000)

    def test_untrusted_host_is_not_fetched(
        self, tmp_path: Path, file_server: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("REPLICATE_TASKS_OUTPUT_HOSTS")
        document = Prediction(id="h", status="succeeded", output=f"{file_server}/files/redirect")

        with pytest.raises(OutputSaveError, match=r"Output host '127\.0\.0\.1' is not allowed"):
            save_outputs(document, str(tmp_path))

        assert list((tmp_path / "h").iterdir()) == []

    def test_redirect_to_other_scheme_fails(self, tmp_path: Path, file_server: str) -> None:
        document = Prediction(id="r", status="succeeded", output=f"{file_server}/files/redirect")

        with pytest.raises(OutputSaveError, match="Could not download output"):
            save_outputs(document, str(tmp_path))

        assert list((tmp_path / "r").iterdir()) == []


class TestNotSucceeded:
    def test_failed_prediction_is_recorded(self, output_dir: Path) -> None:
        logs = "\n".join(f"step {n}" for n in range(30)) + "\nCUDA out of memory"
        document = prediction("failed", error="CUDA out of memory", logs=logs)
        headers, body = delivery(document)
        records: list[logging.LogRecord] = []
        handler = _ListHandler(records)
        logging.getLogger("prefect.task_runs").addHandler(handler)
        try:
            result = handle_prediction_webhook(headers, body)
        finally:
            logging.getLogger("prefect.task_runs").removeHandler(handler)

        assert result.action == "recorded"
        assert not output_dir.exists()
        warning = next(r for r in records if r.levelno == logging.WARNING)
        assert warning.getMessage() == f"Prediction {document['id']} failed: CUDA out of memory"
        markdown = _artifact_markdown(f"replicate-prediction-{document['id']}")
        assert f"# Replicate prediction {document['id']}: failed" in markdown
        assert "```\nCUDA out of memory\n```" in markdown
        assert "## Last 20 log lines" in markdown
        assert "step 11\n" in markdown
        assert "step 10\n" not in markdown

    @pytest.mark.parametrize("status", ["canceled", "aborted"])
    def test_canceled_and_aborted_are_recorded(self, status: str) -> None:
        document = prediction(status)
        headers, body = delivery(document)

        result = handle_prediction_webhook(headers, body)

        assert result.action == "recorded"
        markdown = _artifact_markdown(f"replicate-prediction-{document['id']}")
        assert "```\nNo error message.\n```" in markdown
        assert "```\nNo logs.\n```" in markdown

    @pytest.mark.parametrize("status", ["starting", "processing"])
    def test_unfinished_prediction_is_ignored(self, status: str, output_dir: Path) -> None:
        headers, body = delivery(prediction(status))

        state = handle_prediction_webhook(headers, body, return_state=True)

        assert state.result().action == "ignored"
        assert len(task_runs_of(flow_run_of(state).id)) == 1
        assert not output_dir.exists()


class TestEventFlow:
    def test_event_payload_is_handled(self, output_dir: Path) -> None:
        payload = prediction("succeeded", output="plain text")

        result = handle_prediction_event(payload)  # type: ignore[arg-type]

        assert result.action == "saved"
        path = output_dir / payload["id"] / "output.json"
        assert json.loads(path.read_text()) == "plain text"

    async def test_flow_receiver_runs_flow_once(self, output_dir: Path) -> None:
        document = prediction("succeeded", output="data:text/plain,done")
        headers, body = delivery(document)
        app = create_flow_receiver()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            first = await client.post(WEBHOOK_PATH, content=body, headers=headers)
            second = await client.post(WEBHOOK_PATH, content=body, headers=headers)

        saved = output_dir / document["id"] / "output.txt"
        deadline = time.monotonic() + 60
        while not saved.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [first.status_code, second.status_code] == [202, 200]
        assert saved.read_text() == "done"


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _artifact_markdown(key: str) -> str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert len(artifacts) == 1
    return str(artifacts[0].data)


SDXL_LATEST = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"
HANDLING_FLOW = "handle-prediction-event"


class GatedHandler:
    """Runs the handling flow for each prediction, once `release` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.prediction_ids: list[str] = []

    def __call__(self, prediction: Prediction) -> None:
        self.release.wait(WAIT_SECONDS)
        self.prediction_ids.append(prediction.id)
        handle_prediction_event(prediction)


@pytest.fixture
def webhook_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulator whose webhooks this module's receivers accept, with retries to spare."""
    options = WebhookOptions(attempts=8, backoff_seconds=0.2)
    with Emulator(clock=ManualClock(), webhook_options=options) as emulator:
        monkeypatch.setenv("REPLICATE_WEBHOOK_SECRET", emulator.webhook_secret)
        yield emulator


def create_prediction(emulator_url: str, webhook: str) -> str:
    body = {
        "version": SDXL_LATEST,
        "input": {"prompt": f"a red fox {uuid.uuid4().hex[:6]}"},
        "webhook": webhook,
        "webhook_events_filter": ["completed"],
    }
    headers = {"Authorization": "Bearer test-token"}
    response = httpx.post(f"{emulator_url}/v1/predictions", json=body, headers=headers)
    assert response.status_code == 202, response.text
    prediction_id: str = response.json()["id"]
    return prediction_id


def finished_handling_runs(prediction_id: str) -> list[FlowRun]:
    """Wait until no run of the handling flow for this prediction is still going."""
    deadline = time.monotonic() + 60
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[HANDLING_FLOW]))
            )
        mine = [run for run in runs if run.parameters["prediction"]["id"] == prediction_id]
        done = mine and all(run.state is not None and run.state.is_final() for run in mine)
        if done or time.monotonic() > deadline:
            return mine
        time.sleep(0.2)


class TestEmulatorDelivery:
    def test_completed_prediction_runs_flow_once(
        self, webhook_emulator: Emulator, output_dir: Path
    ) -> None:
        app = create_receiver(mode="flow", handler=handle_prediction_event)
        with webhook_emulator.serve() as emulator_url, serve_in_thread(app) as receiver_url:
            prediction_id = create_prediction(emulator_url, receiver_url + WEBHOOK_PATH)
            assert isinstance(webhook_emulator.clock, ManualClock)
            webhook_emulator.clock.advance(60)
            webhook_emulator.flush_webhooks(timeout=30)
            runs = finished_handling_runs(prediction_id)
            saved = sorted((output_dir / prediction_id).iterdir())

        deliveries = [d for d in webhook_emulator.deliveries if d.prediction_id == prediction_id]
        assert [(d.event, d.status_codes) for d in deliveries] == [("completed", [202])]
        assert len(runs) == 1
        assert runs[0].state is not None
        assert runs[0].state.is_completed()
        assert runs[0].parameters["prediction"]["status"] == "succeeded"
        assert [path.suffix for path in saved] == [".png"]
        assert saved[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    def test_retry_after_503_is_handled_once(
        self, webhook_emulator: Emulator, output_dir: Path
    ) -> None:
        handler = GatedHandler()
        app = create_receiver(mode="flow", handler=handler, max_pending=1)
        with webhook_emulator.serve() as emulator_url, serve_in_thread(app) as receiver_url:
            ids = [create_prediction(emulator_url, receiver_url + WEBHOOK_PATH) for _ in range(3)]
            assert isinstance(webhook_emulator.clock, ManualClock)
            webhook_emulator.clock.advance(60)
            deadline = time.monotonic() + WAIT_SECONDS
            while not any(503 in d.status_codes for d in webhook_emulator.deliveries):
                assert time.monotonic() < deadline, "no delivery was answered with 503"
                time.sleep(0.05)
            handler.release.set()
            webhook_emulator.flush_webhooks(timeout=60)
            runs = {prediction_id: finished_handling_runs(prediction_id) for prediction_id in ids}

        codes = {d.prediction_id: d.status_codes for d in webhook_emulator.deliveries}
        assert all(codes[prediction_id][-1] == 202 for prediction_id in ids)
        assert any(codes[prediction_id][:-1] == [503] * (len(codes[prediction_id]) - 1)
                   and len(codes[prediction_id]) > 1 for prediction_id in ids)  # fmt: skip
        assert sorted(handler.prediction_ids) == sorted(ids)
        assert {prediction_id: len(found) for prediction_id, found in runs.items()} == {
            prediction_id: 1 for prediction_id in ids
        }
