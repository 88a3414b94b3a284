"""The whole event path on a real `prefect server`, started by the test on 127.0.0.1.

The emulator runs a prediction with a webhook pointing at `replicate-tasks
receiver --mode event`, which verifies the delivery and emits
`replicate.prediction.succeeded` to the Prefect server. A served deployment of
the handling flow, triggered by that event, saves the prediction's output.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from replicate_tasks import Replicate
from replicate_tasks.emulator import Emulator, ScaledClock

from .conftest import FAST_RETRY, REPO

pytestmark = pytest.mark.server

SERVE = """
import sys
from prefect import serve
from prefect.events import DeploymentEventTrigger
from flows.apply import apply_deployments
from flows.rollout import rollout_deployment
from flows.webhook import handle_prediction_event

serve(
    handle_prediction_event.to_deployment(
        name="on-prediction-finished",
        parameters={"output_dir": sys.argv[1]},
        triggers=[
            DeploymentEventTrigger(
                expect={"replicate.prediction.succeeded"},
                match={"prefect.resource.id": "replicate.prediction.*"},
                parameters={"prediction": "{{ event.payload }}"},
            )
        ],
    ),
    apply_deployments.to_deployment(name="apply"),
    rollout_deployment.to_deployment(name="rollout"),
)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, timeout: float) -> None:
    """Wait until `url` responds at all, with any status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def start(arguments: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        arguments,
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def prefect_api(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A `prefect server` of its own, with a fresh home and database."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": tempfile.mkdtemp(prefix="replicate-tasks-server-"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    server = start(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
            "--analytics-off",
        ],
        env,
        tmp_path / "server.log",
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/api/health", timeout=120)
        yield env["PREFECT_API_URL"], env
    finally:
        stop(server)


def call(method: str, url: str, **options: Any) -> Any:
    """Send one request to the Prefect server, retrying its 503s.

    A fresh SQLite database on 2 busy cores sometimes returns 503 while it is
    locked; the request is repeated for up to 30 s before failing the test.
    """
    deadline = time.monotonic() + 30
    while True:
        response = httpx.request(method, url, timeout=10, **options)
        if response.status_code != 503 or time.monotonic() > deadline:
            response.raise_for_status()
            return response.json()
        time.sleep(1)


def completed_runs(api: str, flow_name: str) -> list[dict[str, object]]:
    runs = call("POST", f"{api}/flow_runs/filter", json={"flows": {"name": {"any_": [flow_name]}}})
    return [run for run in runs if run["state_type"] == "COMPLETED"]


def test_webhook_event_triggers_served_flow(
    prefect_api: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    api, env = prefect_api
    output_dir = tmp_path / "outputs"
    emulator = Emulator(clock=ScaledClock(1000))
    receiver_port = free_port()

    with emulator.serve() as url:
        receiver_env = {**env, "REPLICATE_WEBHOOK_SECRET": emulator.webhook_secret}
        receiver = start(
            [
                sys.executable,
                "-m",
                "flows.cli",
                "receiver",
                "--mode",
                "event",
                "--port",
                str(receiver_port),
            ],
            receiver_env,
            tmp_path / "receiver.log",
        )
        served_env = {
            **env,
            "REPLICATE_BASE_URL": url,
            "REPLICATE_API_TOKEN": "token",
            "REPLICATE_TASKS_JOURNAL": str(tmp_path / "journal.jsonl"),
            "REPLICATE_TASKS_OUTPUT_HOSTS": "127.0.0.1",
        }
        served = start(
            [sys.executable, "-c", SERVE, str(output_dir)], served_env, tmp_path / "serve.log"
        )
        try:
            wait_for(f"http://127.0.0.1:{receiver_port}/webhooks/replicate", timeout=60)
            deadline = time.monotonic() + 60
            while _deployment_count(api) < 3 and time.monotonic() < deadline:
                time.sleep(0.5)

            with Replicate("token", url, retry=FAST_RETRY) as client:
                client.deployments.create(
                    "app",
                    "stability-ai/sdxl",
                    "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b",
                    hardware="gpu-t4",
                    min_instances=1,
                    max_instances=1,
                )
                prediction = client.deployments.predictions.create(
                    "acme/app",
                    {"prompt": "a lighthouse"},
                    webhook=f"http://127.0.0.1:{receiver_port}/webhooks/replicate",
                    webhook_events_filter=["completed"],
                )
            emulator.flush_webhooks(timeout=30)

            runs: list[dict[str, object]] = []
            deadline = time.monotonic() + 120
            while not runs and time.monotonic() < deadline:
                runs = completed_runs(api, "handle-prediction-event")
                time.sleep(1)

            # The apply and rollout flows, run as deployments on the same server.
            applied = run_deployment(
                api, "apply-deployments/apply", {"path": str(REPO / "deployments.yaml")}
            )
            rolled = run_deployment(
                api,
                "rollout-deployment/rollout",
                {
                    "deployment": "acme/image-generator",
                    "version": "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf",
                    "probe_input": {"prompt": "a lighthouse"},
                    "probe_count": 1,
                    "poll_interval": 0.05,
                },
            )
            with Replicate("token", url, retry=FAST_RETRY) as client:
                image_generator = client.deployments.get("acme", "image-generator")
        finally:
            stop(served)
            stop(receiver)

    assert [d.status_codes for d in emulator.deliveries] == [[202]]
    assert len(runs) == 1, (tmp_path / "serve.log").read_text()[-2000:]
    saved = list(output_dir.rglob("*.png"))
    assert len(saved) == 1
    assert prediction.id in str(saved[0])
    assert saved[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert applied == "COMPLETED", (tmp_path / "serve.log").read_text()[-2000:]
    assert rolled == "COMPLETED", (tmp_path / "serve.log").read_text()[-2000:]
    assert image_generator.version.startswith("da77bc59")


def _deployment_count(api: str) -> int:
    return len(call("POST", f"{api}/deployments/filter", json={}))


def run_deployment(api: str, name: str, parameters: dict[str, object]) -> str:
    """Create a run of a served deployment through the REST API and return its final state."""
    deployment = call("GET", f"{api}/deployments/name/{name}")
    created = call(
        "POST",
        f"{api}/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": parameters},
    )
    run_id = created["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = call("GET", f"{api}/flow_runs/{run_id}")["state_type"]
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return str(state)
        time.sleep(1)
    return "TIMED OUT"
