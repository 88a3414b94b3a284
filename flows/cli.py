"""The `replicate-tasks` command line.

Prefect takes over a second to import, so it is imported only inside the
commands that run flows: `--help`, `plan` and `hardware` stay fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from replicate_tasks.client import Replicate
from replicate_tasks.config import load_config
from replicate_tasks.errors import ConfigError, PlanError, ReplicateError
from replicate_tasks.models import Deployment
from replicate_tasks.plan import Action, Plan, make_plan

from .report import SYMBOLS, Outcome, describe_fields

if TYPE_CHECKING:
    from .apply import ApplyResult

app = typer.Typer(
    help="Run Replicate model deployments as code, on Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2

EmulateOption = Annotated[
    bool,
    typer.Option(
        "--emulate",
        help="Run against a bundled in-process emulator of the Replicate API: "
        "no token and no network needed, and nothing is kept afterwards.",
    ),
]
FileArgument = Annotated[
    Path, typer.Argument(help="The deployments file to read, such as deployments.yaml.")
]

STYLES = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.UNCHANGED: "dim"}


@contextmanager
def api_environment(emulate: bool) -> Iterator[None]:
    """Point the client at an in-process emulator for the duration, when asked."""
    if not emulate:
        yield
        return
    from replicate_tasks.emulator import Emulator

    saved = {key: os.environ.get(key) for key in ("REPLICATE_BASE_URL", "REPLICATE_API_TOKEN")}
    with Emulator().serve() as url:
        os.environ["REPLICATE_BASE_URL"] = url
        os.environ["REPLICATE_API_TOKEN"] = "emulator-token"
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def compute_plan(path: Path) -> Plan:
    """Load a deployments file and plan it with plain client calls (no Prefect)."""
    from .apply import read_live_state, version_exists_with

    config = load_config(path)
    with Replicate() as client:
        live = read_live_state(
            config,
            get_account=client.accounts.current,
            list_deployments=client.deployments.list_all,
            list_hardware=client.hardware.list,
            version_exists=version_exists_with(client.models.versions.get),
        )
    return make_plan(config, live)


def print_plan(plan: Plan) -> None:
    table = Table(title=f"Plan for owner {plan.owner}", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("deployment", no_wrap=True)
    table.add_column("action")
    table.add_column("changes")
    for change in plan.changes:
        style = STYLES[change.action]
        table.add_row(
            SYMBOLS[change.action],
            change.ref,
            change.action.value,
            "\n".join(describe_fields(change, short=True)) or "-",
            style=style,
        )
    console.print(table)
    console.print(f"Plan: {plan.summary()}.")


def print_outcomes(outcomes: list[Outcome]) -> None:
    table = Table(title="Outcome", title_justify="left")
    table.add_column("deployment", no_wrap=True)
    table.add_column("outcome")
    table.add_column("release", justify="right")
    table.add_column("error")
    for outcome in outcomes:
        style = "red" if outcome.status == "failed" else None
        release = "-" if outcome.release_number is None else str(outcome.release_number)
        table.add_row(outcome.ref, outcome.status, release, outcome.error or "", style=style)
    console.print(table)


def fail(error: Exception) -> typer.Exit:
    errors.print(f"[red]Error:[/red] {error}", highlight=False, markup=True)
    return typer.Exit(EXIT_ERROR)


@app.command()
def plan(path: FileArgument, emulate: EmulateOption = False) -> None:
    """Show what apply would change. Exits 0 with no changes, 2 with changes, 1 on error."""
    try:
        with api_environment(emulate):
            result = compute_plan(path)
    except (ConfigError, PlanError, ReplicateError) as error:
        raise fail(error) from None
    print_plan(result)
    raise typer.Exit(EXIT_CHANGES if result.has_changes else EXIT_OK)


@app.command()
def apply(
    path: FileArgument,
    emulate: EmulateOption = False,
    concurrency: Annotated[
        int, typer.Option(min=1, help="How many deployments to change at the same time.")
    ] = 4,
    wait_timeout: Annotated[
        float,
        typer.Option(help="Seconds to wait for each deployment to serve its new release."),
    ] = 600.0,
) -> None:
    """Plan, apply the changes through a Prefect flow, and wait until each one is served."""
    try:
        load_config(path)  # Reject a malformed file before starting Prefect.
        with api_environment(emulate):
            result = run_apply(path, concurrency, wait_timeout)
    except (ConfigError, PlanError, ReplicateError) as error:
        raise fail(error) from None
    print_plan(result.plan)
    print_outcomes(result.outcomes)
    if any(outcome.status == "failed" for outcome in result.outcomes):
        raise typer.Exit(EXIT_ERROR)


def run_apply(path: Path, concurrency: int, wait_timeout: float) -> ApplyResult:
    from .apply import ApplyFailedError, apply_deployments
    from .apply import ApplyResult as Result

    with console.status("Applying through Prefect (the first flow run starts a local server)…"):
        state = apply_deployments(
            str(path), concurrency=concurrency, wait_timeout=wait_timeout, return_state=True
        )
    result = state.result(raise_on_failure=False)
    if isinstance(result, Result):
        return result
    if isinstance(result, ApplyFailedError):
        return result.result
    if isinstance(result, BaseException):
        raise result
    raise RuntimeError(f"the apply flow ended in state {state.type.value} with no result")


def print_deployments(deployments: list[Deployment]) -> None:
    table = Table(title="Live deployments", title_justify="left")
    table.add_column("deployment", no_wrap=True)
    for column in ("release", "model", "version", "hardware", "instances"):
        table.add_column(column, overflow="fold")
    for deployment in deployments:
        table.add_row(
            deployment.ref,
            str(deployment.release_number),
            deployment.model,
            deployment.version[:12] + "…",
            deployment.hardware,
            f"{deployment.min_instances}-{deployment.max_instances}",
        )
    console.print(table)


@app.command("list")
def list_deployments(emulate: EmulateOption = False) -> None:
    """List the account's deployments with their current release."""
    try:
        with api_environment(emulate), Replicate() as client:
            deployments = client.deployments.list_all()
    except ReplicateError as error:
        raise fail(error) from None
    print_deployments(deployments)


@app.command()
def hardware(emulate: EmulateOption = False) -> None:
    """List the hardware SKUs that deployments can use."""
    try:
        with api_environment(emulate), Replicate() as client:
            items = client.hardware.list()
    except ReplicateError as error:
        raise fail(error) from None
    table = Table("sku", "name")
    for item in items:
        table.add_row(item.sku, item.name)
    console.print(table)


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8787,
) -> None:
    """Serve the bundled Replicate API emulator until interrupted."""
    from replicate_tasks.emulator import run

    console.print(f"Replicate API emulator on http://{host}:{port} (Ctrl+C stops it)")
    run(host=host, port=port)


def main() -> None:
    app()
