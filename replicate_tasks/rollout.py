"""The checks a rollout is built from: schema compatibility, probes, output comparison, deletion.

Replicate reports no readiness for a deployment, so readiness is proven with
probe predictions: a deployment is ready when the configured number of probes
in a row succeed and each reports the target version. The helpers here make
plain client calls (no task runs per poll), so the flows in `flows.rollout`
can call them from inside one task.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .client import Replicate
from .errors import (
    APIConnectionError,
    ConflictError,
    NotFoundError,
    ProbeFailedError,
    WaitTimeoutError,
)
from .models import Prediction
from .waits import TRANSIENT_ERRORS

__all__ = [
    "CompareRule",
    "ProbeSettings",
    "compare_outputs",
    "delete_when_allowed",
    "prove_ready",
    "schema_problems",
]

Logger = logging.Logger | logging.LoggerAdapter[Any]
CompareRule = Literal["none", "exact", "shape"]


@dataclass(frozen=True)
class ProbeSettings:
    """Settings of the probe predictions that prove readiness.

    Attributes:
        input: The input of every probe prediction.
        count: Probes in a row that must succeed on the target version.
        timeout: Seconds to reach `count`; a cold GPU boot can take minutes.
        max_failures: Failed probes tolerated before the version is judged bad.
        poll_interval: Seconds between polls of a running probe.
    """

    input: Mapping[str, Any] = field(default_factory=dict)
    count: int = 3
    timeout: float = 900.0
    max_failures: int = 1
    poll_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"probe count must be at least 1, got {self.count!r}")
        if self.max_failures < 1:
            raise ValueError(f"max_failures must be at least 1, got {self.max_failures!r}")
        if self.timeout <= 0 or self.poll_interval <= 0:
            raise ValueError(
                f"probe timeout and poll_interval must be positive seconds, got "
                f"{self.timeout!r} and {self.poll_interval!r}"
            )


def prove_ready(
    client: Replicate,
    deployment: str,
    version: str,
    probe: ProbeSettings,
    *,
    logger: Logger,
) -> list[Prediction]:
    """Run probe predictions on `deployment` until `probe.count` in a row succeed on `version`.

    A probe served by another version (the deployment still switching) resets
    the count without counting as a failure. Transient API errors are retried
    on the next probe, and are never reported as the version failing.

    Returns:
        The successful probes of the final run of `probe.count`.

    Raises:
        ProbeFailedError: `probe.max_failures` probes failed, were canceled or aborted.
        WaitTimeoutError: the deadline passed first; the message names the
            limit and the last probe seen.
    """
    deadline = time.monotonic() + probe.timeout
    passed: list[Prediction] = []
    seen: set[str] = set()
    failures = 0
    last_state = "no probe finished yet"
    while len(passed) < probe.count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeoutError(
                f"Timed out after {probe.timeout:g} s proving {deployment} ready on version "
                f"{version[:12]}: {len(passed)} of {probe.count} probes passed in a row; "
                f"last probe: {last_state}",
                limit=probe.timeout,
                last_state=last_state,
            )
        try:
            prediction = create_probe(client, deployment, probe, seen)
            seen.add(prediction.id)
            prediction = client.predictions.wait(
                prediction, timeout=remaining, interval=probe.poll_interval
            )
        except TRANSIENT_ERRORS as error:
            last_state = f"could not be observed ({error})"
            logger.warning("Probe of %s could not be observed: %s", deployment, error)
            time.sleep(min(probe.poll_interval, max(deadline - time.monotonic(), 0)))
            continue
        except WaitTimeoutError:
            continue  # The loop's own deadline check reports the timeout.

        last_state = (
            f"{prediction.id} {prediction.status} on version {str(prediction.version)[:12]}"
        )
        if prediction.status == "succeeded" and prediction.version == version:
            passed.append(prediction)
            logger.info(
                "Probe %d of %d passed on %s (%s)",
                len(passed),
                probe.count,
                deployment,
                prediction.id,
            )
        elif prediction.status == "succeeded":
            passed.clear()
            logger.info(
                "Probe %s on %s was served by another version; counting again",
                prediction.id,
                deployment,
            )
        else:
            passed.clear()
            failures += 1
            logger.warning(
                "Probe %s on %s ended %s: %s",
                prediction.id,
                deployment,
                prediction.status,
                prediction.error,
            )
            if failures >= probe.max_failures:
                raise ProbeFailedError(
                    f"probe {prediction.id} on {deployment} ended {prediction.status} on version "
                    f"{str(prediction.version)[:12]}: {prediction.error or 'no error message'}",
                    prediction=prediction,
                )
    return passed


def create_probe(
    client: Replicate, deployment: str, probe: ProbeSettings, seen: set[str]
) -> Prediction:
    """Create one probe prediction, never a second one for a creation whose response was lost.

    A prediction creation is not repeated once it may have reached Replicate.
    When its response is lost, the newest predictions are searched for the
    probe instead (the same deployment and input, and not a probe already
    counted), so that a network fault does not leave a billed prediction
    running unwatched.
    """
    try:
        return client.deployments.predictions.create(deployment, dict(probe.input))
    except APIConnectionError as error:
        if not error.request_sent:
            raise
        lost = error
    for prediction in client.predictions.list().results:
        if (
            prediction.deployment == deployment
            and prediction.input == dict(probe.input)
            and prediction.id not in seen
        ):
            return prediction
    raise lost


def delete_when_allowed(
    client: Replicate,
    owner: str,
    name: str,
    *,
    timeout: float,
    logger: Logger,
    max_interval: float = 60.0,
) -> None:
    """Delete a deployment once Replicate allows it, then confirm it is gone.

    Replicate deletes only deployments that have been offline (minimum
    instances 0) and unused for 15 minutes, and returns 409 until then, so
    the delete is retried with capped backoff until `timeout` seconds pass.
    """
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        try:
            client.deployments.delete(owner, name)
            break
        except NotFoundError:
            break
        except ConflictError as error:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"Timed out after {timeout:g} s waiting for Replicate to allow deleting "
                    f"{owner}/{name}; last answer: {error.detail or error}",
                    limit=timeout,
                    last_state=error.detail,
                ) from error
            if attempt == 0:
                logger.info(
                    "Waiting for Replicate to allow deleting %s/%s: %s", owner, name, error.detail
                )
            pause = random.uniform(0, min(max_interval, 0.5 * 2**attempt))
            attempt += 1
            time.sleep(min(pause, remaining))
    try:
        client.deployments.get(owner, name)
    except NotFoundError:
        logger.info("Deleted %s/%s", owner, name)
        return
    raise ConflictError(409, detail=f"{owner}/{name} still exists after its delete succeeded")


def schema_problems(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """List how a new version's OpenAPI schema breaks callers of the old one.

    Callers send fixed inputs by name and read outputs of a fixed type, so a
    removed input, an input whose type changed, a new required input without
    a default, and a changed output type are each a problem. Added optional
    inputs are not. With either schema missing nothing can be compared, and
    the list is empty.
    """
    if not old or not new:
        return []
    problems: list[str] = []
    old_inputs = _properties(old, "Input")
    new_inputs = _properties(new, "Input")
    for name, schema in old_inputs.items():
        if name not in new_inputs:
            problems.append(f"input {name!r} was removed")
            continue
        before, after = _type_of(old, schema), _type_of(new, new_inputs[name])
        if before != after:
            problems.append(f"input {name!r} changed type from {before} to {after}")
    required = set(_component(new, "Input").get("required", []))
    for name in sorted(required - set(old_inputs)):
        if "default" not in new_inputs.get(name, {}):
            problems.append(f"input {name!r} is new and required, so existing callers lack it")
    before_output = _type_of(old, _component(old, "Output"))
    after_output = _type_of(new, _component(new, "Output"))
    if before_output != after_output:
        problems.append(f"output changed type from {before_output} to {after_output}")
    return problems


def _component(schema: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    found = schema.get("components", {}).get("schemas", {}).get(name, {})
    return found if isinstance(found, Mapping) else {}


def _properties(schema: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    properties = _component(schema, name).get("properties", {})
    return properties if isinstance(properties, Mapping) else {}


def _type_of(root: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    """Describe a JSON schema's type, following `$ref` and `allOf`, such as `array of uri`."""
    if "$ref" in schema:
        target = str(schema["$ref"]).rsplit("/", 1)[-1]
        return _type_of(root, _component(root, target))
    if schema.get("allOf"):
        return _type_of(root, schema["allOf"][0])
    kind = str(schema.get("type", "any"))
    if schema.get("format") == "uri":
        kind = "uri"
    if kind == "array":
        items = schema.get("items", {})
        return f"array of {_type_of(root, items if isinstance(items, Mapping) else {})}"
    return kind


def compare_outputs(rule: CompareRule, live: Any, preview: Any) -> str | None:
    """Compare the outputs of the same probe input on two versions.

    Rules: `none` accepts anything; `exact` requires equal JSON values; `shape`
    requires the same JSON structure and value types (file URLs differ by
    run, so image models compare by shape). Returns a description of the
    difference, or None when the outputs agree.
    """
    if rule == "none":
        return None
    if rule == "exact":
        return (
            None if live == preview else f"outputs differ: {_excerpt(live)} vs {_excerpt(preview)}"
        )
    if _shape(live) == _shape(preview):
        return None
    return f"output shapes differ: {_shape(live)} vs {_shape(preview)}"


def _shape(value: Any) -> Any:
    if isinstance(value, list):
        return [_shape(item) for item in value]
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in sorted(value.items())}
    return type(value).__name__


def _excerpt(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
