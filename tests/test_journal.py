"""The release journal: file and Prefect stores, and grouping by rollout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from replicate_tasks.journal import (
    FileJournal,
    JournalEntry,
    PrefectJournal,
    ReleaseSettings,
    default_journal,
    latest_by_rollout,
)

from .conftest import REPO

OLD = ReleaseSettings(
    version="a" * 64, hardware="gpu-t4", min_instances=0, max_instances=1, number=1
)
NEW = OLD.model_copy(update={"version": "b" * 64, "number": None})


def entry(
    rollout_id: str, phase: str, deployment: str = "acme/app", **fields: object
) -> JournalEntry:
    return JournalEntry(
        rollout_id=rollout_id,
        deployment=deployment,
        action="rollout (in-place)",
        phase=phase,  # type: ignore[arg-type]
        previous=OLD,
        target=NEW,
        **fields,  # type: ignore[arg-type]
    )


def test_file_journal_round_trip(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path / "journal.jsonl")
    journal.append(entry("r1", "started"))
    journal.append(entry("r1", "succeeded", release_number=2))
    journal.append(entry("r2", "started", deployment="acme/other"))

    mine = journal.entries("acme/app")

    assert [(e.rollout_id, e.phase) for e in mine] == [("r1", "started"), ("r1", "succeeded")]
    assert mine[1].release_number == 2
    assert mine[1].previous == OLD
    assert len(journal.entries()) == 3


def test_file_journal_survives_process(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    code = (
        "import sys\n"
        "from replicate_tasks.journal import FileJournal, JournalEntry\n"
        "FileJournal(sys.argv[1]).append(JournalEntry(rollout_id='r9', deployment='acme/app',"
        " action='scale', phase='succeeded', reason='written by another process'))\n"
    )

    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=REPO)

    entries = FileJournal(path).entries("acme/app")
    assert [e.reason for e in entries] == ["written by another process"]


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert FileJournal(tmp_path / "none.jsonl").entries() == []


def test_latest_by_rollout_keeps_start_order() -> None:
    entries = [
        entry("r1", "started"),
        entry("r2", "started"),
        entry("r1", "promoted"),
        entry("r2", "failed"),
        entry("r1", "succeeded"),
    ]

    latest = latest_by_rollout(entries)

    assert [(e.rollout_id, e.phase) for e in latest] == [("r1", "succeeded"), ("r2", "failed")]
    assert latest[0].is_final
    assert not entries[0].is_final


def test_default_journal_follows_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATE_TASKS_JOURNAL", str(tmp_path / "j.jsonl"))
    chosen = default_journal()
    monkeypatch.delenv("REPLICATE_TASKS_JOURNAL")

    assert isinstance(chosen, FileJournal)
    assert chosen.path == tmp_path / "j.jsonl"
    assert isinstance(default_journal(), PrefectJournal)


@pytest.mark.usefixtures("prefect_server")
def test_prefect_journal_is_shared_through_server() -> None:
    deployment = "acme/journal-shared"
    PrefectJournal().append(entry("p1", "started", deployment=deployment))
    PrefectJournal().append(
        entry("p1", "rolled-back", deployment=deployment, reason="probe failed")
    )

    # A second journal object stands for another process or machine using the same server.
    entries = PrefectJournal().entries(deployment)

    assert [(e.rollout_id, e.phase) for e in entries] == [("p1", "started"), ("p1", "rolled-back")]
    assert entries[1].reason == "probe failed"
    assert entries[1].target == NEW
