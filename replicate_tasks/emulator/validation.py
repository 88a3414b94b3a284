"""Checks of deployment request bodies, with errors that name the field and value.

Limits come from the request schemas in Replicate's openapi.json:
`min_instances` is an integer from 0 to 5 and `max_instances` from 0 to 20, for
both create and update. Every field of a create is required. An update accepts
only `version`, `hardware`, `min_instances` and `max_instances`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .catalog import VERSION_ID_PATTERN, Catalog
from .problems import ProblemError

_Value = TypeVar("_Value")

MIN_INSTANCES_LIMIT = 5
MAX_INSTANCES_LIMIT = 20

CREATE_FIELDS = (
    "name",
    "model",
    "version",
    "hardware",
    "min_instances",
    "max_instances",
)
UPDATE_FIELDS = ("version", "hardware", "min_instances", "max_instances")

_MODEL_PATTERN = re.compile(r"^[^/\s]+/[^/\s]+$")
_NAME_PATTERN = re.compile(r"^[^/\s]+$")


@dataclass(frozen=True)
class DeploymentCreate:
    """A valid `POST /v1/deployments` body."""

    name: str
    model: str
    version: str
    hardware: str
    min_instances: int
    max_instances: int


@dataclass(frozen=True)
class DeploymentUpdate:
    """A valid `PATCH /v1/deployments/{owner}/{name}` body; None means unchanged."""

    version: str | None = None
    hardware: str | None = None
    min_instances: int | None = None
    max_instances: int | None = None


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Decode a request body that must be a JSON object.

    Raises `ProblemError` 400 for malformed JSON and 422 for JSON that is not
    an object.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProblemError(
            400,
            f"The request body is not valid JSON ({error}). Send a JSON object "
            "with Content-Type: application/json.",
        ) from error

    if not isinstance(document, dict):
        raise ProblemError(
            422,
            f"The request body must be a JSON object, got {show(document)}.",
        )
    return document


def validate_create(body: Mapping[str, Any], catalog: Catalog) -> DeploymentCreate:
    """Check a create body and return it typed, or raise `ProblemError` 422.

    The detail lists every problem found, each naming the field and the value.
    """
    problems = _unknown_field_problems(body, CREATE_FIELDS, "A create")
    missing = [field for field in CREATE_FIELDS if field not in body]
    if missing:
        problems.append(
            f"Missing required fields: {', '.join(missing)}. A create needs all "
            f"of {', '.join(CREATE_FIELDS)}."
        )

    name = _check_name(body, problems)
    model = _check_model(body, catalog, problems)
    version = _check_version_format(body, problems)
    hardware = _check_hardware(body, catalog, problems)
    min_instances = _check_count(body, "min_instances", MIN_INSTANCES_LIMIT, problems)
    max_instances = _check_count(body, "max_instances", MAX_INSTANCES_LIMIT, problems)

    if model is not None and version is not None:
        check_version_of_model(model, version, catalog, problems)
    if min_instances is not None and max_instances is not None:
        check_instance_range(min_instances, max_instances, problems)

    _raise_if_any(problems)
    return DeploymentCreate(
        name=_checked(name),
        model=_checked(model),
        version=_checked(version),
        hardware=_checked(hardware),
        min_instances=_checked(min_instances),
        max_instances=_checked(max_instances),
    )


def validate_update(body: Mapping[str, Any], catalog: Catalog) -> DeploymentUpdate:
    """Check the fields of an update body one by one, or raise `ProblemError` 422.

    Checks that need the deployment, such as whether the version belongs to its
    model, happen in the state, which holds the current release.
    """
    problems: list[str] = []
    for field in ("model", "name"):
        if field in body:
            problems.append(
                f"Field {field} cannot be changed by an update, got "
                f"{show(body[field])}. Create a new deployment instead."
            )
    problems += _unknown_field_problems(body, UPDATE_FIELDS, "An update", ignore=("model", "name"))

    version = _check_version_format(body, problems)
    hardware = _check_hardware(body, catalog, problems)
    min_instances = _check_count(body, "min_instances", MIN_INSTANCES_LIMIT, problems)
    max_instances = _check_count(body, "max_instances", MAX_INSTANCES_LIMIT, problems)

    _raise_if_any(problems)
    return DeploymentUpdate(
        version=version,
        hardware=hardware,
        min_instances=min_instances,
        max_instances=max_instances,
    )


def check_version_of_model(model: str, version: str, catalog: Catalog, problems: list[str]) -> None:
    """Append a problem unless `version` is a version of `model`."""
    owner, name = model.split("/", 1)
    if catalog.get_version(owner, name, version) is None:
        problems.append(
            f"Invalid version {show(version)}: it is not a version of model "
            f"{model}. List the versions with GET /v1/models/{model}/versions."
        )


def check_instance_range(min_instances: int, max_instances: int, problems: list[str]) -> None:
    """Append a problem when `min_instances` exceeds `max_instances`."""
    # NOTE: openapi.json does not state min_instances <= max_instances. The
    # emulator enforces it, as Replicate's Terraform provider does, because a
    # minimum above the maximum cannot be served.
    if min_instances > max_instances:
        problems.append(
            f"Invalid min_instances {min_instances}: it is greater than "
            f"max_instances {max_instances}. Set min_instances to at most "
            "max_instances."
        )


def show(value: Any) -> str:
    """Render a request value as JSON, so that strings, true and null read exactly."""
    text = json.dumps(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text


def _check_name(body: Mapping[str, Any], problems: list[str]) -> str | None:
    if "name" not in body:
        return None
    value = body["name"]
    # NOTE: Replicate publishes no format for deployment names. The emulator
    # rejects only names that cannot appear as one URL path segment.
    if not isinstance(value, str) or not _NAME_PATTERN.match(value):
        problems.append(
            f"Invalid name {show(value)}: expected a non-empty string without "
            "'/' or whitespace, such as \"my-app-image-generator\"."
        )
        return None
    return value


def _check_model(body: Mapping[str, Any], catalog: Catalog, problems: list[str]) -> str | None:
    if "model" not in body:
        return None
    value = body["model"]
    if not isinstance(value, str) or not _MODEL_PATTERN.match(value):
        problems.append(
            f'Invalid model {show(value)}: expected "owner/name", such as "stability-ai/sdxl".'
        )
        return None

    owner, name = value.split("/", 1)
    if catalog.get_model(owner, name) is None:
        problems.append(
            f"Invalid model {show(value)}: the model was not found. Check the owner "
            "and name, or add the model to the emulator with Emulator.add_model."
        )
        return None
    return value


def _check_version_format(body: Mapping[str, Any], problems: list[str]) -> str | None:
    if "version" not in body:
        return None
    value = body["version"]
    if not isinstance(value, str) or not VERSION_ID_PATTERN.match(value):
        problems.append(
            f"Invalid version {show(value)}: expected a version id of 64 "
            "lowercase hexadecimal characters."
        )
        return None
    return value


def _check_hardware(body: Mapping[str, Any], catalog: Catalog, problems: list[str]) -> str | None:
    if "hardware" not in body:
        return None
    value = body["hardware"]
    skus = catalog.hardware_skus()
    if not isinstance(value, str) or value not in skus:
        problems.append(
            f"Invalid hardware {show(value)}: expected one of "
            f"{', '.join(sorted(skus))}. GET /v1/hardware lists them."
        )
        return None
    return value


def _check_count(
    body: Mapping[str, Any], field: str, maximum: int, problems: list[str]
) -> int | None:
    if field not in body:
        return None
    value = body[field]
    # bool is a subclass of int in Python, but JSON true is not an integer.
    is_integer = isinstance(value, int) and not isinstance(value, bool)
    if not is_integer or not 0 <= value <= maximum:
        problems.append(f"Invalid {field} {show(value)}: expected an integer from 0 to {maximum}.")
        return None
    return int(value)


def _unknown_field_problems(
    body: Mapping[str, Any],
    allowed: tuple[str, ...],
    operation: str,
    ignore: tuple[str, ...] = (),
) -> list[str]:
    unknown = [field for field in body if field not in allowed + ignore]
    return [
        f"Unknown field {field} with value {show(body[field])}. {operation} "
        f"accepts only {', '.join(allowed)}."
        for field in unknown
    ]


def _checked(value: _Value | None) -> _Value:
    # A field is None only when a problem was recorded for it, and then
    # _raise_if_any has raised already.
    if value is None:
        raise AssertionError("A checked field is None although no problem was recorded.")
    return value


def _raise_if_any(problems: list[str]) -> None:
    if problems:
        raise ProblemError(422, " ".join(problems), title="Unprocessable Entity")
