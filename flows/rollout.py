"""Rollouts that wait until Replicate serves the change, and roll back when it does not.

Four flows change one deployment each:

- `rollout_deployment` swaps the version, in place or blue-green;
- `scale_deployment` changes the instance range (and hardware);
- `delete_deployment` scales to zero, waits out the offline window and deletes;
- `undo_deployment` restores the release before the last change the journal
  recorded.

Every step re-reads the deployment first and stops with ConcurrentChangeError
if its release number moved since the flow last saw it (someone else changed
it), unless `force` is set. Every change is written to the release journal
(`replicate_tasks.journal`), which is also how an interrupted rollout resumes.
Run again with the same target, a rollout reuses the preview deployment it
claimed. If production is on a version whose rollout never finished, the run
proves it ready (or rolls back to the journal's recorded previous release)
before declaring success.
"""

# No `from __future__ import annotations` here: when a deployment runs a flow,
# Prefect builds the parameter model from these annotations, and a pydantic
# model named in a string annotation (such as Prediction) then fails to resolve.
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from replicate_tasks.credentials import client_from_environment
from replicate_tasks.errors import (
    ConcurrentChangeError,
    IncompatibleSchemaError,
    NotFoundError,
    ProbeFailedError,
    ReplicateError,
    WaitTimeoutError,
)
from replicate_tasks.journal import (
    Journal,
    JournalEntry,
    Phase,
    ReleaseSettings,
    default_journal,
    latest_by_rollout,
    new_rollout_id,
)
from replicate_tasks.models import Deployment
from replicate_tasks.rollout import (
    CompareRule,
    ProbeSettings,
    compare_outputs,
    delete_when_allowed,
    prove_ready,
    schema_problems,
)
from replicate_tasks.waits import release_matches, wait_for_release

__all__ = [
    "RolloutFailedError",
    "RolloutResult",
    "delete_deployment",
    "rollout_deployment",
    "scale_deployment",
    "undo_deployment",
]

Strategy = Literal["in-place", "blue-green"]
Outcome = Literal["succeeded", "unchanged", "rolled-back", "failed"]

PREVIEW_SUFFIX = re.compile(r"^[-_][a-z0-9][a-z0-9._-]*$")
VERSION_ID = re.compile(r"^[0-9a-f]{64}$")

# Failures that mean the new release does not work, as opposed to misuse.
ROLLBACK_ERRORS = (ProbeFailedError, WaitTimeoutError, ReplicateError)


@dataclass
class RolloutResult:
    """The record of one rollout: its outcome, the release production ended on, each step."""

    deployment: str
    rollout_id: str
    action: str
    outcome: Outcome = "succeeded"
    release_number: int | None = None
    reason: str | None = None
    steps: list[str] = field(default_factory=list)


class RolloutFailedError(ReplicateError):
    """A rollout failed or was rolled back; `result` describes what happened."""

    def __init__(self, result: RolloutResult) -> None:
        self.result = result
        super().__init__(
            f"{result.action} of {result.deployment} {result.outcome}: {result.reason}"
        )


def settings_of(deployment: Deployment) -> ReleaseSettings:
    return ReleaseSettings(
        version=deployment.version,
        hardware=deployment.hardware,
        min_instances=deployment.min_instances,
        max_instances=deployment.max_instances,
        number=deployment.release_number,
    )


class Run:
    """The state one flow run keeps about the deployment it changes."""

    def __init__(
        self, deployment: str, action: str, *, force: bool, journal: Journal | None = None
    ) -> None:
        self.owner, _, self.name = deployment.partition("/")
        if not self.owner or not self.name or "/" in self.name:
            raise ValueError(f"deployment {deployment!r} is not of the form 'owner/name'")
        self.ref = deployment
        self.force = force
        self.journal = journal or default_journal()
        self.logger = get_run_logger()
        self.client = client_from_environment(logger=self.logger)
        self.result = RolloutResult(deployment, new_rollout_id(), action)
        self.expected_release: int | None = None
        self.previous: ReleaseSettings | None = None
        self.target: ReleaseSettings | None = None
        self._username: str | None = None

    # Reading and guarding

    def read(self) -> Deployment:
        """Re-read the deployment, and stop if someone else changed it since the last read."""
        current = self.client.deployments.get(self.owner, self.name)
        expected = self.expected_release
        if expected is not None and current.release_number != expected and not self.force:
            raise ConcurrentChangeError.release_moved(
                current,
                expected,
                f"during this {self.result.action}",
                "stopping instead of overwriting their change. Rerun to start from the new "
                "release, or pass --force (force=True) to override.",
            )
        self.expected_release = current.release_number
        return current

    def update(self, **fields: Any) -> Deployment:
        """Change the deployment (after a guarded re-read) and wait until the release shows it."""
        self.read()
        updated = self.client.deployments.update(self.owner, self.name, **fields)
        self.expected_release = updated.release_number
        self.step(f"release {updated.release_number}: {describe_changes(fields)}")
        applied = wait_for_release(
            self.client, self.owner, self.name, dict(fields), logger=self.logger
        )
        if applied.release_number != updated.release_number and not self.force:
            raise ConcurrentChangeError(
                f"deployment {self.ref} moved from release {updated.release_number}, made by "
                f"this {self.result.action}, to {applied.release_number} before the change "
                f"was observed, so someone else changed it; stopping instead of overwriting "
                f"their change. Rerun to start from the new release, or pass --force "
                f"(force=True) to override."
            )
        self.expected_release = applied.release_number
        return applied

    # Records

    def step(self, message: str) -> None:
        self.logger.info("%s: %s", self.ref, message)
        self.result.steps.append(f"{datetime.now(UTC):%H:%M:%S} {message}")

    def record(
        self,
        phase: Phase,
        *,
        reason: str | None = None,
        release: int | None = None,
        preview: str | None = None,
    ) -> None:
        entry = JournalEntry(
            rollout_id=self.result.rollout_id,
            deployment=self.ref,
            action=self.result.action,
            api=self.client.base_url,
            phase=phase,
            by=self._account(),
            previous=self.previous,
            target=self.target,
            release_number=release,
            reason=reason,
            preview=preview,
            flow_run_id=flow_run.get_id(),
        )
        self.journal.append(entry)
        emit(phase, self, reason)

    def _account(self) -> str | None:
        if self._username is None:
            try:
                self._username = self.client.accounts.current().username
            except ReplicateError:
                return None
        return self._username

    def finish(self, outcome: Outcome, reason: str | None = None) -> RolloutResult:
        self.result.outcome = outcome
        self.result.reason = reason
        self.result.release_number = self.expected_release
        create_markdown_artifact(
            key=f"rollout-{artifact_slug(self.ref)}",
            markdown=rollout_markdown(self.result),
            description=f"{self.result.action} of {self.ref}: {outcome}",
        )
        self.client.close()
        if outcome in ("failed", "rolled-back"):
            raise RolloutFailedError(self.result)
        return self.result

    def entries(self) -> list[JournalEntry]:
        """Return the journal's entries for this deployment on this API."""
        return [
            entry
            for entry in self.journal.entries(self.ref)
            if entry.api in (None, self.client.base_url)
        ]

    def owns_preview(self, preview_name: str) -> bool:
        """Return whether a rollout of this deployment claimed the deployment `preview_name`."""
        return any(
            entry.phase == "preview" and entry.preview == preview_name for entry in self.entries()
        )

    def unproven(self, live: Deployment) -> JournalEntry | None:
        """Return the journal's unfinished rollout that left production on its live version.

        A rollout that promoted a version and then stopped (or failed to roll
        back) leaves production on a version no probe proved. Such an entry's
        `previous` is the last proven release, the right target of a rollback.
        """
        rollouts = latest_by_rollout(self.entries())
        if not rollouts:
            return None
        last = rollouts[-1]
        if last.phase == "succeeded" or last.previous is None or last.target is None:
            return None
        if last.target.version != live.version or last.previous.version == live.version:
            return None
        return last

    def last_attempt(self, version: str) -> JournalEntry | None:
        """Return the last entry of the newest journaled rollout of this deployment to `version`."""
        attempts = [
            entry
            for entry in latest_by_rollout(self.entries())
            if entry.target is not None and entry.target.version == version
        ]
        return attempts[-1] if attempts else None


def emit(phase: str, run: Run, reason: str | None, *, subject: str | None = None) -> None:
    """Emit the Prefect event `replicate.rollout.<phase>` about the deployment changed.

    `subject` names the deployment that reached the phase when it is not the
    one being changed, such as the preview deployment becoming ready.
    """
    from prefect.events import emit_event

    emit_event(
        event=f"replicate.rollout.{phase}",
        resource={
            "prefect.resource.id": f"replicate.deployment.{run.ref}",
            "prefect.resource.name": run.ref,
        },
        payload={
            "rollout_id": run.result.rollout_id,
            "action": run.result.action,
            "version": run.target.version if run.target else None,
            "reason": reason,
            "subject": subject or run.ref,
        },
    )


def describe_changes(fields: Mapping[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        shown = str(value)[:12] if key == "version" else value
        parts.append(f"{key}={shown}")
    return ", ".join(parts)


def artifact_slug(ref: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in ref.lower()).strip("-")


def rollout_markdown(result: RolloutResult) -> str:
    lines = [
        f"# {result.action} of `{result.deployment}`: {result.outcome}",
        "",
        f"- rollout id: `{result.rollout_id}`",
        f"- release: {result.release_number}",
    ]
    if result.reason:
        lines.append(f"- reason: {result.reason}")
    lines += ["", "## Steps", ""]
    lines += [f"1. {step}" for step in result.steps]
    return "\n".join(lines)


# Tasks: one per phase, so each shows in the Prefect UI with its own state.


@task(name="Check new version", cache_policy=NO_CACHE, retries=0)
def check_version(
    run: Run, live: Deployment, version: str, allow_incompatible_schema: bool
) -> None:
    """Check that the version exists and that its schema keeps existing callers working."""
    try:
        new = run.client.models.versions.get(live.model, version)
    except NotFoundError:
        raise NotFoundError(
            404,
            title="Not Found",
            detail=f"version {version!r} of model {live.model} was not found; nothing was changed",
        ) from None
    old = run.client.models.versions.get(live.model, live.version)
    problems = schema_problems(old.openapi_schema, new.openapi_schema)
    if problems and not allow_incompatible_schema:
        listed = "; ".join(problems)
        raise IncompatibleSchemaError(
            f"version {version[:12]} of {live.model} is not compatible with the live version "
            f"{live.version[:12]}: {listed}. Nothing was changed; pass "
            f"--allow-incompatible-schema (allow_incompatible_schema=True in Python) to "
            f"roll out anyway.",
            problems=problems,
        )
    for problem in problems:
        run.logger.warning("Rolling out despite an incompatible schema: %s", problem)
    verdict = "schema compatible" if not problems else "schema incompatible, allowed"
    run.step(f"checked version {version[:12]}: exists, {verdict}")


@task(name="Prove deployment ready", cache_policy=NO_CACHE, retries=0)
def prove_deployment_ready(
    run: Run, deployment: str, version: str, probe: ProbeSettings
) -> list[Any]:
    probes = prove_ready(run.client, deployment, version, probe, logger=run.logger)
    run.step(f"{deployment} ready: {len(probes)} probes in a row on version {version[:12]}")
    emit("ready", run, None, subject=deployment)
    return [prediction.output for prediction in probes]


@task(name="Bake deployment", cache_policy=NO_CACHE, retries=0)
def bake(run: Run, version: str, probe: ProbeSettings, seconds: float) -> None:
    """Keep probing production for `seconds` after a promotion; any failed probe fails the bake."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        if rounds:
            time.sleep(min(probe.poll_interval, max(deadline - time.monotonic(), 0)))
        prove_ready(
            run.client,
            run.ref,
            version,
            ProbeSettings(
                input=probe.input,
                count=1,
                timeout=probe.timeout,
                max_failures=1,
                poll_interval=probe.poll_interval,
            ),
            logger=run.logger,
        )
        rounds += 1
    run.step(f"baked {seconds:g} s: {rounds} more probes passed")


@task(name="Ensure preview deployment", cache_policy=NO_CACHE, retries=0)
def ensure_preview(run: Run, live: Deployment, version: str, preview_name: str) -> str:
    """Create the preview deployment on `version`, or reuse one left by an earlier run."""
    preview = f"{run.owner}/{preview_name}"
    fields = {"version": version, "hardware": live.hardware, "min_instances": 0, "max_instances": 1}
    try:
        existing = run.client.deployments.get(run.owner, preview_name)
    except NotFoundError:
        existing = None
    if existing is not None and not run.owns_preview(preview_name):
        raise ConcurrentChangeError(
            f"deployment {preview} exists, and no rollout of {run.ref} recorded creating it, "
            f"so it may serve someone else; rename it, or pass another preview_suffix"
        )
    if existing is None:
        # Claim the name in the journal before creating it, so that a run
        # killed right after the create still recognizes the preview as its own.
        run.record("preview", preview=preview_name)
        run.client.deployments.create(
            preview_name, live.model, version, **{k: v for k, v in fields.items() if k != "version"}
        )
        run.step(f"created preview {preview} on version {version[:12]}")
    else:
        if not release_matches(existing, fields):
            run.client.deployments.update(run.owner, preview_name, **fields)
            run.step(f"reused preview {preview}, moved to version {version[:12]}")
        else:
            run.step(f"reused preview {preview} on version {version[:12]}")
    wait_for_release(run.client, run.owner, preview_name, fields, logger=run.logger)
    return preview


@task(name="Remove preview deployment", cache_policy=NO_CACHE, retries=0)
def remove_preview(run: Run, preview_name: str, timeout: float) -> None:
    """Scale the preview to zero, then delete it once Replicate allows."""
    try:
        preview = run.client.deployments.get(run.owner, preview_name)
    except NotFoundError:
        return
    if preview.min_instances or preview.max_instances:
        run.client.deployments.update(run.owner, preview_name, min_instances=0, max_instances=0)
    delete_when_allowed(run.client, run.owner, preview_name, timeout=timeout, logger=run.logger)
    run.step(f"deleted preview {run.owner}/{preview_name}")


@task(name="Roll back deployment", cache_policy=NO_CACHE, retries=0)
def roll_back(run: Run, previous: ReleaseSettings) -> Deployment:
    """Restore the recorded previous release's version, hardware and instance range."""
    restored = run.update(
        version=previous.version,
        hardware=previous.hardware,
        min_instances=previous.min_instances,
        max_instances=previous.max_instances,
    )
    run.step(f"rolled back to version {previous.version[:12]} as release {restored.release_number}")
    return restored


def probe_settings(
    probe_input: Mapping[str, Any] | None,
    probe_count: int,
    ready_timeout: float,
    max_probe_failures: int,
    poll_interval: float,
) -> ProbeSettings | None:
    if probe_input is None:
        return None
    return ProbeSettings(
        input=dict(probe_input),
        count=probe_count,
        timeout=ready_timeout,
        max_failures=max_probe_failures,
        poll_interval=poll_interval,
    )


@flow(name="rollout-deployment")
def rollout_deployment(
    deployment: str,
    version: str,
    strategy: Strategy = "in-place",
    probe_input: dict[str, Any] | None = None,
    probe_count: int = 3,
    ready_timeout: float = 900.0,
    max_probe_failures: int = 1,
    poll_interval: float = 1.0,
    bake_seconds: float = 0.0,
    compare: CompareRule = "none",
    approval_timeout: int | None = None,
    allow_incompatible_schema: bool = False,
    preview_suffix: str = "-preview",
    delete_preview: bool = True,
    delete_timeout: float = 1800.0,
    force: bool = False,
) -> RolloutResult:
    """Move a deployment to another version of its model, and prove it serves it.

    Args:
        deployment: `owner/name`.
        version: The 64-character id of the version to serve.
        strategy: `in-place` changes production and proves it ready;
            `blue-green` first proves a preview deployment ready on the new
            version, then promotes production.
        probe_input: Input of the probe predictions; needed to prove readiness
            (and always for blue-green).
        probe_count: Probes in a row that must succeed on the new version.
        ready_timeout: Seconds to prove a deployment ready; allow for cold boots.
        max_probe_failures: Failed probes that judge the version bad.
        bake_seconds: After promotion, seconds to keep probing production.
        compare: Compare live and preview outputs of the probe input:
            `none`, `exact` or `shape`.
        approval_timeout: Pause for a person's approval before promotion, up
            to this many seconds (timing out aborts).
        allow_incompatible_schema: Roll out even if inputs were removed or
            retyped, or the output type changed.
        delete_preview: Delete the preview afterwards, once Replicate allows
            (15 minutes offline and unused), within `delete_timeout` seconds.
        force: Continue even if someone else changes the deployment meanwhile.
    """
    if strategy not in ("in-place", "blue-green"):
        raise ValueError(f"strategy {strategy!r} is invalid; expected 'in-place' or 'blue-green'")
    probe = probe_settings(
        probe_input, probe_count, ready_timeout, max_probe_failures, poll_interval
    )
    if strategy == "blue-green" and probe is None:
        raise ValueError(
            "a blue-green rollout needs probe_input to prove the preview ready; pass the input "
            "of a cheap, representative prediction"
        )
    if strategy == "blue-green" and not PREVIEW_SUFFIX.match(preview_suffix):
        raise ValueError(
            f"preview_suffix {preview_suffix!r} is invalid; expected '-' or '_' followed by "
            f"lowercase letters or digits, such as '-preview', so the preview never takes "
            f"production's name"
        )
    if approval_timeout is not None and approval_timeout < 1:
        raise ValueError(
            f"approval_timeout must be at least 1 second, got {approval_timeout!r}; "
            f"leave it unset to promote without approval"
        )
    if not VERSION_ID.match(version):
        raise ValueError(
            f"version {version!r} is invalid; expected the 64-character hexadecimal version id"
        )
    run = Run(deployment, f"rollout ({strategy})", force=force)
    live = run.read()
    preview_name = f"{run.name}{preview_suffix}"

    # Production on a version that the journal's last rollout promoted but never
    # proved is not a safe rollback target, so that rollout's recorded previous
    # release is used instead. When production is already on the target version
    # and unproven, this run resumes that rollout and proves it (or rolls back).
    unproven = run.unproven(live)
    resumed = None
    if live.version == version:
        if unproven is None:
            if strategy == "blue-green" and delete_preview and run.owns_preview(preview_name):
                remove_preview(run, preview_name, delete_timeout)
            run.step(f"already serving version {version[:12]}")
            return run.finish("unchanged")
        resumed = unproven
        run.result.rollout_id = unproven.rollout_id
        run.previous = unproven.previous
        run.step(
            f"resuming rollout {unproven.rollout_id}: production is on the new version, unproven"
        )
    elif unproven is not None:
        run.previous = unproven.previous
        run.step(
            f"production is on version {live.version[:12]}, which rollout "
            f"{unproven.rollout_id} promoted but never proved; a rollback will restore "
            f"version {unproven.previous.version[:12] if unproven.previous else '?'} instead"
        )
    else:
        run.previous = settings_of(live)
    assert run.previous is not None
    run.target = settings_of(live).model_copy(update={"version": version, "number": None})

    if live.version != version:
        check_version(run, live, version, allow_incompatible_schema)
    if resumed is None:
        run.record("started")

    promoted = live.version == version
    promoting = promoted
    try:
        if strategy == "blue-green" and not promoted:
            assert probe is not None
            preview = ensure_preview(run, live, version, preview_name)
            preview_outputs = prove_deployment_ready(run, preview, version, probe)
            if compare != "none":
                live_outputs = prove_deployment_ready(run, run.ref, live.version, probe)
                difference = compare_outputs(compare, live_outputs[0], preview_outputs[0])
                if difference:
                    raise ProbeFailedError(
                        f"preview and live outputs disagree ({compare}): {difference}"
                    )
                run.step(f"live and preview outputs agree ({compare})")
            if approval_timeout:
                wait_for_approval(run, approval_timeout)
        if not promoted:
            # From here a failure may come after the change landed (a lost
            # response, a wait that timed out), so the failure path re-reads.
            promoting = True
            promoted_to = run.update(version=version)
            run.record("promoted", release=promoted_to.release_number)
            promoted = True
        if probe is not None:
            prove_deployment_ready(run, run.ref, version, probe)
            if bake_seconds > 0:
                bake(run, version, probe, bake_seconds)
        else:
            run.step("no probe_input, so readiness was NOT proven: the release is only applied")
    except ConcurrentChangeError as error:
        run.record("failed", reason=str(error))
        return run.finish("failed", str(error))
    except ROLLBACK_ERRORS as error:
        return fail_or_roll_back(
            run, error, promoting, strategy, preview_name, delete_preview, delete_timeout
        )

    if strategy == "blue-green" and delete_preview and run.owns_preview(preview_name):
        remove_preview(run, preview_name, delete_timeout)
    run.record("succeeded", release=run.expected_release)
    return run.finish("succeeded")


def fail_or_roll_back(
    run: Run,
    error: BaseException,
    promoting: bool,
    strategy: str,
    preview_name: str,
    delete_preview: bool,
    delete_timeout: float,
) -> RolloutResult:
    """After a failure, restore the previous release if production was changed, and record why.

    With `promoting`, the promotion was sent, so production is read again: a
    change whose response was lost still counts as promoted.
    """
    reason = f"{type(error).__name__}: {error}"
    run.step(f"failed: {reason}")
    outcome: Outcome = "failed"
    promoted = False
    if promoting and run.target is not None and run.previous is not None:
        try:
            current = run.client.deployments.get(run.owner, run.name)
        except ReplicateError:
            promoted = True  # Unknown: restoring the previous release is the safe side.
        else:
            settings = settings_of(current).model_copy(update={"number": None})
            promoted = settings != run.previous.model_copy(update={"number": None})
            if settings == run.target.model_copy(update={"number": None}):
                # Our own change landed, perhaps more than once through retries
                # whose responses were lost: its release is ours to roll back.
                run.expected_release = current.release_number
    if promoted and run.previous is not None:
        try:
            roll_back(run, run.previous)
            outcome = "rolled-back"
        except ReplicateError as rollback_error:
            reason += f"; the rollback also failed: {rollback_error}"
    run.record(outcome, reason=reason, release=run.expected_release)
    if strategy == "blue-green" and delete_preview and run.owns_preview(preview_name):
        try:
            remove_preview(run, preview_name, delete_timeout)
        except ReplicateError as cleanup_error:
            run.logger.warning("Could not remove the preview %s: %s", preview_name, cleanup_error)
    return run.finish(outcome, reason)


def wait_for_approval(run: Run, timeout: int) -> None:
    """Pause the flow run until a person resumes it in the Prefect UI, or abort on timeout."""
    from prefect.flow_runs import pause_flow_run

    run.step(f"waiting up to {timeout} s for approval to promote")
    try:
        pause_flow_run(timeout=timeout, poll_interval=min(10, max(1, timeout // 10)))
    except Exception as error:  # Prefect raises its own timeout error here.
        raise ProbeFailedError(f"promotion was not approved within {timeout} s") from error
    run.step("promotion approved")


@flow(name="scale-deployment")
def scale_deployment(
    deployment: str,
    min_instances: int | None = None,
    max_instances: int | None = None,
    hardware: str | None = None,
    probe_input: dict[str, Any] | None = None,
    probe_count: int = 1,
    ready_timeout: float = 900.0,
    poll_interval: float = 1.0,
    force: bool = False,
) -> RolloutResult:
    """Change a deployment's instance range (and hardware), wait until applied, optionally ready."""
    fields = {
        key: value
        for key, value in (
            ("min_instances", min_instances),
            ("max_instances", max_instances),
            ("hardware", hardware),
        )
        if value is not None
    }
    if not fields:
        raise ValueError("scale needs at least one of min_instances, max_instances or hardware")
    check_instances(min_instances, max_instances)
    probe = probe_settings(probe_input, probe_count, ready_timeout, 1, poll_interval)
    run = Run(deployment, "scale", force=force)
    live = run.read()
    run.previous = settings_of(live)
    run.target = run.previous.model_copy(update={**fields, "number": None})
    if run.target.min_instances > run.target.max_instances:
        raise ValueError(
            f"min_instances {run.target.min_instances} would exceed max_instances "
            f"{run.target.max_instances}; raise max_instances too. Nothing was changed."
        )
    if release_matches(live, fields):
        run.step("already at the requested scale")
        return run.finish("unchanged")
    run.record("started")
    try:
        updated = run.update(**fields)
        if probe is not None:
            prove_deployment_ready(run, run.ref, updated.version, probe)
    except ConcurrentChangeError as error:
        run.record("failed", reason=str(error), release=run.expected_release)
        return run.finish("failed", str(error))
    except ReplicateError as error:
        # The new scale or hardware does not serve: restore the previous one.
        return fail_or_roll_back(run, error, True, "in-place", "", False, 0)
    run.record("succeeded", release=run.expected_release)
    return run.finish("succeeded")


def check_instances(min_instances: int | None, max_instances: int | None) -> None:
    """Reject instance counts outside Replicate's ranges before anything changes."""
    if min_instances is not None and not 0 <= min_instances <= 5:
        raise ValueError(f"min_instances must be from 0 to 5, got {min_instances!r}")
    if max_instances is not None and not 0 <= max_instances <= 20:
        raise ValueError(f"max_instances must be from 0 to 20, got {max_instances!r}")


@flow(name="delete-deployment")
def delete_deployment(
    deployment: str, timeout: float = 1800.0, force: bool = False
) -> RolloutResult:
    """Scale a deployment to zero, wait out Replicate's offline window, delete it, confirm 404.

    Replicate deletes only deployments that have been offline and unused for
    15 minutes, so this takes at least that long on the real API.
    """
    if timeout <= 0:
        raise ValueError(
            f"timeout must be positive seconds, got {timeout!r}; Replicate allows the delete "
            f"only after 15 minutes offline, so allow at least 900"
        )
    run = Run(deployment, "delete", force=force)
    try:
        live = run.read()
    except NotFoundError:
        run.step(f"{run.ref} does not exist, so there is nothing to delete; check the name")
        return run.finish("unchanged")
    run.previous = settings_of(live)
    run.record("started")
    try:
        if live.min_instances or live.max_instances:
            run.update(min_instances=0, max_instances=0)
        run.read()
        delete_when_allowed(run.client, run.owner, run.name, timeout=timeout, logger=run.logger)
    except ReplicateError as error:
        run.record("failed", reason=str(error))
        return run.finish("failed", str(error))
    run.step("deleted; a GET now returns 404")
    run.expected_release = None
    run.record("succeeded")
    return run.finish("succeeded")


@flow(name="undo-deployment")
def undo_deployment(deployment: str, force: bool = False) -> RolloutResult:
    """Restore the release that the journal's last successful change replaced."""
    run = Run(deployment, "undo", force=force)
    live = run.read()
    done = [e for e in latest_by_rollout(run.entries()) if e.phase == "succeeded"]
    if not done or done[-1].previous is None:
        raise ValueError(
            f"the journal has no successful change of {deployment} to undo; "
            f"see `replicate-tasks history {deployment}`"
        )
    last = done[-1]
    assert last.previous is not None
    if last.release_number is not None and live.release_number != last.release_number and not force:
        raise ConcurrentChangeError(
            f"deployment {deployment} is at release {live.release_number}, but the last change "
            f"the journal recorded left it at release {last.release_number}, so someone else "
            f"changed it since; undo would overwrite their change. Pass --force "
            f"(force=True) to undo anyway."
        )
    run.previous = settings_of(live)
    run.target = last.previous
    fields = {
        "version": last.previous.version,
        "hardware": last.previous.hardware,
        "min_instances": last.previous.min_instances,
        "max_instances": last.previous.max_instances,
    }
    if release_matches(live, fields):
        run.step("already at the release before the last change")
        return run.finish("unchanged")
    run.record("started")
    try:
        run.update(**fields)
    except ReplicateError as error:
        run.record("failed", reason=str(error))
        return run.finish("failed", str(error))
    run.step(f"undid {last.action} {last.rollout_id}")
    run.record("succeeded", release=run.expected_release)
    return run.finish("succeeded")
