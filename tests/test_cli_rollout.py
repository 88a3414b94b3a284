"""The rollout commands: rollout, scale, delete, history and undo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from replicate_tasks import Replicate
from replicate_tasks.emulator import Emulator, ScaledClock

from .test_rollout import MODEL, PROBE, SPEED, V1, V2

runner = CliRunner(env={"COLUMNS": "200"})

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(clock=ScaledClock(SPEED))


@pytest.fixture
def production(
    api_env: str, client: Replicate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    monkeypatch.setenv("REPLICATE_TASKS_JOURNAL", str(tmp_path / "journal.jsonl"))
    client.deployments.create("app", MODEL, V1, hardware="gpu-t4", min_instances=1, max_instances=2)
    return "acme/app"


def test_rollout_history_undo(production: str, client: Replicate) -> None:
    rolled = runner.invoke(
        app,
        [
            "rollout",
            production,
            "--version",
            V2,
            "--strategy",
            "blue-green",
            "--probe-input",
            json.dumps(PROBE),
            "--probe-count",
            "1",
            "--ready-timeout",
            "60",
        ],
    )
    history = runner.invoke(app, ["history", production])
    undone = runner.invoke(app, ["undo", production])

    assert rolled.exit_code == 0, rolled.output
    assert "rollout (blue-green) of acme/app: succeeded" in rolled.output
    assert "deleted preview acme/app-preview" in rolled.output
    assert history.exit_code == 0
    assert (
        history.output.count("rollout (blue-green)") == 4
    )  # started, preview, promoted, succeeded
    assert f"{V1[:8]} → {V2[:8]}" in history.output
    assert undone.exit_code == 0, undone.output
    assert client.deployments.get(production).version == V1


def test_rollout_failure_exits_1(production: str, emulator: Emulator, client: Replicate) -> None:
    emulator.configure(version=V2, failure="bad weights")

    result = runner.invoke(
        app,
        [
            "rollout",
            production,
            "--version",
            V2,
            "--probe-input",
            json.dumps(PROBE),
            "--probe-count",
            "1",
            "--ready-timeout",
            "60",
        ],
    )

    assert result.exit_code == 1
    assert "rollout (in-place) of acme/app: rolled-back" in result.output
    assert "bad weights" in result.output
    assert client.deployments.get(production).version == V1


def test_rollout_rejects_bad_probe_input(production: str, emulator: Emulator) -> None:
    before = len(emulator.requests)

    result = runner.invoke(app, ["rollout", production, "--version", V2, "--probe-input", "{oops"])

    assert result.exit_code == 2
    assert "is not valid JSON" in result.output
    assert len(emulator.requests) == before


def test_scale_and_delete(production: str, client: Replicate) -> None:
    scaled = runner.invoke(
        app, ["scale", production, "--min-instances", "0", "--max-instances", "3"]
    )
    deleted = runner.invoke(app, ["delete", production, "--timeout", "60"])

    assert scaled.exit_code == 0, scaled.output
    assert "scale of acme/app: succeeded" in scaled.output
    assert deleted.exit_code == 0, deleted.output
    assert "delete of acme/app: succeeded" in deleted.output
    assert client.deployments.list_all() == []


def test_history_of_unknown_deployment(production: str) -> None:
    result = runner.invoke(app, ["history", "acme/nothing"])

    assert result.exit_code == 0
    assert "The journal has no changes of acme/nothing made through" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["rollout", "acme/app", "--version", "da77bc59"], "is not a version id"),
        (["rollout", "app", "--version", V2], "is not of the form owner/name"),
        (["rollout", "acme/app", "--version", V2, "--strategy", "bluegreen"], "bluegreen"),
        (["rollout", "acme/app", "--version", V2, "--strategy", "blue-green"], "--probe-input"),
        (["scale", "acme/app"], "nothing to change"),
        (["scale", "acme/app", "--min-instances", "3", "--max-instances", "2"], "is above"),
        (["scale", "acme/app", "--min-instances", "9"], "--min-instances"),
        (["delete", "acme/app", "--timeout", "0"], "--timeout"),
    ],
)
def test_arguments_checked_before_any_request(
    production: str, emulator: Emulator, arguments: list[str], message: str
) -> None:
    before = len(emulator.requests)

    result = runner.invoke(app, arguments)

    assert result.exit_code == 2
    assert message in result.output
    assert len(emulator.requests) == before


def test_receiver_event_mode_needs_prefect_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)

    result = runner.invoke(app, ["receiver", "--mode", "event"])

    assert result.exit_code == 1
    assert "--mode event needs PREFECT_API_URL" in result.output


def test_receiver_rejects_invalid_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_WEBHOOK_SECRET", "whsec_@@@ not base64")

    result = runner.invoke(app, ["receiver"])

    assert result.exit_code == 1
    assert "REPLICATE_WEBHOOK_SECRET is invalid" in result.output
    assert "@@@" not in result.output


def test_history_ignores_other_apis(production: str, tmp_path: Path) -> None:
    from replicate_tasks.journal import FileJournal, JournalEntry

    FileJournal(tmp_path / "journal.jsonl").append(
        JournalEntry(
            rollout_id="elsewhere",
            deployment=production,
            action="scale",
            phase="succeeded",
            api="http://127.0.0.1:1",
        )
    )

    result = runner.invoke(app, ["history", production])

    assert "elsewhere" not in result.output
    assert "The journal has no changes of acme/app made through" in result.output
