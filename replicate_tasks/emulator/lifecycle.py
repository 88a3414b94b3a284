"""The lifecycle of a simulated prediction, computed from the emulator clock on each read.

A prediction is planned in full when it is created: when it starts processing
(after a cold boot, if any), when it ends, whether it fails, its output and its
log lines. Its state at any moment follows from that plan, the time and any
cancel or deadline, so a test on a `ManualClock` only advances the clock:

    starting -> processing -> succeeded | failed | canceled | aborted

A prediction is `canceled` by a cancel request at any point, or by its
`Cancel-After` deadline while processing, and `aborted` by the deadline before
it started processing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .clock import format_timestamp
from .outputs import FileRef, OutputPlan

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})
PROGRESS_STEPS = 4
WEB_URL = "https://replicate.com/p/{id}"


@dataclass(frozen=True)
class PredictionRecord:
    """A prediction as planned at creation, plus its cancel time once canceled.

    `starts_at` and `finishes_at` are when it would start processing and end
    if nothing stops it. `log_lines` contains each line with its offset in seconds
    from `starts_at`. `instance_key` names the simulated instance pool the
    prediction ran on, for cold-boot decisions.
    """

    id: str
    sequence: int
    model: str
    version: str
    deployment: str | None
    input: Mapping[str, Any]
    base_url: str
    created_at: datetime
    starts_at: datetime
    finishes_at: datetime
    failure: str | None
    output: OutputPlan
    log_lines: tuple[tuple[float, str], ...]
    webhook: str | None
    webhook_events: frozenset[str]
    deadline: datetime | None
    instance_key: str
    canceled_at: datetime | None = None

    def end(self) -> tuple[datetime, str]:
        """Return when the prediction ends (or ended) and its terminal status."""
        end = self.finishes_at
        status = "failed" if self.failure is not None else "succeeded"
        if self.deadline is not None and self.deadline < end:
            end = self.deadline
            status = "aborted" if self.deadline <= self.starts_at else "canceled"
        if self.canceled_at is not None and self.canceled_at < end:
            end = self.canceled_at
            status = "canceled"
        return end, status

    def started(self) -> bool:
        """Return whether the prediction reaches (or reached) processing before it ends."""
        end, status = self.end()
        if self.starts_at < end:
            return True
        return self.starts_at == end and status in ("succeeded", "failed")

    def is_terminal(self, at: datetime) -> bool:
        """Return whether the prediction has ended by `at`."""
        return at >= self.end()[0]


@dataclass(frozen=True)
class Snapshot:
    """The state of a prediction at one moment."""

    status: str
    started_at: datetime | None
    completed_at: datetime | None
    logs: str
    error: str | None
    output_fraction: float | None
    metrics: dict[str, float]

    @property
    def terminal(self) -> bool:
        """Whether the status is final."""
        return self.status in TERMINAL_STATUSES


def snapshot(record: PredictionRecord, at: datetime) -> Snapshot:
    """Compute the state of `record` at the time `at`."""
    end, final_status = record.end()
    started = record.started()

    if at >= end:
        status = final_status
    elif at >= record.starts_at:
        status = "processing"
    else:
        status = "starting"

    horizon = min(at, end)
    show_start = started and horizon >= record.starts_at
    elapsed = (horizon - record.starts_at).total_seconds() if show_start else 0.0
    predict_seconds = (record.finishes_at - record.starts_at).total_seconds()

    logs = ""
    if show_start:
        lines = [line for offset, line in record.log_lines if offset <= elapsed]
        logs = "".join(line + "\n" for line in lines)

    output_fraction: float | None = None
    if status == "succeeded":
        output_fraction = 1.0
    elif show_start and status in ("processing", "canceled") and record.output.tokens is not None:
        output_fraction = elapsed / predict_seconds if predict_seconds > 0 else 1.0

    metrics: dict[str, float] = {}
    if status in TERMINAL_STATUSES:
        if started:
            metrics["predict_time"] = round((end - record.starts_at).total_seconds(), 6)
        metrics["total_time"] = round((end - record.created_at).total_seconds(), 6)

    return Snapshot(
        status=status,
        started_at=record.starts_at if show_start else None,
        completed_at=end if status in TERMINAL_STATUSES else None,
        logs=logs,
        error=record.failure if status == "failed" else None,
        output_fraction=output_fraction,
        metrics=metrics,
    )


def prediction_json(
    record: PredictionRecord,
    at: datetime,
    file_url: Callable[[PredictionRecord, FileRef], str],
) -> dict[str, Any]:
    """Return the prediction at `at` in the API's shape, as `GET /v1/predictions/{id}` does.

    `file_url` turns each output file into the URL (or data URI) to show.
    """
    state = snapshot(record, at)
    output: Any = None
    if state.output_fraction is not None:
        output = record.output.render(lambda file: file_url(record, file), state.output_fraction)

    get_url = f"{record.base_url}/v1/predictions/{record.id}"
    document: dict[str, Any] = {
        "id": record.id,
        "model": record.model,
        "version": record.version,
        "input": copy.deepcopy(dict(record.input)),
        "logs": state.logs,
        "output": output,
        "data_removed": False,
        "error": state.error,
        "status": state.status,
        "created_at": format_timestamp(record.created_at),
        "started_at": _timestamp(state.started_at),
        "completed_at": _timestamp(state.completed_at),
        "urls": {
            "get": get_url,
            "cancel": f"{get_url}/cancel",
            "web": WEB_URL.format(id=record.id),
        },
        "metrics": state.metrics,
        "source": "api",
    }
    if record.deployment is not None:
        document["deployment"] = record.deployment
    if record.deadline is not None:
        document["deadline"] = format_timestamp(record.deadline)
    return document


def plan_log_lines(predict_seconds: float, failure: str | None) -> tuple[tuple[float, str], ...]:
    """Plan the log lines of a prediction: progress bars through processing, then any error.

    The progress lines follow the tqdm layout that official clients parse for
    `Prediction.progress`, such as ` 50%|#####     | 2/4`.
    """
    lines: list[tuple[float, str]] = []
    for step in range(PROGRESS_STEPS + 1):
        offset = predict_seconds * step / PROGRESS_STEPS
        percent = 100 * step // PROGRESS_STEPS
        filled = 10 * step // PROGRESS_STEPS
        bar = "#" * filled + " " * (10 - filled)
        lines.append((offset, f"{percent:3d}%|{bar}| {step}/{PROGRESS_STEPS}"))
    if failure is not None:
        lines.append((predict_seconds, f"Error: {failure}"))
    return tuple(lines)


def seconds_after(moment: datetime, seconds: float) -> datetime:
    """Return `moment` plus `seconds`."""
    return moment + timedelta(seconds=seconds)


def _timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)
