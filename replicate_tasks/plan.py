"""Compare the desired deployments with the live ones and plan the changes.

Planning is pure: the caller reads the live state (the token's account, the
deployments, the hardware SKUs and which model versions exist) and passes it in,
so a plan can be computed, shown and tested without touching the API.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

from .config import DeploymentsFile, DeploymentSpec
from .errors import NotFoundError, PlanError
from .models import Account, Deployment, Hardware

__all__ = [
    "Action",
    "Change",
    "FieldChange",
    "LiveState",
    "Plan",
    "make_plan",
    "read_live_state",
    "version_exists_with",
]

# The fields of a deployment that an update can change, in display order.
UPDATABLE_FIELDS = ("version", "hardware", "min_instances", "max_instances")


class Action(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class FieldChange:
    """One field of a deployment that the plan changes, from `old` to `new`."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Change:
    """The planned action for one deployment.

    `release_number` is the live release number when the plan was made (None for
    a creation): applying the change first checks that it has not moved.
    """

    action: Action
    owner: str
    spec: DeploymentSpec
    fields: tuple[FieldChange, ...] = ()
    release_number: int | None = None

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.spec.name}"

    def update_arguments(self) -> dict[str, Any]:
        """Return the keyword arguments of `deployments.update` for this change."""
        return {change.field: change.new for change in self.fields}


@dataclass(frozen=True)
class Plan:
    """The changes that make the live deployments match a deployments file."""

    owner: str
    changes: tuple[Change, ...]

    @property
    def has_changes(self) -> bool:
        return any(change.action is not Action.UNCHANGED for change in self.changes)

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action is action)

    def summary(self) -> str:
        """Return a one-line count of the planned changes, Terraform style."""
        return (
            f"{self.count(Action.CREATE)} to create, {self.count(Action.UPDATE)} to update, "
            f"{self.count(Action.UNCHANGED)} unchanged"
        )


@dataclass(frozen=True)
class LiveState:
    """The live state the API reported, as the planner needs it.

    `versions` maps each `(model, version_id)` that the file names to whether
    that version exists; a model that does not exist maps all its versions to False.
    """

    account: str
    deployments: Mapping[str, Deployment]
    hardware: Collection[str]
    versions: Mapping[tuple[str, str], bool] = field(default_factory=dict)


def make_plan(config: DeploymentsFile, live: LiveState) -> Plan:
    """Plan the changes that make `live` match `config`.

    Raises:
        PlanError: the file names an owner other than the token's account, a
            hardware SKU or a model version that does not exist, or changes the
            model of an existing deployment. Every problem is listed at once.
    """
    owner = config.owner or live.account
    problems = _check_owner(config.owner, live.account)
    changes = []
    for index, spec in enumerate(config.deployments):
        problems += _check_spec(index, spec, live)
        existing = live.deployments.get(spec.name)
        if existing is not None and existing.current_release is not None:
            problems += _check_model(index, spec, existing)
        changes.append(_plan_one(owner, spec, existing))
    if problems:
        raise PlanError(problems)
    return Plan(owner=owner, changes=tuple(changes))


def _check_owner(owner: str | None, account: str) -> list[str]:
    if owner is None or owner == account:
        return []
    return [
        f"owner: the file names {owner!r} but the API token belongs to {account!r}; "
        f"deployments can only be created for the token's account, so set owner to "
        f"{account!r} or use a token of {owner!r}"
    ]


def _check_spec(index: int, spec: DeploymentSpec, live: LiveState) -> list[str]:
    problems = []
    if spec.hardware not in live.hardware:
        known = sorted(live.hardware)
        # A SKU that extends the value ("gpu-a100" -> "gpu-a100-large") is the
        # likelier meaning than a merely similar one ("gpu-h100").
        extended = [sku for sku in known if sku.startswith(spec.hardware)]
        hint = extended[:1] or get_close_matches(spec.hardware, known, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        problems.append(
            f"deployments[{index}].hardware: unknown hardware SKU {spec.hardware!r}{suggestion}; "
            f"available: {', '.join(known)}"
        )
    if not live.versions.get((spec.model, spec.version), False):
        problems.append(
            f"deployments[{index}].version: version {spec.version!r} of model {spec.model!r} "
            f"was not found; check the id on the model's versions page"
        )
    return problems


def _check_model(index: int, spec: DeploymentSpec, existing: Deployment) -> list[str]:
    if existing.model == spec.model:
        return []
    return [
        f"deployments[{index}].model: deployment {existing.ref} serves {existing.model!r}, "
        f"and the API cannot change a deployment's model to {spec.model!r}; "
        f"give the deployment a new name, or delete it first"
    ]


def _plan_one(owner: str, spec: DeploymentSpec, existing: Deployment | None) -> Change:
    if existing is None or existing.current_release is None:
        return Change(Action.CREATE, owner, spec)
    fields = tuple(
        FieldChange(name, getattr(existing, name), getattr(spec, name))
        for name in UPDATABLE_FIELDS
        if getattr(existing, name) != getattr(spec, name)
    )
    action = Action.UPDATE if fields else Action.UNCHANGED
    return Change(action, owner, spec, fields, release_number=existing.release_number)


def read_live_state(
    config: DeploymentsFile,
    *,
    get_account: Callable[[], Account],
    list_deployments: Callable[[], list[Deployment]],
    list_hardware: Callable[[], list[Hardware]],
    version_exists: Callable[[str, str], bool],
) -> LiveState:
    """Read what the planner needs, through the given calls.

    The apply flow passes its tasks and the `plan` command passes plain client
    calls, so both read the same facts the same way; this module does no I/O
    of its own.
    """
    account = get_account().username
    owner = config.owner or account
    deployments = {d.name: d for d in list_deployments() if d.owner == owner}
    hardware = {item.sku for item in list_hardware()}
    wanted = {(spec.model, spec.version) for spec in config.deployments}
    versions = {key: version_exists(*key) for key in sorted(wanted)}
    return LiveState(account=account, deployments=deployments, hardware=hardware, versions=versions)


def version_exists_with(get_version: Callable[[str, str], object]) -> Callable[[str, str], bool]:
    """Turn a version read into a yes/no check, where a 404 (model or version) means no."""

    def version_exists(model: str, version_id: str) -> bool:
        try:
            get_version(model, version_id)
        except NotFoundError:
            return False
        return True

    return version_exists
