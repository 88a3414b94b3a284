"""A first run: plan and apply deployments.yaml against the bundled emulator.

Run it with `make demo`. It needs no API token and no network: the emulator
serves the Replicate API on 127.0.0.1 for the length of the run, and the
apply runs as a Prefect flow on a temporary local Prefect server.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.rule import Rule

from replicate_tasks.client import Replicate

from .cli import (
    EXIT_ERROR,
    api_environment,
    compute_plan,
    console,
    print_deployments,
    print_outcomes,
    print_plan,
    run_apply,
)

DEPLOYMENTS_FILE = Path(__file__).resolve().parent.parent / "deployments.yaml"


def main(path: Path = DEPLOYMENTS_FILE) -> int:
    with api_environment(emulate=True):
        console.print(Rule(f"1. Plan {path.name} against an empty account"))
        print_plan(compute_plan(path))

        console.print(Rule("2. Apply it through a Prefect flow"))
        result = run_apply(path, concurrency=4, wait_timeout=120.0)
        print_outcomes(result.outcomes)
        if result.failed:
            return EXIT_ERROR

        console.print(Rule("3. What Replicate now serves"))
        with Replicate() as client:
            print_deployments(client.deployments.list_all())

        console.print(Rule("4. Plan again: nothing left to change"))
        second = compute_plan(path)
        print_plan(second)
        if second.has_changes:
            console.print("[red]The second plan still has changes.[/red]")
            return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
