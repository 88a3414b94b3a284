"""The apply flow, run through Prefect against the emulator served over HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prefect import flow

from flows.apply import ApplyFailedError, apply_change, apply_deployments
from replicate_tasks import ConcurrentChangeError, ConfigError, PlanError, Replicate
from replicate_tasks.config import parse_config
from replicate_tasks.emulator import Emulator
from replicate_tasks.plan import Action, LiveState, make_plan

from .conftest import REPO

pytestmark = pytest.mark.usefixtures("prefect_server", "api_env")


@pytest.fixture
def deployments_file(tmp_path: Path) -> Path:
    path = tmp_path / "deployments.yaml"
    shutil.copy(REPO / "deployments.yaml", path)
    return path


def changing_requests(emulator: Emulator) -> list[tuple[str, str]]:
    return [
        (r.method, r.path) for r in emulator.requests if r.method in {"POST", "PATCH", "DELETE"}
    ]


def test_apply_creates_then_converges(
    deployments_file: Path, emulator: Emulator, client: Replicate
) -> None:
    first = apply_deployments(str(deployments_file))
    live = {d.name: d for d in client.deployments.list_all()}
    writes_after_first = len(changing_requests(emulator))
    second = apply_deployments(str(deployments_file))

    assert [(o.ref, o.status, o.release_number) for o in first.outcomes] == [
        ("acme/image-generator", "created", 1),
        ("acme/transcriber", "created", 1),
        ("acme/upscaler", "created", 1),
    ]
    assert first.plan.summary() == "3 to create, 0 to update, 0 unchanged"
    assert live["image-generator"].hardware == "gpu-a40-large"
    assert live["image-generator"].max_instances == 3
    assert live["transcriber"].min_instances == 0
    assert live["transcriber"].max_instances == 2
    assert live["upscaler"].min_instances == 1
    assert writes_after_first == 3
    assert [o.status for o in second.outcomes] == ["unchanged"] * 3
    assert not second.plan.has_changes
    assert len(changing_requests(emulator)) == 3


def test_apply_updates_changed_fields(deployments_file: Path, client: Replicate) -> None:
    apply_deployments(str(deployments_file))
    text = deployments_file.read_text().replace("max_instances: 3", "max_instances: 6")
    deployments_file.write_text(text)

    result = apply_deployments(str(deployments_file))

    updated = [o for o in result.outcomes if o.status == "updated"]
    assert [(o.ref, o.release_number) for o in updated] == [("acme/image-generator", 2)]
    assert client.deployments.get("acme", "image-generator").max_instances == 6


def test_apply_leaves_markdown_artifact(deployments_file: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    apply_deployments(str(deployments_file))

    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["deployments-apply"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    markdown = str(artifacts[0].data)
    assert "**Plan:** 3 to create, 0 to update, 0 unchanged" in markdown
    assert "| acme/upscaler | created | 1 | - |" in markdown


def test_malformed_file_sends_no_request(tmp_path: Path, emulator: Emulator) -> None:
    path = tmp_path / "deployments.yaml"
    path.write_text("deployments:\n  - name: app\n    max_instances: 99\n")

    with pytest.raises(ConfigError) as raised:
        apply_deployments(str(path))

    assert raised.value.field is not None
    assert emulator.requests == []


def test_unknown_hardware_changes_nothing(deployments_file: Path, emulator: Emulator) -> None:
    deployments_file.write_text(deployments_file.read_text().replace("gpu-t4", "gpu-t5"))

    with pytest.raises(PlanError, match="unknown hardware SKU 'gpu-t5'"):
        apply_deployments(str(deployments_file))

    assert changing_requests(emulator) == []


def test_failed_change_fails_flow_and_keeps_others(
    deployments_file: Path, emulator: Emulator, client: Replicate
) -> None:
    emulator.faults.fail_next(500, count=1, method="POST", path="/v1/deployments")

    with pytest.raises(ApplyFailedError) as raised:
        apply_deployments(str(deployments_file), concurrency=1)

    statuses = sorted(o.status for o in raised.value.result.outcomes)
    assert statuses == ["created", "created", "failed"]
    failed = raised.value.result.failed[0]
    assert failed.error is not None
    assert "failed with status 500" in failed.error
    assert len(client.deployments.list_all()) == 2


def test_out_of_band_change_stops_update(deployments_file: Path, client: Replicate) -> None:
    apply_deployments(str(deployments_file))
    config = parse_config(
        deployments_file.read_text().replace("max_instances: 3", "max_instances: 4")
    )
    live = LiveState(
        account="acme",
        deployments={d.name: d for d in client.deployments.list_all()},
        hardware={"gpu-t4", "gpu-a40-large"},
        versions={(s.model, s.version): True for s in config.deployments},
    )
    change = next(c for c in make_plan(config, live).changes if c.action is Action.UPDATE)
    client.deployments.update("acme", "image-generator", min_instances=1)

    @flow
    def apply_one() -> object:
        return apply_change(change, 30.0)

    with pytest.raises(ConcurrentChangeError) as raised:
        apply_one()

    assert str(raised.value).startswith(
        "deployment acme/image-generator moved from release 1 to 2 (by acme) after the plan"
    )
    assert client.deployments.get("acme", "image-generator").max_instances == 3


def test_concurrency_must_be_positive(deployments_file: Path) -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1, got 0"):
        apply_deployments(str(deployments_file), concurrency=0)
