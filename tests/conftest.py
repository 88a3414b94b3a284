"""Shared fixtures: the emulator (in process and served on 127.0.0.1) and Prefect."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Prefect reads its settings when first imported, so these come before any import of it:
# a private home, no telemetry, and time for a fresh database to migrate on 2 cores.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="replicate-tasks-prefect-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")

import prefect  # noqa: F401  (sets up Prefect's logging on the real streams, before CliRunner swaps them)
import pytest

from replicate_tasks import Replicate, RetryPolicy
from replicate_tasks.emulator import Emulator, ManualClock

FAST_RETRY = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05, max_retry_after=0.2)


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(clock=ManualClock())


@pytest.fixture
def emulator_url(emulator: Emulator) -> Iterator[str]:
    with emulator.serve() as url:
        yield url


@pytest.fixture
def client(emulator_url: str) -> Iterator[Replicate]:
    with Replicate(api_token="test-token", base_url=emulator_url, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture
def api_env(emulator_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every client built from the environment (tasks, flows) at the served emulator."""
    monkeypatch.setenv("REPLICATE_BASE_URL", emulator_url)
    monkeypatch.setenv("REPLICATE_API_TOKEN", "test-token")
    return emulator_url


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A Prefect API server on 127.0.0.1 for the whole session, with a fresh database."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


REPO = Path(__file__).resolve().parent.parent
