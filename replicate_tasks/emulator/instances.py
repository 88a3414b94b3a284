"""Simulated instances: whether a new prediction starts warm or waits for a cold boot.

Predictions that share an instance key share instances. A deployment's key
changes whenever a release changes its version or hardware, because that
reboots its instances. A prediction starts processing at once when an instance
is warm, which is the case when

- the deployment's current release keeps `min_instances` above 0 and
  `boot_seconds` have passed since those instances began to boot, or
- a prediction with the same key ran and ended no more than `idle_seconds`
  ago, or is still running.

When an instance is still booting for an earlier prediction, the new one waits
for that same boot. Otherwise it waits `boot_seconds` in `starting`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from .clock import format_timestamp
from .lifecycle import PredictionRecord


def deployment_instance_key(deployment: str, instances_since: datetime) -> str:
    """Return the instance key of a deployment whose version and hardware date from then."""
    return f"deployment:{deployment}:{format_timestamp(instances_since)}"


def version_instance_key(model: str, version: str) -> str:
    """Return the instance key of predictions run by model version, not by deployment."""
    return f"version:{model}:{version}"


def processing_start(
    now: datetime,
    earlier: Iterable[PredictionRecord],
    *,
    boot_seconds: float,
    idle_seconds: float,
    min_instances_booting_since: datetime | None = None,
) -> datetime:
    """Return when a prediction created `now` starts processing.

    `earlier` are the predictions with the same instance key.
    `min_instances_booting_since` is when the deployment's always-on instances
    began to boot, or None when it has none.
    """
    boot = timedelta(seconds=boot_seconds)
    idle = timedelta(seconds=idle_seconds)
    ready_times: list[datetime] = []

    if min_instances_booting_since is not None:
        ready = min_instances_booting_since + boot
        if now >= ready:
            return now
        ready_times.append(ready)

    for record in earlier:
        if not record.started():
            continue
        if record.starts_at > now:
            ready_times.append(record.starts_at)
            continue
        end, _ = record.end()
        if now <= end + idle:
            return now

    if ready_times:
        return min(ready_times)
    return now + boot
