"""A first run: plan, apply and roll out deployments.yaml against the bundled emulator.

Run it with `make demo`. It needs no API token and no network: the emulator
serves the Replicate API on 127.0.0.1 for the length of the run, on a clock
600 times faster than real time (a 30 s cold boot takes 0.05 s, Replicate's
15-minute delete window 1.5 s), and the flows run on a temporary local
Prefect server.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.rule import Rule

from replicate_tasks.client import Replicate
from replicate_tasks.config import load_config

from .cli import (
    EXIT_ERROR,
    api_environment,
    compute_plan,
    console,
    history,
    print_deployments,
    print_outcomes,
    print_plan,
    print_result,
    run_apply,
)

DEPLOYMENTS_FILE = Path(__file__).resolve().parent.parent / "deployments.yaml"

# Another real version of stability-ai/sdxl, to roll the image generator onto.
NEXT_SDXL_VERSION = "da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf"
DEMO_SPEED = 600


def main(path: Path = DEPLOYMENTS_FILE) -> int:
    with api_environment(emulate=True, speed=DEMO_SPEED):
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

        console.print(Rule("5. Blue-green rollout of the image generator to another version"))
        outcome = roll_out_image_generator(path)
        print_result(outcome)
        if outcome.outcome != "succeeded":
            return EXIT_ERROR

        console.print(Rule("6. The release journal"))
        history(f"{second.owner}/image-generator")
    return 0


def roll_out_image_generator(path: Path) -> object:
    from .rollout import rollout_deployment

    spec = next(d for d in load_config(path).deployments if d.name == "image-generator")
    owner = compute_plan(path).owner
    return rollout_deployment(
        f"{owner}/{spec.name}",
        NEXT_SDXL_VERSION,
        strategy="blue-green",
        probe_input={"prompt": "a lighthouse at dawn", "num_outputs": 1},
        probe_count=2,
        ready_timeout=120.0,
        poll_interval=0.1,
        delete_timeout=120.0,
    )


if __name__ == "__main__":
    sys.exit(main())
