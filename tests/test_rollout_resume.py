"""A blue-green rollout killed at each step, then run again, converges every time.

Each first run happens in a child process that is killed (SIGKILL, no cleanup)
as soon as the emulator receives the request that marks a step; the second
run happens in this process, against the same emulator, journal and Prefect
server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.rollout import rollout_deployment
from replicate_tasks import Replicate
from replicate_tasks.emulator import Emulator, ScaledClock
from replicate_tasks.journal import FileJournal, latest_by_rollout

from .conftest import REPO
from .test_rollout import FAST, MODEL, PROBE, SPEED, V1, V2

pytestmark = pytest.mark.usefixtures("prefect_server")

CHILD = f"""
from flows.rollout import rollout_deployment
rollout_deployment("acme/app", {V2!r}, strategy="blue-green", probe_input={PROBE!r}, **{FAST!r})
"""

# The request at which the child is killed, one per step of the rollout.
KILL_POINTS = [
    ("POST", "/v1/deployments"),  # creating the preview
    ("POST", "/v1/deployments/acme/app-preview/predictions"),  # probing the preview
    ("PATCH", "/v1/deployments/acme/app"),  # promoting production
    ("POST", "/v1/deployments/acme/app/predictions"),  # probing production
    ("PATCH", "/v1/deployments/acme/app-preview"),  # scaling the preview to zero
    ("DELETE", "/v1/deployments/acme/app-preview"),  # deleting the preview
]


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(clock=ScaledClock(SPEED))


def run_child_until(emulator: Emulator, method: str, path: str, env: dict[str, str]) -> bool:
    """Start the rollout in a child process and kill it when `method path` arrives."""
    seen_before = emulator.request_count(method, path)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if emulator.request_count(method, path) > seen_before:
                child.kill()
                return True
            time.sleep(0.005)
        return False
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


@pytest.mark.parametrize(("method", "path"), KILL_POINTS, ids=[f"{m} {p}" for m, p in KILL_POINTS])
def test_killed_rollout_converges(
    method: str,
    path: str,
    emulator: Emulator,
    api_env: str,
    client: Replicate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.settings import PREFECT_API_URL

    journal_path = tmp_path / "journal.jsonl"
    monkeypatch.setenv("REPLICATE_TASKS_JOURNAL", str(journal_path))
    client.deployments.create("app", MODEL, V1, hardware="gpu-t4", min_instances=1, max_instances=2)
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}

    killed = run_child_until(emulator, method, path, env)
    result = rollout_deployment("acme/app", V2, strategy="blue-green", probe_input=PROBE, **FAST)

    assert killed, f"the child never sent {method} {path}"
    live = client.deployments.get("acme/app")
    assert live.version == V2
    assert result.outcome in ("succeeded", "unchanged")
    assert [d.name for d in client.deployments.list_all()] == ["app"]
    assert (
        emulator.request_count("POST", "/v1/deployments") <= 3
    )  # production, at most one preview per run
    last = latest_by_rollout(FileJournal(journal_path).entries("acme/app"))[-1]
    assert last.phase == "succeeded"
    # Production served the new version only after probes proved it, in one run or the other.
    assert (
        emulator.request_count("POST", "/v1/deployments/acme/app/predictions")
        >= FAST["probe_count"]
    )
