"""Plan and apply a deployments file, the way Terraform treats its files.

`apply_deployments` is a Prefect flow: it loads the file (rejecting a malformed
one before any API call), reads the live state through tasks, plans, then
applies each change as its own task run, a bounded number at a time, and waits
until Replicate reports each deployment's current release as asked. It leaves
a markdown artifact with the plan and the outcome.
"""

# No `from __future__ import annotations` here: when a deployment runs a flow,
# Prefect builds the parameter model from these annotations, and a pydantic
# model named in a string annotation (such as Prediction) then fails to resolve.
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed

from replicate_tasks import tasks
from replicate_tasks.config import load_config
from replicate_tasks.credentials import client_from_environment
from replicate_tasks.errors import ConcurrentChangeError, NotFoundError, ReplicateError
from replicate_tasks.plan import (
    Action,
    Change,
    Plan,
    make_plan,
    read_live_state,
    version_exists_with,
)
from replicate_tasks.waits import WaitOptions, wait_for_release

from .report import Outcome, apply_markdown

if TYPE_CHECKING:
    from .rollout import RolloutResult

__all__ = [
    "ApplyFailedError",
    "ApplyResult",
    "Outcome",
    "apply_deployments",
]


@dataclass(frozen=True)
class ApplyResult:
    """The plan that was made and what became of each change."""

    plan: Plan
    outcomes: list[Outcome]

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "failed"]


class ApplyFailedError(ReplicateError):
    """One or more changes of an apply failed; `result` lists which and why."""

    def __init__(self, result: ApplyResult) -> None:
        self.result = result
        lines = "\n".join(f"  - {outcome.ref}: {outcome.error}" for outcome in result.failed)
        super().__init__(
            f"{len(result.failed)} of {len(result.outcomes)} deployments failed to apply:\n{lines}"
        )


@task(
    name="Apply deployment change",
    task_run_name="apply-{change.action.value}-{change.spec.name}",
    cache_policy=NO_CACHE,
    retries=0,
)
def apply_change(change: Change, wait_timeout: float) -> Outcome:
    """Create or update one deployment and wait until its current release matches.

    Before changing anything, the deployment is read again: if it was created,
    or its release number moved, since the plan was made, someone else changed
    it and the change stops instead of overwriting theirs.
    """
    spec = change.spec
    _check_unchanged_since_plan(change)
    if change.action is Action.CREATE:
        deployment = tasks.create_deployment(
            spec.name,
            spec.model,
            spec.version,
            hardware=spec.hardware,
            min_instances=spec.min_instances,
            max_instances=spec.max_instances,
        )
    else:
        arguments = change.update_arguments()
        if spec.rollout is not None and "version" in arguments:
            rolled_out = roll_out_version(change, arguments.pop("version"))
            if arguments:
                # The rollout may have taken long, so check again that no one
                # else changed the deployment, as before any other change.
                _check_unchanged_since_plan(
                    dataclasses.replace(change, release_number=rolled_out.release_number)
                )
        if arguments:
            deployment = tasks.update_deployment(change.owner, spec.name, **arguments)
        else:
            deployment = tasks.get_deployment(change.owner, spec.name)

    expected = {
        "version": spec.version,
        "hardware": spec.hardware,
        "min_instances": spec.min_instances,
        "max_instances": spec.max_instances,
    }
    owner, name = deployment.owner, deployment.name
    logger = get_run_logger()
    with client_from_environment(logger=logger) as client:
        deployment = wait_for_release(
            client, owner, name, expected, timeout=wait_timeout, logger=logger
        )
    status = "created" if change.action is Action.CREATE else "updated"
    return Outcome(change.ref, status, deployment.release_number)


def roll_out_version(change: Change, version: str) -> "RolloutResult":
    """Move to a new version with the rollout the file names: proven ready, or rolled back."""
    from .rollout import rollout_deployment

    rollout = change.spec.rollout
    assert rollout is not None
    return rollout_deployment(
        change.ref,
        version,
        strategy=rollout.strategy,
        probe_input=rollout.probe_input,
        probe_count=rollout.probe_count,
        ready_timeout=rollout.ready_timeout,
        bake_seconds=rollout.bake_seconds,
        compare=rollout.compare,
        allow_incompatible_schema=rollout.allow_incompatible_schema,
    )


def _check_unchanged_since_plan(change: Change) -> None:
    # A plain call rather than a nested task run, because a 404 is the expected
    # response before a creation and should not show as a failed run.
    try:
        current = tasks.get_deployment.fn(change.owner, change.spec.name)
    except NotFoundError:
        if change.action is Action.CREATE:
            return
        raise ConcurrentChangeError(
            f"deployment {change.ref} was deleted after the plan was made; run plan again"
        ) from None
    if change.action is Action.CREATE:
        raise ConcurrentChangeError(
            f"deployment {change.ref} was created by someone else after the plan was made "
            f"(release {current.release_number}); run plan again to see its settings"
        )
    if current.release_number != change.release_number:
        raise ConcurrentChangeError.release_moved(
            current,
            change.release_number,
            "after the plan was made",
            "run plan again instead of overwriting their change",
        )


@flow(name="apply-deployments")
def apply_deployments(
    path: str,
    concurrency: int = 4,
    wait_timeout: float = 600.0,
    plan_only: bool = False,
) -> ApplyResult:
    """Make the live deployments match a deployments file.

    Args:
        path: The deployments file (YAML).
        concurrency: How many deployments change at the same time.
        wait_timeout: Seconds to wait for each deployment to serve its new release.
        plan_only: Plan and report, change nothing.

    Raises:
        ConfigError: the file is malformed; nothing was read or changed.
        PlanError: the file names unknown hardware or versions; nothing changed.
        ApplyFailedError: some changes failed; the others were applied.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
    WaitOptions(timeout=wait_timeout)  # Rejects a bad timeout before anything changes.
    logger = get_run_logger()
    config = load_config(path)
    live = read_live_state(
        config,
        get_account=tasks.get_account,
        list_deployments=tasks.list_deployments,
        list_hardware=tasks.list_hardware,
        version_exists=version_exists_with(tasks.get_model_version),
    )
    plan = make_plan(config, live)
    logger.info("Plan for %s: %s", path, plan.summary())

    outcomes = [
        Outcome(change.ref, "unchanged", change.release_number)
        for change in plan.changes
        if change.action is Action.UNCHANGED
    ]
    pending = [change for change in plan.changes if change.action is not Action.UNCHANGED]
    if not plan_only:
        outcomes += _apply_all(pending, concurrency, wait_timeout)
    order = {change.ref: position for position, change in enumerate(plan.changes)}
    outcomes.sort(key=lambda outcome: order[outcome.ref])

    create_markdown_artifact(
        key="deployments-apply",
        markdown=apply_markdown(path, plan, outcomes, plan_only=plan_only),
        description=f"Plan and outcome of {path}",
    )
    result = ApplyResult(plan, outcomes)
    if result.failed:
        raise ApplyFailedError(result)
    return result


def _apply_all(changes: Iterable[Change], concurrency: int, wait_timeout: float) -> list[Outcome]:
    """Apply changes as task runs, at most `concurrency` at a time, and collect outcomes."""
    queue = list(changes)
    running: dict[PrefectFuture[Outcome], Change] = {}
    outcomes = []
    while queue or running:
        while queue and len(running) < concurrency:
            change = queue.pop(0)
            running[apply_change.submit(change, wait_timeout)] = change
        finished = next(as_completed(list(running)))
        change = running.pop(finished)
        result = finished.result(raise_on_failure=False)
        if isinstance(result, Outcome):
            outcomes.append(result)
        else:
            outcomes.append(Outcome(change.ref, "failed", change.release_number, str(result)))
    return outcomes
