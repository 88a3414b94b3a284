"""The credentials block: tasks and flows take the token from a saved block."""

from __future__ import annotations

import pytest
from prefect import flow

from replicate_tasks import tasks
from replicate_tasks.credentials import ReplicateCredentials
from replicate_tasks.emulator import Emulator, ManualClock

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def emulator() -> Emulator:
    # This emulator accepts only the block's token.
    return Emulator(clock=ManualClock(), api_token="token-from-block")


def test_tasks_use_named_block(
    emulator: Emulator, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("REPLICATE_BASE_URL", raising=False)
    ReplicateCredentials(api_token="token-from-block", base_url=emulator_url).save(
        "test-credentials", overwrite=True
    )
    monkeypatch.setenv("REPLICATE_TASKS_CREDENTIALS", "test-credentials")

    @flow
    def who() -> str:
        return tasks.get_account().username

    assert who() == "acme"
    assert [r.status for r in emulator.requests] == [200]


def test_block_masks_secrets() -> None:
    block = ReplicateCredentials(api_token="r8_secret-token", webhook_secret="whsec_c2VjcmV0")

    shown = repr(block) + str(block.model_dump())

    assert "r8_secret-token" not in shown
    assert "whsec_c2VjcmV0" not in shown
    assert block.get_client().base_url == "https://api.replicate.com"
