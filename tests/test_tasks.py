"""The Prefect tasks, run inside flows against the emulator over HTTP."""

from __future__ import annotations

import pytest
from prefect import flow

from replicate_tasks import Prediction, Replicate, tasks
from replicate_tasks.emulator import Emulator, ScaledClock

SDXL = "stability-ai/sdxl"
V1 = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"

pytestmark = pytest.mark.usefixtures("prefect_server", "api_env")


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(clock=ScaledClock(1000))


def test_deployment_tasks_round_trip(client: Replicate) -> None:
    @flow
    def manage() -> tuple[str, int, int, list[str]]:
        created = tasks.create_deployment(
            "app", SDXL, V1, hardware="gpu-t4", min_instances=0, max_instances=1
        )
        updated = tasks.update_deployment("acme", "app", max_instances=3)
        fetched = tasks.get_deployment("acme", "app")
        listed = tasks.list_deployments()
        return created.ref, updated.release_number, fetched.max_instances, [d.name for d in listed]

    ref, release, max_instances, names = manage()

    assert ref == "acme/app"
    assert release == 2
    assert max_instances == 3
    assert names == ["app"]


def test_prediction_tasks(client: Replicate, emulator: Emulator) -> None:
    client.deployments.create("app", SDXL, V1, hardware="gpu-t4", min_instances=1, max_instances=1)
    # Predictions by version run for days, so the cancel finds one still running.
    emulator.configure(version=V1, predict_seconds=10**6)
    emulator.configure(deployment="acme/app", predict_seconds=2)

    @flow
    def predict() -> tuple[Prediction, Prediction, Prediction]:
        created = tasks.create_deployment_prediction("acme/app", {"prompt": "a kite"})
        finished = tasks.wait_for_prediction(created.id, timeout=30, interval=0.05)
        other = tasks.create_prediction(V1, {"prompt": "a boat"})
        canceled = tasks.cancel_prediction(other.id)
        return created, finished, canceled

    created, finished, canceled = predict()

    assert created.status in ("starting", "processing")
    assert finished.status == "succeeded"
    assert finished.version == V1
    assert canceled.status == "canceled"


def test_read_tasks(client: Replicate) -> None:
    @flow
    def read() -> tuple[str, list[str], str, str]:
        account = tasks.get_account()
        hardware = tasks.list_hardware()
        model = tasks.get_model("stability-ai", "sdxl")
        version = tasks.get_model_version(SDXL, V1)
        return account.username, [h.sku for h in hardware], model.ref, version.id

    username, skus, model, version = read()

    assert username == "acme"
    assert "gpu-t4" in skus
    assert model == SDXL
    assert version == V1
