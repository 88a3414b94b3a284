"""Timing and failure settings of simulated predictions, per model, version and deployment.

Settings are set in layers: emulator-wide defaults, then per model, per version
and per deployment. For each prediction, the most specific layer that sets an
option wins. `Emulator.configure` and `POST /_emulator/settings` change them.
"""

from __future__ import annotations

import enum
import math
import threading
from dataclasses import dataclass, fields, replace
from typing import Any

DEFAULT_BOOT_SECONDS = 30.0
DEFAULT_PREDICT_SECONDS = 2.0
DEFAULT_IDLE_SECONDS = 60.0


class Unset(enum.Enum):
    """The type of `UNSET`, the default of options that a call leaves unchanged."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True)
class Settings:
    """One layer of settings. None means the layer does not set that option.

    `boot_seconds` is the cold-boot time of an instance, `predict_seconds` the
    time a prediction spends processing, and `idle_seconds` how long an
    instance stays warm after its last prediction. `failure` is an error
    message that makes every prediction fail, and `fail_rate` the fraction of
    predictions, from 0 to 1, that fail.
    """

    boot_seconds: float | None = None
    predict_seconds: float | None = None
    idle_seconds: float | None = None
    failure: str | None = None
    fail_rate: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the options this layer sets, leaving out the unset ones."""
        document = {item.name: getattr(self, item.name) for item in fields(self)}
        return {key: value for key, value in document.items() if value is not None}


@dataclass(frozen=True)
class Timing:
    """The settings resolved for one prediction."""

    boot_seconds: float
    predict_seconds: float
    idle_seconds: float
    failure: str | None
    fail_rate: float


class SettingsStore:
    """The settings layers of one emulator. Safe to use from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._defaults = Settings()
        self._models: dict[str, Settings] = {}
        self._versions: dict[str, Settings] = {}
        self._deployments: dict[str, Settings] = {}

    def configure(
        self,
        *,
        model: str | None = None,
        version: str | None = None,
        deployment: str | None = None,
        boot_seconds: float | Unset | None = UNSET,
        predict_seconds: float | Unset | None = UNSET,
        idle_seconds: float | Unset | None = UNSET,
        failure: str | Unset | None = UNSET,
        fail_rate: float | Unset | None = UNSET,
    ) -> Settings:
        """Change the options given for one layer and return the layer.

        Name at most one of `model` ("owner/name"), `version` (a version id) or
        `deployment` ("owner/name"); with none, the emulator-wide defaults
        change. An option left out stays as it is, and None removes it from the
        layer so that a less specific layer applies again.
        """
        targets = [item for item in (model, version, deployment) if item is not None]
        if len(targets) > 1:
            raise ValueError(
                "Name at most one of model, version or deployment, got "
                f"model={model!r}, version={version!r}, deployment={deployment!r}."
            )

        changes: dict[str, Any] = {}
        for name, value in (
            ("boot_seconds", boot_seconds),
            ("predict_seconds", predict_seconds),
            ("idle_seconds", idle_seconds),
        ):
            if value is not UNSET:
                changes[name] = _check_seconds(name, value)
        if failure is not UNSET:
            changes["failure"] = _check_failure(failure)
        if fail_rate is not UNSET:
            changes["fail_rate"] = _check_rate(fail_rate)

        with self._lock:
            if model is not None:
                layer = replace(self._models.get(model, Settings()), **changes)
                self._models[model] = layer
            elif version is not None:
                layer = replace(self._versions.get(version, Settings()), **changes)
                self._versions[version] = layer
            elif deployment is not None:
                layer = replace(self._deployments.get(deployment, Settings()), **changes)
                self._deployments[deployment] = layer
            else:
                layer = replace(self._defaults, **changes)
                self._defaults = layer
            return layer

    def resolve(self, *, model: str, version: str | None, deployment: str | None) -> Timing:
        """Resolve the settings of a prediction of `model`, optionally a version and deployment.

        The emulator-wide `boot_seconds` applies to deployment predictions only:
        a prediction of a model or a version starts warm unless its model or
        version layer sets `boot_seconds`.
        """
        with self._lock:
            layers = [self._models.get(model, Settings())]
            if version is not None:
                layers.append(self._versions.get(version, Settings()))
            if deployment is not None:
                layers.append(self._deployments.get(deployment, Settings()))
            defaults = self._defaults

        boot_default = (
            _value(defaults.boot_seconds, DEFAULT_BOOT_SECONDS) if deployment is not None else 0.0
        )
        return Timing(
            boot_seconds=_pick(layers, "boot_seconds", boot_default),
            predict_seconds=_pick(
                layers, "predict_seconds", _value(defaults.predict_seconds, DEFAULT_PREDICT_SECONDS)
            ),
            idle_seconds=_pick(
                layers, "idle_seconds", _value(defaults.idle_seconds, DEFAULT_IDLE_SECONDS)
            ),
            failure=_pick(layers, "failure", defaults.failure),
            fail_rate=_pick(layers, "fail_rate", _value(defaults.fail_rate, 0.0)),
        )

    def to_json(self) -> dict[str, Any]:
        """Return every layer, for the admin routes."""
        with self._lock:
            return {
                "defaults": self._defaults.to_json(),
                "models": {key: layer.to_json() for key, layer in self._models.items()},
                "versions": {key: layer.to_json() for key, layer in self._versions.items()},
                "deployments": {key: layer.to_json() for key, layer in self._deployments.items()},
            }

    def clear(self) -> None:
        """Remove every layer, so that the built-in defaults apply."""
        with self._lock:
            self._defaults = Settings()
            self._models.clear()
            self._versions.clear()
            self._deployments.clear()


def _pick(layers: list[Settings], name: str, default: Any) -> Any:
    for layer in reversed(layers):
        value = getattr(layer, name)
        if value is not None:
            return value
    return default


def _value(value: float | None, default: float) -> float:
    return default if value is None else value


def _check_seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None, got {value!r}.")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds, 0 or more, got {value!r}.")
    return float(value)


def _check_failure(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"failure must be a non-empty error message or None, got {value!r}.")
    return value


def _check_rate(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"fail_rate must be a number from 0 to 1 or None, got {value!r}.")
    if not 0 <= value <= 1:
        raise ValueError(f"fail_rate must be from 0 to 1, got {value!r}.")
    return float(value)
