"""Plans and apply outcomes rendered as markdown, for Prefect artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replicate_tasks.plan import Action, Change, Plan

__all__ = ["Outcome", "apply_markdown", "describe_fields", "plan_markdown"]

SYMBOLS = {Action.CREATE: "+", Action.UPDATE: "~", Action.UNCHANGED: " "}


@dataclass(frozen=True)
class Outcome:
    """The result for one deployment: created, updated, unchanged or failed."""

    ref: str
    status: str
    release_number: int | None = None
    error: str | None = None


def describe_fields(change: Change, *, short: bool = False) -> list[str]:
    """Return one `field: old → new` line per change, or the created settings.

    With `short`, version ids are cut to their first 12 characters, which is
    enough to tell them apart on a terminal.
    """
    spec = change.spec
    if change.action is Action.CREATE:
        return [
            f"model: {spec.model}",
            f"version: {_show('version', spec.version, short)}",
            f"hardware: {spec.hardware}",
            f"instances: {spec.min_instances}-{spec.max_instances}",
        ]
    return [
        f"{item.field}: {_show(item.field, item.old, short)} → {_show(item.field, item.new, short)}"
        for item in change.fields
    ]


def _show(field: str, value: Any, short: bool) -> str:
    text = str(value)
    if short and field == "version" and len(text) > 12:
        return text[:12] + "…"
    return text


def plan_markdown(plan: Plan) -> str:
    rows = ["| | deployment | action | changes |", "|---|---|---|---|"]
    for change in plan.changes:
        details = "<br>".join(describe_fields(change)) or "-"
        rows.append(
            f"| `{SYMBOLS[change.action]}` | {change.ref} | {change.action.value} | {details} |"
        )
    return "\n".join([f"**Plan:** {plan.summary()}", "", *rows])


def apply_markdown(path: str, plan: Plan, outcomes: list[Outcome], *, plan_only: bool) -> str:
    lines = [f"# Apply of `{path}`", "", plan_markdown(plan), ""]
    if plan_only:
        lines.append("Plan only: nothing was changed.")
        return "\n".join(lines)
    lines += ["## Outcome", "", "| deployment | outcome | release | error |", "|---|---|---|---|"]
    for outcome in outcomes:
        release = "-" if outcome.release_number is None else str(outcome.release_number)
        error = (outcome.error or "-").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {outcome.ref} | {outcome.status} | {release} | {error} |")
    return "\n".join(lines)
