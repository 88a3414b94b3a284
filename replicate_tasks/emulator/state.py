"""The emulator's account, deployments and releases, in plain Python.

One lock guards every read and change, because a served emulator handles
requests on uvicorn's thread while tests read and change the state from theirs.
Records are frozen dataclasses, so a record handed out never changes under the
caller.
"""

from __future__ import annotations

import base64
import math
import re
import secrets
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from .catalog import Catalog
from .clock import Clock, format_timestamp
from .problems import ProblemError
from .validation import (
    DeploymentCreate,
    DeploymentUpdate,
    check_instance_range,
    check_version_of_model,
)

_Value = TypeVar("_Value")

DELETE_IDLE_SECONDS = 15 * 60
"""How long a deployment must be offline and unused before it can be deleted."""


@dataclass(frozen=True)
class Release:
    """One release of a deployment: a version and a configuration.

    `instances_since` is when the deployment began running this version on this
    hardware: the `created_at` of the first release in the current run of
    releases that share both. A release that changes either one reboots the
    deployment's instances, and one that changes only the instance counts does
    not.
    """

    number: int
    model: str
    version: str
    created_at: datetime
    hardware: str
    min_instances: int
    max_instances: int
    instances_since: datetime


@dataclass(frozen=True)
class DeploymentRecord:
    """A deployment and the bookkeeping the API does not show.

    `offline_since` is when the current run of releases with `min_instances`
    0 began, or None while `min_instances` is above 0. `online_since` is the
    reverse: when the current run with `min_instances` above 0 began, or None.
    `last_used_at` is the last time a prediction used the deployment, set by
    `EmulatorState.touch`. `sequence` orders deployments by creation.
    """

    owner: str
    name: str
    sequence: int
    release: Release
    offline_since: datetime | None
    last_used_at: datetime | None
    online_since: datetime | None = None

    @property
    def min_instances_booting_since(self) -> datetime | None:
        """When the always-on instances of the current release began to boot, or None.

        None when the current release has `min_instances` 0. Otherwise the later
        of `online_since` and the release's `instances_since`.
        """
        if self.online_since is None:
            return None
        return max(self.online_since, self.release.instances_since)

    @property
    def ref(self) -> str:
        """The `owner/name` form of the deployment."""
        return f"{self.owner}/{self.name}"


class EmulatorState:
    """Deployments of one account, with the API's rules for changing them."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        clock: Clock,
        account: str,
        page_size: int,
    ) -> None:
        self.catalog = catalog
        self.clock = clock
        self.account = account
        self.page_size = page_size
        self.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self._lock = threading.Lock()
        self._deployments: dict[str, DeploymentRecord] = {}
        self._sequence = 0

    def account_json(self) -> dict[str, Any]:
        """Return the account that owns the token, as `GET /v1/account` does."""
        return {
            "type": "organization",
            "username": self.account,
            "name": _display_name(self.account),
            "github_url": f"https://github.com/{self.account}",
        }

    def hardware_json(self) -> list[dict[str, Any]]:
        """Return the bare array that `GET /v1/hardware` returns."""
        return [item.to_json() for item in self.catalog.hardware]

    def deployment_json(self, record: DeploymentRecord) -> dict[str, Any]:
        """Return a deployment in the API's shape, with no status or instance count."""
        release = record.release
        return {
            "owner": record.owner,
            "name": record.name,
            "current_release": {
                "number": release.number,
                "model": release.model,
                "version": release.version,
                "created_at": format_timestamp(release.created_at),
                "created_by": self.account_json(),
                "configuration": {
                    "hardware": release.hardware,
                    "min_instances": release.min_instances,
                    "max_instances": release.max_instances,
                },
            },
        }

    def get_deployment(self, owner: str, name: str) -> DeploymentRecord:
        """Return the deployment `owner/name`, or raise `ProblemError` 404."""
        with self._lock:
            return self._find(owner, name)

    def list_deployments(self) -> list[DeploymentRecord]:
        """Return every deployment, newest first."""
        with self._lock:
            records = list(self._deployments.values())
        return sorted(records, key=lambda record: record.sequence, reverse=True)

    def create_deployment(self, request: DeploymentCreate) -> DeploymentRecord:
        """Create a deployment with release 1, or raise `ProblemError` 409."""
        now = self.clock.now()
        release = Release(
            number=1,
            model=request.model,
            version=request.version,
            created_at=now,
            hardware=request.hardware,
            min_instances=request.min_instances,
            max_instances=request.max_instances,
            instances_since=now,
        )

        with self._lock:
            key = f"{self.account}/{request.name}"
            if key in self._deployments:
                raise ProblemError(
                    409,
                    f"A deployment named {key} already exists. Choose another name, "
                    f"or change it with PATCH /v1/deployments/{key}.",
                )

            self._sequence += 1
            record = DeploymentRecord(
                owner=self.account,
                name=request.name,
                sequence=self._sequence,
                release=release,
                offline_since=now if release.min_instances == 0 else None,
                last_used_at=None,
                online_since=now if release.min_instances > 0 else None,
            )
            self._deployments[key] = record
            return record

    def update_deployment(
        self, owner: str, name: str, update: DeploymentUpdate
    ) -> DeploymentRecord:
        """Apply `update` as a new release, numbered one above the current one.

        Every update makes a new release, even one that changes nothing, because
        the API increments the release number on each update. Raises
        `ProblemError` 404 for an unknown deployment, and 422 when the version
        is not of the deployment's model or the minimum exceeds the maximum.
        """
        # NOTE: openapi.json does not say whether an empty update body is valid.
        # The official Python clients send {} when no field is given, so the
        # emulator accepts it and makes a new release with the same values.
        now = self.clock.now()
        with self._lock:
            record = self._find(owner, name)
            current = record.release
            version = _pick(update.version, current.version)
            hardware = _pick(update.hardware, current.hardware)
            same_instances = version == current.version and hardware == current.hardware
            release = Release(
                number=current.number + 1,
                model=current.model,
                version=version,
                created_at=now,
                hardware=hardware,
                min_instances=_pick(update.min_instances, current.min_instances),
                max_instances=_pick(update.max_instances, current.max_instances),
                instances_since=current.instances_since if same_instances else now,
            )
            self._check_release(release, update)

            updated = replace(
                record,
                release=release,
                offline_since=_offline_since(record, release, now),
                online_since=_online_since(record, release, now),
            )
            self._deployments[record.ref] = updated
            return updated

    def delete_deployment(self, owner: str, name: str) -> None:
        """Delete a deployment that has been offline and unused for 15 minutes.

        Raises `ProblemError` 404 for an unknown deployment, and 409 with the
        reason and the seconds left when it cannot be deleted yet.
        """
        now = self.clock.now()
        with self._lock:
            record = self._find(owner, name)
            if record.offline_since is None:
                raise ProblemError(
                    409,
                    f"Deployment {record.ref} cannot be deleted while it is online: "
                    f"its current release has min_instances "
                    f"{record.release.min_instances}. Set min_instances to 0, then "
                    f"delete it after {DELETE_IDLE_SECONDS} seconds without "
                    "predictions.",
                )

            idle_since = max(record.offline_since, record.last_used_at or record.offline_since)
            remaining = DELETE_IDLE_SECONDS - (now - idle_since).total_seconds()
            if remaining > 0:
                raise ProblemError(
                    409,
                    f"Deployment {record.ref} cannot be deleted until it has been "
                    f"offline and unused for {DELETE_IDLE_SECONDS} seconds: "
                    f"{math.ceil(remaining)} seconds remain. Retry the delete after "
                    "that.",
                )

            del self._deployments[record.ref]

    def touch(self, owner: str, name: str) -> DeploymentRecord:
        """Mark the deployment as used now, which restarts its delete window."""
        now = self.clock.now()
        with self._lock:
            record = self._find(owner, name)
            updated = replace(record, last_used_at=now)
            self._deployments[record.ref] = updated
            return updated

    def reset(self) -> None:
        """Delete every deployment. The catalog, clock and webhook secret stay."""
        with self._lock:
            self._deployments.clear()

    def _find(self, owner: str, name: str) -> DeploymentRecord:
        record = self._deployments.get(f"{owner}/{name}")
        if record is None:
            raise ProblemError(
                404,
                f"Deployment {owner}/{name} was not found. List the deployments "
                "of this account with GET /v1/deployments.",
            )
        return record

    def _check_release(self, release: Release, update: DeploymentUpdate) -> None:
        problems: list[str] = []
        if update.version is not None:
            check_version_of_model(release.model, release.version, self.catalog, problems)
        check_instance_range(release.min_instances, release.max_instances, problems)
        if problems:
            raise ProblemError(422, " ".join(problems), title="Unprocessable Entity")


def _pick(value: _Value | None, current: _Value) -> _Value:
    return current if value is None else value


def _offline_since(record: DeploymentRecord, release: Release, now: datetime) -> datetime | None:
    if release.min_instances > 0:
        return None
    return record.offline_since or now


def _online_since(record: DeploymentRecord, release: Release, now: datetime) -> datetime | None:
    if release.min_instances == 0:
        return None
    return record.online_since or now


def _display_name(account: str) -> str:
    words = re.split(r"[-_]+", account)
    return " ".join(word.capitalize() for word in words if word) or account
