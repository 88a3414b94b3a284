"""Models, versions and hardware of the emulator, loaded from catalog.json.

The bundled catalog lists real public Replicate models with real version ids, so
that flows written against the emulator run unchanged against the real API. Tests
add their own models and versions with `Catalog.add_model` and
`Catalog.add_version`.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from .clock import format_timestamp

_PACKAGE = __name__.rpartition(".")[0]

VERSION_ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")

DEFAULT_COG_VERSION = "0.9.0"

_MODEL_KEYS = {
    "owner",
    "name",
    "description",
    "visibility",
    "github_url",
    "paper_url",
    "license_url",
    "run_count",
    "cover_image_url",
    "is_official",
    "openapi_schema",
    "versions",
    "notes",
}
_VERSION_KEYS = {"id", "created_at", "cog_version", "openapi_schema", "notes"}


@dataclass(frozen=True)
class Hardware:
    """A hardware SKU that deployments can run on."""

    sku: str
    name: str

    def to_json(self) -> dict[str, Any]:
        """Return the API shape: `{"sku", "name"}`."""
        return {"sku": self.sku, "name": self.name}


@dataclass(frozen=True)
class ModelVersion:
    """One version of a model: an immutable build with its own OpenAPI schema."""

    id: str
    created_at: datetime
    cog_version: str
    openapi_schema: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        """Return the API shape: `{"id", "created_at", "cog_version", "openapi_schema"}`."""
        return {
            "id": self.id,
            "created_at": format_timestamp(self.created_at),
            "cog_version": self.cog_version,
            "openapi_schema": copy.deepcopy(dict(self.openapi_schema)),
        }

    def sort_key(self) -> str:
        """Return a string that sorts versions by creation time, then id."""
        return f"{format_timestamp(self.created_at)}|{self.id}"


@dataclass(frozen=True)
class Model:
    """A public model and its versions, newest first.

    `openapi_schema` is the model's own schema, which predictions of an official
    model without a listed version are checked against.
    """

    owner: str
    name: str
    description: str | None
    visibility: str
    github_url: str | None
    paper_url: str | None
    license_url: str | None
    run_count: int
    cover_image_url: str | None
    is_official: bool
    versions: tuple[ModelVersion, ...]
    openapi_schema: Mapping[str, Any]

    @property
    def ref(self) -> str:
        """The `owner/name` form used in request bodies."""
        return f"{self.owner}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        """Return the API shape of `GET /v1/models/{owner}/{name}`."""
        latest = self.versions[0].to_json() if self.versions else None
        return {
            "url": f"https://replicate.com/{self.owner}/{self.name}",
            "owner": self.owner,
            "name": self.name,
            "description": self.description,
            "visibility": self.visibility,
            "github_url": self.github_url,
            "paper_url": self.paper_url,
            "license_url": self.license_url,
            "run_count": self.run_count,
            "cover_image_url": self.cover_image_url,
            "default_example": None,
            "latest_version": latest,
            "is_official": self.is_official,
        }


class Catalog:
    """The models and hardware of one emulator. Safe to use from several threads."""

    def __init__(self, models: Iterable[Model], hardware: Iterable[Hardware]) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, Model] = {}
        self._hardware = tuple(hardware)
        for model in models:
            self._insert(model)

    @classmethod
    def load_default(cls) -> Catalog:
        """Load the catalog bundled with the package."""
        text = resources.files(_PACKAGE).joinpath("catalog.json").read_text()
        data = json.loads(text)
        hardware = [Hardware(sku=item["sku"], name=item["name"]) for item in data["hardware"]]
        models = [parse_model(spec) for spec in data["models"]]
        return cls(models, hardware)

    @property
    def hardware(self) -> tuple[Hardware, ...]:
        """The hardware list, in the order `GET /v1/hardware` returns it."""
        return self._hardware

    def hardware_skus(self) -> set[str]:
        """Return the set of known hardware SKUs."""
        return {item.sku for item in self._hardware}

    def get_model(self, owner: str, name: str) -> Model | None:
        """Return the model `owner/name`, or None when it is unknown."""
        with self._lock:
            return self._models.get(f"{owner}/{name}")

    def get_version(self, owner: str, name: str, version_id: str) -> ModelVersion | None:
        """Return a version of the model `owner/name`, or None when either is unknown."""
        model = self.get_model(owner, name)
        if model is None:
            return None
        for version in model.versions:
            if version.id == version_id:
                return version
        return None

    def find_version(self, version_id: str) -> tuple[Model, ModelVersion] | None:
        """Return the model and version with this id, or None when no model has it."""
        with self._lock:
            models = list(self._models.values())
        for model in models:
            for version in model.versions:
                if version.id == version_id:
                    return model, version
        return None

    def models(self) -> list[Model]:
        """Return every model, in no particular order."""
        with self._lock:
            return list(self._models.values())

    def add_model(
        self, spec: Mapping[str, Any], *, default_created_at: datetime | None = None
    ) -> Model:
        """Add a model given in the catalog.json form and return it.

        Raises ValueError when the spec is invalid, when the model exists, or
        when one of its version ids already belongs to a model.
        """
        model = parse_model(spec, default_created_at=default_created_at)
        with self._lock:
            if model.ref in self._models:
                raise ValueError(
                    f"Model {model.ref} is already in the catalog. Use add_version "
                    "to add a version to it."
                )
            self._insert(model)
        return model

    def add_version(self, model_ref: str, version: ModelVersion) -> Model:
        """Add `version` to the model `owner/name` and return the updated model."""
        with self._lock:
            model = self._models.get(model_ref)
            if model is None:
                raise ValueError(
                    f"Model {model_ref!r} is not in the catalog. Add it with add_model first."
                )
            self._check_version_ids_unused([version])
            versions = sorted([*model.versions, version], key=ModelVersion.sort_key, reverse=True)
            updated = _replace_versions(model, tuple(versions))
            self._models[model_ref] = updated
            return updated

    def _insert(self, model: Model) -> None:
        self._check_version_ids_unused(model.versions)
        self._models[model.ref] = model

    def _check_version_ids_unused(self, versions: Iterable[ModelVersion]) -> None:
        for version in versions:
            for other in self._models.values():
                if any(known.id == version.id for known in other.versions):
                    raise ValueError(
                        f"Version {version.id} already belongs to {other.ref}. "
                        "Each version id belongs to exactly one model."
                    )


def parse_model(spec: Mapping[str, Any], *, default_created_at: datetime | None = None) -> Model:
    """Build a `Model` from its catalog.json form, raising ValueError when invalid.

    A version without `openapi_schema` gets the model's `openapi_schema`, or a
    minimal schema with empty `Input` and `Output`. A version without
    `created_at` gets `default_created_at`.
    """
    _reject_unknown_keys(spec, _MODEL_KEYS, "model")
    owner = _required_text(spec, "owner", "model")
    name = _required_text(spec, "name", "model")
    ref = f"{owner}/{name}"
    if "/" in owner or "/" in name:
        raise ValueError(f"Model owner and name must not contain '/', got {ref!r}.")

    model_schema = spec.get("openapi_schema", minimal_openapi_schema())
    version_specs = spec.get("versions", [])
    if not isinstance(version_specs, list):
        raise ValueError(f"versions of model {ref} must be a list, got {version_specs!r}.")

    versions = [
        parse_version(item, ref, model_schema, default_created_at) for item in version_specs
    ]
    versions.sort(key=ModelVersion.sort_key, reverse=True)
    ids = [version.id for version in versions]
    if len(set(ids)) != len(ids):
        raise ValueError(f"Model {ref} lists the same version id twice.")

    return Model(
        owner=owner,
        name=name,
        description=spec.get("description"),
        visibility=spec.get("visibility", "public"),
        github_url=spec.get("github_url"),
        paper_url=spec.get("paper_url"),
        license_url=spec.get("license_url"),
        run_count=int(spec.get("run_count", 0)),
        cover_image_url=spec.get("cover_image_url"),
        is_official=bool(spec.get("is_official", False)),
        versions=tuple(versions),
        openapi_schema=copy.deepcopy(dict(model_schema)),
    )


def parse_version(
    spec: Mapping[str, Any],
    model_ref: str,
    default_schema: Mapping[str, Any],
    default_created_at: datetime | None = None,
) -> ModelVersion:
    """Build a `ModelVersion` from its catalog.json form, raising ValueError when invalid."""
    _reject_unknown_keys(spec, _VERSION_KEYS, f"version of {model_ref}")
    version_id = _required_text(spec, "id", f"version of {model_ref}")
    if not VERSION_ID_PATTERN.match(version_id):
        raise ValueError(
            f"Version id {version_id!r} of {model_ref} is invalid: expected 64 "
            "lowercase hexadecimal characters."
        )

    created_at = _parse_created_at(spec.get("created_at"), default_created_at)
    if created_at is None:
        raise ValueError(
            f"Version {version_id} of {model_ref} needs created_at, an ISO 8601 "
            "timestamp such as 2023-11-06T23:13:07.906314Z."
        )

    return ModelVersion(
        id=version_id,
        created_at=created_at,
        cog_version=str(spec.get("cog_version", DEFAULT_COG_VERSION)),
        openapi_schema=copy.deepcopy(dict(spec.get("openapi_schema", default_schema))),
    )


def minimal_openapi_schema() -> dict[str, Any]:
    """Return an OpenAPI document with an empty `Input` and an untyped `Output`."""
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},
        "components": {
            "schemas": {
                "Input": {"type": "object", "title": "Input", "properties": {}},
                "Output": {"title": "Output"},
            }
        },
    }


def _replace_versions(model: Model, versions: tuple[ModelVersion, ...]) -> Model:
    return Model(
        owner=model.owner,
        name=model.name,
        description=model.description,
        visibility=model.visibility,
        github_url=model.github_url,
        paper_url=model.paper_url,
        license_url=model.license_url,
        run_count=model.run_count,
        cover_image_url=model.cover_image_url,
        is_official=model.is_official,
        versions=versions,
        openapi_schema=model.openapi_schema,
    )


def _parse_created_at(value: Any, default: datetime | None) -> datetime | None:
    if value is None:
        return default
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as error:
            raise ValueError(f"created_at {value!r} is not an ISO 8601 timestamp.") from error
    else:
        raise ValueError(f"created_at must be a string or datetime, got {value!r}.")

    if moment.tzinfo is None:
        raise ValueError(f"created_at {value!r} must include a timezone, such as Z.")
    return moment


def _required_text(spec: Mapping[str, Any], key: str, subject: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"The {subject} needs {key} as a non-empty string, got {value!r}.")
    return value


def _reject_unknown_keys(spec: Mapping[str, Any], allowed: set[str], subject: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(
            f"Unknown keys in the {subject}: {', '.join(unknown)}. "
            f"Allowed keys: {', '.join(sorted(allowed))}."
        )
