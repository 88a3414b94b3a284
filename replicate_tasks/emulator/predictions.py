"""The predictions of one emulator: creating, reading, listing and canceling them.

A prediction's timing, failure, output and logs are planned when it is created
(see `lifecycle`), from the settings that apply to its model, version and
deployment and from the warm or cold state of its instances (see `instances`).
"""

from __future__ import annotations

import hashlib
import secrets
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .clock import Clock
from .instances import deployment_instance_key, processing_start, version_instance_key
from .lifecycle import PredictionRecord, plan_log_lines, seconds_after
from .outputs import plan_output
from .problems import ProblemError
from .settings import SettingsStore, Timing
from .state import DeploymentRecord

HIDDEN_VERSION = "hidden"
"""The version that predictions of an official model show, as in Replicate's openapi.json."""

_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_LENGTH = 26


@dataclass(frozen=True)
class PredictionTarget:
    """The model version, official model or deployment that a new prediction runs.

    `version` is what the prediction shows: a version id, or "hidden" for an
    official model run by name. `version_id` is the real id when known.
    `schema` is the OpenAPI document whose `Input` and `Output` apply.
    """

    model: str
    version: str
    version_id: str | None
    schema: Mapping[str, Any]
    deployment: DeploymentRecord | None = None


@dataclass(frozen=True)
class CreateRequest:
    """The checked body and headers of a prediction create."""

    input: dict[str, Any]
    webhook: str | None
    webhook_events: frozenset[str]
    cancel_after_seconds: float | None


class PredictionStore:
    """Every prediction of one emulator. Safe to use from several threads."""

    def __init__(self, *, clock: Clock, settings: SettingsStore) -> None:
        self.clock = clock
        self.settings = settings
        self._lock = threading.Lock()
        self._records: dict[str, PredictionRecord] = {}
        self._sequence = 0

    def create(
        self, target: PredictionTarget, request: CreateRequest, base_url: str
    ) -> PredictionRecord:
        """Plan and store a new prediction, created now."""
        now = self.clock.now()
        prediction_id = _new_id()
        deployment = target.deployment.ref if target.deployment is not None else None
        timing = self.settings.resolve(
            model=target.model, version=target.version_id, deployment=deployment
        )
        failure = _failure(timing, prediction_id)
        output_schema = _output_schema(target.schema)
        output = plan_output(output_schema, request.input, f"{target.model}:{target.version}")

        if target.deployment is not None:
            instance_key = deployment_instance_key(
                target.deployment.ref, target.deployment.release.instances_since
            )
            always_on_since = target.deployment.min_instances_booting_since
        else:
            instance_key = version_instance_key(target.model, target.version)
            always_on_since = None

        deadline = None
        if request.cancel_after_seconds is not None:
            deadline = seconds_after(now, request.cancel_after_seconds)

        with self._lock:
            earlier = [
                record for record in self._records.values() if record.instance_key == instance_key
            ]
            starts_at = processing_start(
                now,
                earlier,
                boot_seconds=timing.boot_seconds,
                idle_seconds=timing.idle_seconds,
                min_instances_booting_since=always_on_since,
            )
            self._sequence += 1
            record = PredictionRecord(
                id=prediction_id,
                sequence=self._sequence,
                model=target.model,
                version=target.version,
                deployment=deployment,
                input=request.input,
                base_url=base_url,
                created_at=now,
                starts_at=starts_at,
                finishes_at=seconds_after(starts_at, timing.predict_seconds),
                failure=failure,
                output=output,
                log_lines=plan_log_lines(timing.predict_seconds, failure),
                webhook=request.webhook,
                webhook_events=request.webhook_events,
                deadline=deadline,
                instance_key=instance_key,
            )
            self._records[prediction_id] = record
            return record

    def get(self, prediction_id: str) -> PredictionRecord:
        """Return the prediction with this id, or raise `ProblemError` 404."""
        with self._lock:
            record = self._records.get(prediction_id)
        if record is None:
            raise _not_found(prediction_id)
        return record

    def find(self, prediction_id: str) -> PredictionRecord | None:
        """Return the prediction with this id, or None."""
        with self._lock:
            return self._records.get(prediction_id)

    def list(self) -> list[PredictionRecord]:
        """Return every prediction, newest first."""
        with self._lock:
            records = list(self._records.values())
        return sorted(records, key=lambda record: record.sequence, reverse=True)

    def cancel(self, prediction_id: str) -> PredictionRecord:
        """Cancel the prediction now, unless it has ended, and return it.

        A prediction that has ended is returned unchanged. Raises `ProblemError`
        404 for an unknown id.
        """
        now = self.clock.now()
        with self._lock:
            record = self._records.get(prediction_id)
            if record is None:
                raise _not_found(prediction_id)
            if record.is_terminal(now):
                return record
            canceled = replace(record, canceled_at=now)
            self._records[prediction_id] = canceled
            return canceled

    def reset(self) -> None:
        """Delete every prediction."""
        with self._lock:
            self._records.clear()


def sort_key(record: PredictionRecord) -> str:
    """Return a string that sorts predictions by creation order."""
    return f"{record.sequence:012d}"


def created_between(
    record: PredictionRecord, after: datetime | None, before: datetime | None
) -> bool:
    """Return whether `record` was created after `after` and before `before`, when given."""
    if after is not None and record.created_at <= after:
        return False
    return before is None or record.created_at < before


def _output_schema(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    components = schema.get("components")
    if not isinstance(components, Mapping):
        return None
    schemas = components.get("schemas")
    if not isinstance(schemas, Mapping):
        return None
    output = schemas.get("Output")
    return output if isinstance(output, Mapping) else None


def _failure(timing: Timing, prediction_id: str) -> str | None:
    if timing.failure is not None:
        return timing.failure
    if timing.fail_rate > 0 and _unit_interval(prediction_id) < timing.fail_rate:
        return (
            f"The emulator failed this prediction, one of the fraction {timing.fail_rate:g} "
            "that its fail_rate setting selects."
        )
    return None


def _unit_interval(prediction_id: str) -> float:
    """Map a prediction id to a number in [0, 1), the same for the same id."""
    digest = hashlib.sha256(prediction_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def _not_found(prediction_id: str) -> ProblemError:
    return ProblemError(
        404,
        f"Prediction {prediction_id} was not found. List the predictions with GET /v1/predictions.",
    )
