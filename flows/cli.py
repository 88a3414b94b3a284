"""The `replicate-tasks` command line.

Prefect takes over a second to import, so it is imported only inside the
commands that run flows: `--help`, `plan`, `list` and `hardware` never import it.
"""

from __future__ import annotations

import enum
import json
import os
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from replicate_tasks.client import Replicate
from replicate_tasks.config import load_config
from replicate_tasks.errors import ConfigError, PlanError, ReplicateError
from replicate_tasks.models import Deployment
from replicate_tasks.plan import Action, Plan, make_plan, read_live_state, version_exists_with

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
        help="Run against a bundled in-process emulator of the Replicate API, on a "
        "clock 120 times faster than real time: no token and no network needed, "
        "and nothing is kept afterwards.",
    ),
]
FileArgument = Annotated[
    Path, typer.Argument(help="The deployments file to read, such as deployments.yaml.")
]

# The emulator behind --emulate runs this many times faster than real time, so
# that cold boots and Replicate's 15-minute delete window take seconds.
EMULATED_SPEED = 120

STYLES = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.UNCHANGED: "dim"}


@contextmanager
def api_environment(emulate: bool, *, speed: float = EMULATED_SPEED) -> Iterator[None]:
    """Point the client at an in-process emulator for the duration, when asked.

    The emulator's clock runs `speed` times faster than real time.
    """
    if not emulate:
        yield
        return
    from replicate_tasks.emulator import Emulator, ScaledClock

    saved = {key: os.environ.get(key) for key in ("REPLICATE_BASE_URL", "REPLICATE_API_TOKEN")}
    emulator = Emulator(clock=ScaledClock(speed))
    with emulator.serve() as url:
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
        typer.Option(min=1, help="Seconds to wait for each deployment to serve its new release."),
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
    if result.failed:
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


def check_deployment(value: str) -> str:
    owner, _, name = value.partition("/")
    if not owner or not name or "/" in name:
        raise typer.BadParameter(
            f"{value!r} is not of the form owner/name, such as acme/image-generator"
        )
    return value


def check_version(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise typer.BadParameter(
            f"{value!r} is not a version id: expected 64 lowercase hexadecimal characters, "
            f"as on the model's versions page"
        )
    return value


class StrategyChoice(enum.StrEnum):
    in_place = "in-place"
    blue_green = "blue-green"


class CompareChoice(enum.StrEnum):
    none = "none"
    exact = "exact"
    shape = "shape"


DeploymentArgument = Annotated[
    str, typer.Argument(help="The deployment, as owner/name.", callback=check_deployment)
]
ForceOption = Annotated[
    bool,
    typer.Option("--force", help="Continue even if someone else changes the deployment meanwhile."),
]


def parse_probe_input(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise typer.BadParameter(
            f"{text!r} is not valid JSON ({error}); pass an object such as "
            '\'{"prompt": "a cat"}\'',
            param_hint="--probe-input",
        ) from None
    if not isinstance(value, dict):
        raise typer.BadParameter(
            f"{text!r} is not a JSON object; pass the model's inputs by name",
            param_hint="--probe-input",
        )
    return value


def run_change(flow_call: Any) -> None:
    """Run a rollout-style flow, print its steps and outcome, and exit 1 if it failed."""
    from .rollout import RolloutFailedError, RolloutResult

    with console.status("Working through Prefect (the first flow run starts a local server)…"):
        state = flow_call(return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, RolloutFailedError):
        print_result(result.result)
        raise typer.Exit(EXIT_ERROR)
    if isinstance(result, BaseException):
        raise fail(result)
    assert isinstance(result, RolloutResult)
    print_result(result)


def print_result(result: Any) -> None:
    style = "green" if result.outcome in ("succeeded", "unchanged") else "red"
    console.print(f"[{style}]{result.action} of {result.deployment}: {result.outcome}[/{style}]")
    for step in result.steps:
        console.print(f"  {step}", highlight=False)
    if result.reason:
        console.print(f"  reason: {result.reason}", highlight=False)


@app.command()
def rollout(
    deployment: DeploymentArgument,
    version: Annotated[
        str,
        typer.Option(help="The 64-character id of the version to serve.", callback=check_version),
    ],
    strategy: Annotated[
        StrategyChoice,
        typer.Option(help="in-place, or blue-green (a preview proven ready first)."),
    ] = StrategyChoice.in_place,
    probe_input: Annotated[
        str | None, typer.Option(help="JSON input of the probe predictions that prove readiness.")
    ] = None,
    probe_count: Annotated[int, typer.Option(min=1, help="Probes in a row that must pass.")] = 3,
    ready_timeout: Annotated[
        float, typer.Option(help="Seconds to prove readiness; allow for cold boots.")
    ] = 900.0,
    bake_seconds: Annotated[
        float, typer.Option(help="Seconds to keep probing production after promotion.")
    ] = 0.0,
    compare: Annotated[
        CompareChoice, typer.Option(help="Compare live and preview outputs.")
    ] = CompareChoice.none,
    approval_timeout: Annotated[
        int | None, typer.Option(min=1, help="Seconds to wait for approval in the Prefect UI.")
    ] = None,
    allow_incompatible_schema: Annotated[
        bool, typer.Option(help="Roll out even if the new version breaks the input schema.")
    ] = False,
    force: ForceOption = False,
    emulate: EmulateOption = False,
) -> None:
    """Move a deployment to another version, prove it serves it, roll back if not."""
    probe = parse_probe_input(probe_input)
    if strategy is StrategyChoice.blue_green and probe is None:
        raise typer.BadParameter(
            "a blue-green rollout proves the preview ready with probe predictions; "
            "pass their input as JSON",
            param_hint="--probe-input",
        )
    with api_environment(emulate):
        from .rollout import rollout_deployment

        run_change(
            lambda **state: rollout_deployment(
                deployment,
                version,
                strategy=strategy.value,  # type: ignore[arg-type]
                probe_input=probe,
                probe_count=probe_count,
                ready_timeout=ready_timeout,
                bake_seconds=bake_seconds,
                compare=compare.value,  # type: ignore[arg-type]
                approval_timeout=approval_timeout,
                allow_incompatible_schema=allow_incompatible_schema,
                force=force,
                **state,
            )
        )


@app.command()
def scale(
    deployment: DeploymentArgument,
    min_instances: Annotated[
        int | None, typer.Option(min=0, max=5, help="Minimum instances, 0 to 5.")
    ] = None,
    max_instances: Annotated[
        int | None, typer.Option(min=0, max=20, help="Maximum instances, 0 to 20.")
    ] = None,
    hardware: Annotated[str | None, typer.Option(help="A hardware SKU, such as gpu-t4.")] = None,
    probe_input: Annotated[
        str | None, typer.Option(help="JSON input of a probe prediction to prove readiness.")
    ] = None,
    force: ForceOption = False,
    emulate: EmulateOption = False,
) -> None:
    """Change a deployment's instance range or hardware and wait until it is applied."""
    probe = parse_probe_input(probe_input)
    if min_instances is None and max_instances is None and hardware is None:
        raise typer.BadParameter(
            "nothing to change: pass --min-instances, --max-instances or --hardware"
        )
    if min_instances is not None and max_instances is not None and min_instances > max_instances:
        raise typer.BadParameter(
            f"--min-instances {min_instances} is above --max-instances {max_instances}"
        )
    with api_environment(emulate):
        from .rollout import scale_deployment

        run_change(
            lambda **state: scale_deployment(
                deployment,
                min_instances=min_instances,
                max_instances=max_instances,
                hardware=hardware,
                probe_input=probe,
                force=force,
                **state,
            )
        )


@app.command()
def delete(
    deployment: DeploymentArgument,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for Replicate to allow the delete.")
    ] = 1800.0,
    force: ForceOption = False,
    emulate: EmulateOption = False,
) -> None:
    """Scale a deployment to zero, wait out the 15-minute offline window, delete it."""
    with api_environment(emulate):
        from .rollout import delete_deployment

        run_change(
            lambda **state: delete_deployment(deployment, timeout=timeout, force=force, **state)
        )


@app.command()
def undo(deployment: DeploymentArgument, force: ForceOption = False) -> None:
    """Restore the release that the last recorded change of a deployment replaced."""
    from .rollout import undo_deployment

    run_change(lambda **state: undo_deployment(deployment, force=force, **state))


@app.command()
def history(deployment: DeploymentArgument) -> None:
    """Show the changes the flows made to a deployment, from the release journal."""
    from replicate_tasks.journal import default_journal

    # Changes made through another API (an emulator, say) are not this one's history.
    api = Replicate(api_token="unused").base_url
    entries = [e for e in default_journal().entries(deployment) if e.api in (None, api)]
    if not entries:
        console.print(f"The journal has no changes of {deployment} made through {api}.")
        return
    console.print(f"History of {deployment} through {api}, oldest first:")
    for entry in entries:
        release = "" if entry.release_number is None else f"  release {entry.release_number}"
        console.print(
            f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.rollout_id[:8]}  {entry.action}  "
            f"[bold]{entry.phase}[/bold]  {describe_change(entry.previous, entry.target)}"
            f"{release}  by {entry.by or 'unknown'}",
            highlight=False,
        )
        if entry.reason:
            console.print(f"    reason: {entry.reason}", highlight=False, markup=False)


def describe_change(previous: Any, target: Any) -> str:
    """Render a journal entry's change compactly: the version, then any other field that moved."""
    if previous is None or target is None:
        return "-"
    parts = []
    if previous.version != target.version:
        parts.append(f"{previous.version[:8]} → {target.version[:8]}")
    for name in ("hardware", "min_instances", "max_instances"):
        before, after = getattr(previous, name), getattr(target, name)
        if before != after:
            parts.append(f"{name} {before} → {after}")
    return ", ".join(parts) or "-"


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8787,
) -> None:
    """Serve the bundled Replicate API emulator until interrupted."""
    from replicate_tasks.emulator import run

    console.print(f"Replicate API emulator on http://{host}:{port} (Ctrl+C stops it)")
    run(host=host, port=port)


@app.command()
def receiver(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8788,
    mode: Annotated[
        str,
        typer.Option(
            help="flow: run the handling flow in this process; event: emit Prefect events "
            "replicate.prediction.<status> for deployments triggered on a Prefect server."
        ),
    ] = "flow",
) -> None:
    """Receive Replicate webhooks, verified with REPLICATE_WEBHOOK_SECRET, until interrupted."""
    if mode not in ("flow", "event"):
        raise typer.BadParameter(f"{mode!r} is not a mode; use flow or event", param_hint="--mode")
    secret = os.environ.get("REPLICATE_WEBHOOK_SECRET")
    if not secret:
        raise fail(
            ValueError(
                "REPLICATE_WEBHOOK_SECRET is not set; set it to the account's webhook signing "
                "secret (whsec_...), which `client.webhooks.default.secret()` returns"
            )
        )
    from replicate_tasks.webhooks import WebhookValidationError, signing_key

    try:
        signing_key(secret)
    except WebhookValidationError as error:
        raise fail(ValueError(f"REPLICATE_WEBHOOK_SECRET is invalid: {error}")) from None
    if mode == "event" and not os.environ.get("PREFECT_API_URL"):
        raise fail(
            ValueError(
                "--mode event needs PREFECT_API_URL: without it the events would go to a "
                "temporary Prefect server that ends with this process, and trigger nothing. "
                "Point PREFECT_API_URL at your Prefect server, or use --mode flow."
            )
        )
    from replicate_tasks.receiver import run_receiver

    options: dict[str, Any] = {"mode": mode}
    if mode == "flow":
        from .webhook import handle_prediction_event

        options["handler"] = handle_prediction_event
    console.print(f"Webhook receiver on http://{host}:{port}/webhooks/replicate (Ctrl+C stops it)")
    run_receiver(host=host, port=port, **options)


def main() -> None:
    # Service managers stop programs with SIGTERM; exiting through SystemExit
    # runs the exit handlers, which stop the temporary Prefect server a flow
    # run may have started.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    app()


if __name__ == "__main__":
    main()
