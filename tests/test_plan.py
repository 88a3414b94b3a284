"""Planning: desired deployments against live state, with no API calls."""

from __future__ import annotations

import pytest

from replicate_tasks.config import parse_config
from replicate_tasks.errors import PlanError
from replicate_tasks.models import Deployment
from replicate_tasks.plan import Action, FieldChange, LiveState, make_plan

SDXL_V1 = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
SDXL_V2 = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"
WHISPER = "4d50797290df275329f202e48c76360b3f22b08d28c196cbc54600319435f8d2"

FILE = f"""
deployments:
  - name: images
    model: stability-ai/sdxl
    version: {SDXL_V2}
    hardware: gpu-a40-large
    min_instances: 0
    max_instances: 3
  - name: speech
    model: openai/whisper
    version: {WHISPER}
    hardware: gpu-t4
    min_instances: 1
    max_instances: 2
"""

KNOWN_VERSIONS = {
    ("stability-ai/sdxl", SDXL_V1): True,
    ("stability-ai/sdxl", SDXL_V2): True,
    ("openai/whisper", WHISPER): True,
}
HARDWARE = {"cpu", "gpu-t4", "gpu-a40-large"}


def live_deployment(
    name: str, model: str, version: str, hardware: str, low: int, high: int
) -> Deployment:
    return Deployment.model_validate(
        {
            "owner": "acme",
            "name": name,
            "current_release": {
                "number": 4,
                "model": model,
                "version": version,
                "configuration": {
                    "hardware": hardware,
                    "min_instances": low,
                    "max_instances": high,
                },
            },
        }
    )


def live_state(*deployments: Deployment, **overrides: object) -> LiveState:
    fields: dict[str, object] = {
        "account": "acme",
        "deployments": {d.name: d for d in deployments},
        "hardware": HARDWARE,
        "versions": KNOWN_VERSIONS,
    }
    fields.update(overrides)
    return LiveState(**fields)  # type: ignore[arg-type]


def test_empty_account_plans_creations() -> None:
    plan = make_plan(parse_config(FILE), live_state())

    assert plan.owner == "acme"
    assert [change.action for change in plan.changes] == [Action.CREATE, Action.CREATE]
    assert [change.ref for change in plan.changes] == ["acme/images", "acme/speech"]
    assert plan.has_changes
    assert plan.summary() == "2 to create, 0 to update, 0 unchanged"


def test_matching_state_is_unchanged() -> None:
    live = live_state(
        live_deployment("images", "stability-ai/sdxl", SDXL_V2, "gpu-a40-large", 0, 3),
        live_deployment("speech", "openai/whisper", WHISPER, "gpu-t4", 1, 2),
    )

    plan = make_plan(parse_config(FILE), live)

    assert not plan.has_changes
    assert plan.summary() == "0 to create, 0 to update, 2 unchanged"
    assert plan.changes[0].release_number == 4


def test_update_lists_each_field() -> None:
    live = live_state(
        live_deployment("images", "stability-ai/sdxl", SDXL_V1, "gpu-t4", 0, 3),
        live_deployment("speech", "openai/whisper", WHISPER, "gpu-t4", 1, 2),
    )

    plan = make_plan(parse_config(FILE), live)
    change = plan.changes[0]

    assert change.action is Action.UPDATE
    assert change.fields == (
        FieldChange("version", SDXL_V1, SDXL_V2),
        FieldChange("hardware", "gpu-t4", "gpu-a40-large"),
    )
    assert change.update_arguments() == {"version": SDXL_V2, "hardware": "gpu-a40-large"}
    assert change.release_number == 4


def test_other_owners_deployments_are_ignored() -> None:
    plan = make_plan(parse_config("owner: acme\n" + FILE), live_state())

    assert plan.owner == "acme"
    assert plan.count(Action.CREATE) == 2


def test_unknown_hardware_is_plan_error() -> None:
    text = FILE.replace("gpu-a40-large", "gpu-a40-larg")

    with pytest.raises(PlanError) as raised:
        make_plan(parse_config(text), live_state())

    assert raised.value.problems == [
        "deployments[0].hardware: unknown hardware SKU 'gpu-a40-larg' (did you mean "
        "'gpu-a40-large'?); available: cpu, gpu-a40-large, gpu-t4"
    ]


def test_missing_version_is_plan_error() -> None:
    versions = dict(KNOWN_VERSIONS)
    versions[("openai/whisper", WHISPER)] = False

    with pytest.raises(PlanError) as raised:
        make_plan(parse_config(FILE), live_state(versions=versions))

    assert len(raised.value.problems) == 1
    assert raised.value.problems[0].startswith(f"deployments[1].version: version '{WHISPER}'")
    assert "of model 'openai/whisper' was not found" in raised.value.problems[0]


def test_all_problems_reported_together() -> None:
    text = FILE.replace("gpu-a40-large", "tpu").replace("owner: x", "")

    with pytest.raises(PlanError) as raised:
        make_plan(parse_config("owner: someone-else\n" + text), live_state(versions={}))

    problems = raised.value.problems
    assert len(problems) == 4
    assert problems[0].startswith("owner: the file names 'someone-else'")
    assert problems[1].startswith("deployments[0].hardware: unknown hardware SKU 'tpu'")
    assert problems[2].startswith("deployments[0].version")
    assert problems[3].startswith("deployments[1].version")
    assert str(raised.value).startswith("the plan cannot be applied:\n  - owner:")


def test_model_change_is_plan_error() -> None:
    live = live_state(live_deployment("images", "openai/whisper", WHISPER, "gpu-t4", 0, 3))

    with pytest.raises(PlanError) as raised:
        make_plan(parse_config(FILE), live)

    assert raised.value.problems == [
        "deployments[0].model: deployment acme/images serves 'openai/whisper', and the API "
        "cannot change a deployment's model to 'stability-ai/sdxl'; give the deployment a "
        "new name, or delete it first"
    ]


def test_hardware_hint_prefers_longer_sku() -> None:
    text = FILE.replace("gpu-a40-large", "gpu-a100")
    hardware = {"gpu-t4", "gpu-a40-large", "gpu-a100-large", "gpu-h100"}

    with pytest.raises(PlanError) as raised:
        make_plan(parse_config(text), live_state(hardware=hardware))

    assert "(did you mean 'gpu-a100-large'?)" in raised.value.problems[0]
