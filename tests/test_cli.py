"""The command line: exit codes, output, and no request on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from replicate_tasks.emulator import Emulator

from .conftest import REPO

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def deployments_file() -> str:
    return str(REPO / "deployments.yaml")


def test_plan_with_changes_exits_2(api_env: str, deployments_file: str) -> None:
    result = runner.invoke(app, ["plan", deployments_file])

    assert result.exit_code == 2
    assert "Plan: 3 to create, 0 to update, 0 unchanged." in result.output
    assert "acme/image-generator" in result.output


def test_plan_without_changes_exits_0(
    api_env: str, deployments_file: str, emulator: Emulator
) -> None:
    from replicate_tasks.config import load_config

    for spec in load_config(deployments_file).deployments:
        emulator_client_create(api_env, spec)

    result = runner.invoke(app, ["plan", deployments_file])

    assert result.exit_code == 0
    assert "Plan: 0 to create, 0 to update, 3 unchanged." in result.output


def emulator_client_create(url: str, spec: object) -> None:
    from replicate_tasks import Replicate

    with Replicate("token", url) as client:
        client.deployments.create(
            spec.name,  # type: ignore[attr-defined]
            spec.model,  # type: ignore[attr-defined]
            spec.version,  # type: ignore[attr-defined]
            hardware=spec.hardware,  # type: ignore[attr-defined]
            min_instances=spec.min_instances,  # type: ignore[attr-defined]
            max_instances=spec.max_instances,  # type: ignore[attr-defined]
        )


def test_plan_malformed_file_exits_1_without_requests(
    api_env: str, emulator: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "deployments.yaml"
    path.write_text(
        (REPO / "deployments.yaml").read_text().replace("min_instances: 1", "min_instances: 9")
    )

    result = runner.invoke(app, ["plan", str(path)])

    assert result.exit_code == 1
    assert "deployments[2].min_instances" in result.output
    assert "9" in result.output
    assert emulator.requests == []


def test_plan_unknown_hardware_exits_1(api_env: str, tmp_path: Path) -> None:
    path = tmp_path / "deployments.yaml"
    path.write_text((REPO / "deployments.yaml").read_text().replace("gpu-t4", "gpu-t5"))

    result = runner.invoke(app, ["plan", str(path)])

    assert result.exit_code == 1
    assert "unknown hardware SKU 'gpu-t5'" in result.output


def test_plan_emulate_needs_no_token(
    deployments_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("REPLICATE_BASE_URL", raising=False)

    result = runner.invoke(app, ["plan", deployments_file, "--emulate"])

    assert result.exit_code == 2
    assert "Plan: 3 to create" in result.output


def test_plan_without_token_explains(
    deployments_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:9")

    result = runner.invoke(app, ["plan", deployments_file])

    assert result.exit_code == 1
    assert "set the REPLICATE_API_TOKEN environment variable" in result.output


def test_hardware_lists_skus() -> None:
    result = runner.invoke(app, ["hardware", "--emulate"])

    assert result.exit_code == 0
    assert "gpu-t4" in result.output
    assert "Nvidia T4 GPU" in result.output


@pytest.mark.usefixtures("prefect_server")
def test_apply_then_list(api_env: str, deployments_file: str) -> None:
    applied = runner.invoke(app, ["apply", deployments_file, "--concurrency", "2"])
    listed = runner.invoke(app, ["list"])

    assert applied.exit_code == 0, applied.output
    assert applied.output.count("created") == 3
    assert listed.exit_code == 0
    assert "acme/transcriber" in listed.output
    assert "gpu-a40-large" in listed.output


def test_apply_malformed_file_exits_1(api_env: str, emulator: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "deployments.yaml"
    path.write_text("deployments: {}\n")

    result = runner.invoke(app, ["apply", str(path)])

    assert result.exit_code == 1
    assert "deployments" in result.output
    assert emulator.requests == []


def test_help_does_not_import_prefect() -> None:
    code = "import sys, flows.cli; print('prefect' in sys.modules)"

    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout

    assert output.strip() == "False"


def test_plan_does_not_import_prefect() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from flows.cli import app\n"
        "result = CliRunner().invoke(app, ['plan', 'deployments.yaml', '--emulate'])\n"
        "print(result.exit_code, 'prefect' in sys.modules)\n"
    )

    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout

    assert output.strip() == "2 False"
