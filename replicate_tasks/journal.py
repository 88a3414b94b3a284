"""The release journal: every change the flows make to a deployment, and its outcome.

Replicate keeps only a deployment's current release, so the history and undo
of changes, and the resumption of an interrupted rollout, read this journal.
Entries are appended, never changed: a rollout writes one entry when it
starts and more as it goes (promoted, succeeded, rolled back, failed), all
with the same `rollout_id`.

Two stores are provided:

- `PrefectJournal` keeps entries as table artifacts on the Prefect server
  (key `replicate-journal`), so every flow run that talks to the same server,
  on any machine, reads and writes the same journal. This is the default.
- `FileJournal` keeps entries in a JSON Lines file, for use without Prefect.

`REPLICATE_TASKS_JOURNAL` chooses the store: a file path, or `prefect`.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FINAL_PHASES",
    "FileJournal",
    "Journal",
    "JournalEntry",
    "Phase",
    "PrefectJournal",
    "ReleaseSettings",
    "default_journal",
    "latest_by_rollout",
    "new_rollout_id",
]

JOURNAL_ARTIFACT_KEY = "replicate-journal"

# `preview` records that a blue-green rollout claimed (and then created) its
# preview deployment, so only previews the tool made are reused or deleted.
Phase = Literal["started", "preview", "promoted", "succeeded", "rolled-back", "failed"]
FINAL_PHASES: frozenset[str] = frozenset({"succeeded", "rolled-back", "failed"})


class ReleaseSettings(BaseModel):
    """The settings of a release that a change moves from or to."""

    model_config = ConfigDict(frozen=True)

    version: str
    hardware: str
    min_instances: int
    max_instances: int
    number: int | None = None


class JournalEntry(BaseModel):
    """One step of one change to one deployment.

    `api` is the base URL of the API the change was made through, so that
    changes made on an emulator are never mistaken for the real API's.
    """

    model_config = ConfigDict(frozen=True)

    rollout_id: str
    deployment: str
    action: str
    api: str | None = None
    phase: Phase
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    by: str | None = None
    previous: ReleaseSettings | None = None
    target: ReleaseSettings | None = None
    release_number: int | None = None
    reason: str | None = None
    preview: str | None = None
    flow_run_id: str | None = None

    @property
    def is_final(self) -> bool:
        return self.phase in FINAL_PHASES


def new_rollout_id() -> str:
    return uuid.uuid4().hex[:12]


class Journal(Protocol):
    """A store of journal entries."""

    def append(self, entry: JournalEntry) -> None: ...

    def entries(self, deployment: str | None = None) -> list[JournalEntry]:
        """Return the entries, oldest first, of one deployment (`owner/name`) or of all."""
        ...


class FileJournal:
    """A journal in a JSON Lines file; appends from threads of one process are serialized."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, entry: JournalEntry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = entry.model_dump_json() + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as file:
            file.write(line)

    def entries(self, deployment: str | None = None) -> list[JournalEntry]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        parsed = [JournalEntry.model_validate_json(line) for line in lines if line.strip()]
        return _select(parsed, deployment)


class PrefectJournal:
    """A journal kept as table artifacts on the Prefect server that flows report to."""

    def append(self, entry: JournalEntry) -> None:
        from prefect.artifacts import create_table_artifact

        create_table_artifact(
            table=[entry.model_dump(mode="json")],
            key=JOURNAL_ARTIFACT_KEY,
            description=f"{entry.deployment}: {entry.action} {entry.phase}",
        )

    def entries(self, deployment: str | None = None) -> list[JournalEntry]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
        from prefect.client.schemas.sorting import ArtifactSort

        artifact_filter = ArtifactFilter(key=ArtifactFilterKey(any_=[JOURNAL_ARTIFACT_KEY]))
        found: list[JournalEntry] = []
        offset = 0
        with get_client(sync_client=True) as client:
            while True:
                page = client.read_artifacts(
                    artifact_filter=artifact_filter,
                    sort=ArtifactSort.CREATED_DESC,
                    limit=200,
                    offset=offset,
                )
                for artifact in page:
                    found.extend(_parse_table(artifact.data))
                if len(page) < 200:
                    break
                offset += 200
        found.sort(key=lambda entry: entry.at)
        return _select(found, deployment)


def _parse_table(data: Any) -> list[JournalEntry]:
    rows = json.loads(data) if isinstance(data, str) else data
    if not isinstance(rows, list):
        return []
    return [JournalEntry.model_validate(row) for row in rows if isinstance(row, dict)]


def _select(entries: Iterable[JournalEntry], deployment: str | None) -> list[JournalEntry]:
    return [entry for entry in entries if deployment is None or entry.deployment == deployment]


def latest_by_rollout(entries: Iterable[JournalEntry]) -> list[JournalEntry]:
    """Return the last entry of each rollout, in the order the rollouts started."""
    # Assigning to an existing key keeps its place, so rollouts stay in start order.
    latest: dict[str, JournalEntry] = {}
    for entry in entries:
        latest[entry.rollout_id] = entry
    return list(latest.values())


def default_journal() -> Journal:
    """Return the journal that `REPLICATE_TASKS_JOURNAL` names, Prefect's by default."""
    setting = os.environ.get("REPLICATE_TASKS_JOURNAL", "prefect").strip()
    if setting in ("", "prefect"):
        return PrefectJournal()
    return FileJournal(setting)
