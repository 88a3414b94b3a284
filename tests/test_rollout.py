"""Rollouts through Prefect against the emulator on an accelerated clock."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.rollout import (
    RolloutFailedError,
    delete_deployment,
    rollout_deployment,
    scale_deployment,
    undo_deployment,
)
from replicate_tasks import IncompatibleSchemaError, Replicate
from replicate_tasks.emulator import Emulator, ScaledClock
from replicate_tasks.journal import FileJournal, latest_by_rollout

from .conftest import FAST_RETRY

MODEL = "stability-ai/sdxl"
V1 = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
V2 = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"
PROBE = {"prompt": "a lighthouse at dawn"}
FAST = {"probe_count": 2, "ready_timeout": 60.0, "poll_interval": 0.05, "delete_timeout": 60.0}

# 600 emulated seconds per real second: a 30 s cold boot takes 0.05 s, and
# Replicate's 15-minute delete window 1.5 s.
SPEED = 600

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(clock=ScaledClock(SPEED))


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileJournal:
    path = tmp_path / "journal.jsonl"
    monkeypatch.setenv("REPLICATE_TASKS_JOURNAL", str(path))
    return FileJournal(path)


@pytest.fixture
def production(api_env: str, client: Replicate) -> Iterator[str]:
    client.deployments.create("app", MODEL, V1, hardware="gpu-t4", min_instances=1, max_instances=2)
    yield "acme/app"


def phases(journal: FileJournal, deployment: str = "acme/app") -> list[str]:
    return [entry.phase for entry in journal.entries(deployment)]


def preview_exists(client: Replicate) -> bool:
    return any(d.name == "app-preview" for d in client.deployments.list_all())


def test_blue_green_to_good_version(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    result = rollout_deployment(production, V2, strategy="blue-green", probe_input=PROBE, **FAST)

    live = client.deployments.get(production)
    assert result.outcome == "succeeded"
    assert live.version == V2
    assert live.hardware == "gpu-t4"
    assert live.min_instances == 1
    assert not preview_exists(client)
    assert phases(journal) == ["started", "preview", "promoted", "succeeded"]
    assert journal.entries(production)[-1].previous is not None
    assert journal.entries(production)[-1].previous.version == V1  # type: ignore[union-attr]
    assert emulator.request_count("POST", "/v1/deployments") == 2  # production and one preview


def test_blue_green_to_failing_version_keeps_old(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    emulator.configure(version=V2, failure="CUDA out of memory")

    with pytest.raises(RolloutFailedError) as raised:
        rollout_deployment(production, V2, strategy="blue-green", probe_input=PROBE, **FAST)

    assert raised.value.result.outcome == "failed"
    assert client.deployments.get(production).version == V1
    assert emulator.request_count("PATCH", "/v1/deployments/acme/app") == 0
    assert not preview_exists(client)
    last = journal.entries(production)[-1]
    assert last.phase == "failed"
    assert last.reason is not None
    assert "CUDA out of memory" in last.reason
    assert "ProbeFailedError" in last.reason


def test_in_place_to_failing_version_rolls_back(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    emulator.configure(version=V2, failure="segfault in model setup")

    with pytest.raises(RolloutFailedError) as raised:
        rollout_deployment(production, V2, strategy="in-place", probe_input=PROBE, **FAST)

    live = client.deployments.get(production)
    assert raised.value.result.outcome == "rolled-back"
    assert live.version == V1
    assert live.release_number == 3  # promoted as 2, restored as 3
    assert phases(journal) == ["started", "promoted", "rolled-back"]
    assert "segfault in model setup" in (journal.entries(production)[-1].reason or "")


def test_schema_drop_blocks_before_change(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    schema = copy.deepcopy(client.models.versions.get(MODEL, V1).openapi_schema)
    assert schema is not None
    del schema["components"]["schemas"]["Input"]["properties"]["prompt"]
    dropped = "f" * 64
    emulator.add_version(MODEL, dropped, openapi_schema=schema)
    writes_before = [r for r in emulator.requests if r.method != "GET"]

    with pytest.raises(IncompatibleSchemaError) as raised:
        rollout_deployment(production, dropped, strategy="blue-green", probe_input=PROBE, **FAST)

    assert raised.value.problems == ["input 'prompt' was removed"]
    assert "Nothing was changed" in str(raised.value)
    assert [r for r in emulator.requests if r.method != "GET"] == writes_before
    assert client.deployments.get(production).version == V1
    assert journal.entries(production) == []


def test_incompatible_schema_can_be_overridden(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    schema = copy.deepcopy(client.models.versions.get(MODEL, V1).openapi_schema)
    assert schema is not None
    del schema["components"]["schemas"]["Input"]["properties"]["width"]
    emulator.add_version(MODEL, "e" * 64, openapi_schema=schema)

    result = rollout_deployment(
        production, "e" * 64, probe_input=PROBE, allow_incompatible_schema=True, **FAST
    )

    assert result.outcome == "succeeded"
    assert client.deployments.get(production).version == "e" * 64


def test_out_of_band_patch_stops_rollout(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    # A slow preview boot leaves time to change production behind the rollout's back.
    emulator.configure(deployment="acme/app-preview", boot_seconds=600)

    def meddle() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if emulator.request_count("POST", "/v1/deployments/acme/app-preview/predictions"):
                with Replicate("other-token", client.base_url, retry=FAST_RETRY) as other:
                    other.deployments.update("acme", "app", max_instances=4)
                return
            time.sleep(0.01)

    meddler = threading.Thread(target=meddle)
    meddler.start()
    with pytest.raises(RolloutFailedError) as raised:
        rollout_deployment(production, V2, strategy="blue-green", probe_input=PROBE, **FAST)
    meddler.join()

    assert raised.value.result.outcome == "failed"
    assert "moved from release 1 to 2 (by acme) during this rollout (blue-green)" in str(
        raised.value.result.reason
    )
    assert "someone else changed it" in str(raised.value.result.reason)
    live = client.deployments.get(production)
    assert live.version == V1
    assert live.max_instances == 4


def test_rerun_after_success_changes_nothing(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    rollout_deployment(production, V2, probe_input=PROBE, **FAST)
    writes = len([r for r in emulator.requests if r.method in {"PATCH", "DELETE"}])

    again = rollout_deployment(production, V2, probe_input=PROBE, **FAST)

    assert again.outcome == "unchanged"
    assert len([r for r in emulator.requests if r.method in {"PATCH", "DELETE"}]) == writes


def test_resume_proves_promoted_version(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    from replicate_tasks.journal import JournalEntry, ReleaseSettings

    # An earlier run promoted V2 and stopped before proving it.
    previous = ReleaseSettings(version=V1, hardware="gpu-t4", min_instances=1, max_instances=2)
    journal.append(
        JournalEntry(
            rollout_id="earlier",
            deployment=production,
            action="rollout (in-place)",
            phase="promoted",
            previous=previous,
            target=previous.model_copy(update={"version": V2}),
        )
    )
    client.deployments.update("acme", "app", version=V2)
    emulator.configure(version=V2, failure="bad weights")

    with pytest.raises(RolloutFailedError):
        rollout_deployment(production, V2, probe_input=PROBE, **FAST)

    assert client.deployments.get(production).version == V1
    assert latest_by_rollout(journal.entries(production))[-1].rollout_id == "earlier"
    assert phases(journal)[-1] == "rolled-back"


def test_scale_waits_until_applied(
    production: str, client: Replicate, journal: FileJournal
) -> None:
    result = scale_deployment(production, min_instances=0, max_instances=5, probe_input=PROBE)

    live = client.deployments.get(production)
    assert result.outcome == "succeeded"
    assert (live.min_instances, live.max_instances) == (0, 5)
    assert phases(journal) == ["started", "succeeded"]


def test_scale_rejects_empty_change(production: str) -> None:
    with pytest.raises(ValueError, match="scale needs at least one of"):
        scale_deployment(production)


def test_delete_right_after_use(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    prediction = client.deployments.predictions.create(production, PROBE)
    client.predictions.wait(prediction, interval=0.05)
    started = time.monotonic()

    result = delete_deployment(production, timeout=60)

    waited = (time.monotonic() - started) * SPEED
    assert result.outcome == "succeeded"
    assert production not in [d.ref for d in client.deployments.list_all()]
    assert waited >= 15 * 60  # Replicate's offline window, on the emulator's clock
    assert phases(journal) == ["started", "succeeded"]


def test_undo_restores_previous_release(
    production: str, client: Replicate, journal: FileJournal
) -> None:
    rollout_deployment(production, V2, probe_input=PROBE, **FAST)

    result = undo_deployment(production)

    assert result.outcome == "succeeded"
    assert client.deployments.get(production).version == V1
    assert phases(journal)[-2:] == ["started", "succeeded"]


def test_undo_without_history_explains(production: str, journal: FileJournal) -> None:
    with pytest.raises(ValueError, match="the journal has no successful change of acme/app"):
        undo_deployment(production)


def test_blue_green_needs_probe_input(production: str) -> None:
    with pytest.raises(ValueError, match="a blue-green rollout needs probe_input"):
        rollout_deployment(production, V2, strategy="blue-green")


def test_phases_emit_prefect_events(production: str, journal: FileJournal) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventResourceFilter

    rollout_deployment(production, V2, probe_input=PROBE, **FAST)

    wanted = {
        "replicate.rollout.started",
        "replicate.rollout.promoted",
        "replicate.rollout.succeeded",
    }
    resource = EventResourceFilter(id=["replicate.deployment.acme/app"])
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    # The server stores events a little after they are sent, so poll for them.
    while time.monotonic() < deadline and not wanted <= seen:
        with get_client(sync_client=True) as prefect:
            page = prefect.read_events(filter=EventFilter(resource=resource), limit=50)
        seen = {event.event for event in page.events}
        time.sleep(0.5)
    assert wanted <= seen


def test_apply_uses_rollout_from_file(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal, tmp_path: Path
) -> None:
    from flows.apply import ApplyFailedError, apply_deployments

    path = tmp_path / "deployments.yaml"
    path.write_text(
        f"""
deployments:
  - name: app
    model: {MODEL}
    version: {V2}
    hardware: gpu-t4
    min_instances: 1
    max_instances: 2
    rollout:
      strategy: blue-green
      probe_input: {{prompt: a lighthouse}}
      probe_count: 1
      ready_timeout: 60
"""
    )
    emulator.configure(version=V2, failure="bad weights")

    with pytest.raises(ApplyFailedError) as raised:
        apply_deployments(str(path))

    assert "bad weights" in (raised.value.result.failed[0].error or "")
    assert client.deployments.get(production).version == V1
    assert emulator.request_count("POST", "/v1/deployments/acme/app-preview/predictions") == 1
    assert phases(journal) == ["started", "preview", "failed"]

    emulator.configure(version=V2, failure=None)
    result = apply_deployments(str(path))

    assert [o.status for o in result.outcomes] == ["updated"]
    assert client.deployments.get(production).version == V2
    assert phases(journal)[-4:] == ["started", "preview", "promoted", "succeeded"]


def test_unapproved_promotion_times_out(
    production: str, client: Replicate, journal: FileJournal
) -> None:
    with pytest.raises(RolloutFailedError) as raised:
        rollout_deployment(
            production, V2, strategy="blue-green", probe_input=PROBE, approval_timeout=2, **FAST
        )

    assert "promotion was not approved within 2 s" in str(raised.value.result.reason)
    assert client.deployments.get(production).version == V1
    assert not preview_exists(client)


V3 = "a00d0b7dcbb9c3fbb34ba87d2d5b46c56969c84a628bf778a7fdaec30b1b99c5"


def test_foreign_preview_is_left_alone(
    production: str, client: Replicate, journal: FileJournal
) -> None:
    client.deployments.create(
        "app-preview", MODEL, V1, hardware="gpu-t4", min_instances=1, max_instances=3
    )

    with pytest.raises(RolloutFailedError) as raised:
        rollout_deployment(production, V2, strategy="blue-green", probe_input=PROBE, **FAST)

    foreign = client.deployments.get("acme", "app-preview")
    assert "no rollout of acme/app recorded creating it" in str(raised.value.result.reason)
    assert (foreign.release_number, foreign.min_instances, foreign.max_instances) == (1, 1, 3)
    assert client.deployments.get(production).version == V1


@pytest.mark.parametrize("suffix", ["", "preview", "-", "/x", "-UP"])
def test_preview_suffix_is_checked(production: str, suffix: str) -> None:
    with pytest.raises(ValueError, match=r"preview_suffix .* is invalid"):
        rollout_deployment(
            production, V2, strategy="blue-green", probe_input=PROBE, preview_suffix=suffix
        )


def test_bad_version_id_changes_nothing(production: str, emulator: Emulator) -> None:
    before = len(emulator.requests)

    with pytest.raises(ValueError, match="expected the 64-character hexadecimal version id"):
        rollout_deployment(production, "v2", probe_input=PROBE)

    assert len(emulator.requests) == before


def test_lost_promotion_response_rolls_back(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    emulator.configure(version=V2, failure="never served")
    # Every attempt of the promotion lands, and every response is lost.
    emulator.faults.drop_next(
        count=5, method="PATCH", path="/v1/deployments/acme/app", after_change=True
    )

    with pytest.raises(RolloutFailedError) as raised:
        rollout_deployment(production, V2, probe_input=PROBE, **FAST)

    assert raised.value.result.outcome == "rolled-back"
    assert client.deployments.get(production).version == V1
    assert phases(journal)[-1] == "rolled-back"


def test_rollback_skips_unproven_version(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    from replicate_tasks.journal import JournalEntry, ReleaseSettings

    # An earlier rollout promoted V2 and stopped before proving it.
    proven = ReleaseSettings(version=V1, hardware="gpu-t4", min_instances=1, max_instances=2)
    journal.append(
        JournalEntry(
            rollout_id="stopped",
            deployment=production,
            action="rollout (in-place)",
            phase="promoted",
            previous=proven,
            target=proven.model_copy(update={"version": V2}),
        )
    )
    client.deployments.update("acme", "app", version=V2)
    emulator.configure(version=V3, failure="bad weights")

    with pytest.raises(RolloutFailedError):
        rollout_deployment(
            production, V3, probe_input=PROBE, allow_incompatible_schema=True, **FAST
        )

    assert client.deployments.get(production).version == V1


def test_undo_stops_on_later_change(
    production: str, client: Replicate, journal: FileJournal
) -> None:
    from replicate_tasks import ConcurrentChangeError

    rollout_deployment(production, V2, probe_input=PROBE, **FAST)
    client.deployments.update("acme", "app", max_instances=5)

    with pytest.raises(ConcurrentChangeError, match="someone else changed it since"):
        undo_deployment(production)

    live = client.deployments.get(production)
    assert (live.version, live.max_instances) == (V2, 5)


def test_scale_rolls_back_when_probes_fail(
    production: str, client: Replicate, emulator: Emulator, journal: FileJournal
) -> None:
    emulator.configure(deployment="acme/app", failure="no capacity on this hardware")

    with pytest.raises(RolloutFailedError) as raised:
        scale_deployment(production, hardware="gpu-a40-large", probe_input=PROBE)

    assert raised.value.result.outcome == "rolled-back"
    assert client.deployments.get(production).hardware == "gpu-t4"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"min_instances": 6}, "min_instances must be from 0 to 5, got 6"),
        ({"max_instances": 21}, "max_instances must be from 0 to 20, got 21"),
        ({"min_instances": 3}, "min_instances 3 would exceed max_instances 2"),
    ],
)
def test_scale_checks_counts_first(
    production: str, journal: FileJournal, arguments: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        scale_deployment(production, **arguments)  # type: ignore[arg-type]

    assert journal.entries(production) == []


def test_delete_rejects_bad_timeout(production: str, client: Replicate) -> None:
    with pytest.raises(ValueError, match="timeout must be positive seconds, got -1"):
        delete_deployment(production, timeout=-1)

    assert client.deployments.get(production).min_instances == 1
