"""The schema and loader of deployments.yaml, the desired state of Replicate deployments.

A deployments file looks like this::

    owner: acme              # optional, defaults to the API token's account
    defaults:                # optional, inherited by every deployment that omits a key
      hardware: gpu-t4
      min_instances: 0
      max_instances: 1
    deployments:             # required, may be an empty list
      - name: sdxl-images
        model: stability-ai/sdxl
        version: 39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b
        hardware: gpu-a40-large
        max_instances: 3

`load_config` and `parse_config` return a `DeploymentsFile` whose deployments have
the defaults merged in. Any problem raises one `ConfigError` that lists every problem
found, one line each, with the path of the field such as `deployments[2].max_instances`.
Whether the hardware SKUs, models and versions exist is checked later, against the API.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from replicate_tasks.errors import ConfigError

__all__ = [
    "ConfigProblem",
    "DeploymentSpec",
    "DeploymentsFile",
    "RolloutSpec",
    "load_config",
    "parse_config",
]

Location = tuple[int | str, ...]
Model = TypeVar("Model", bound=BaseModel)


# Schema


def _lowercase(value: str) -> str:
    return value.lower()


def _check_max_not_below_min(max_instances: int, info: ValidationInfo) -> int:
    """Raise unless max_instances is at least the min_instances validated before it.

    Models must declare min_instances before max_instances, because pydantic
    validates fields in order and only earlier ones are in `info.data`.
    """
    min_instances = info.data.get("min_instances")
    if min_instances is not None and max_instances < min_instances:
        raise PydanticCustomError(
            "max_below_min",
            "max_instances must be at least min_instances ({min_instances})",
            {"min_instances": min_instances},
        )
    return max_instances


# Limits of min_instances and max_instances are those of Replicate's create and
# update deployment endpoints. Replicate publishes no format for deployment names,
# so _DeploymentName is this project's rule.
_OwnerName = Annotated[str, Field(pattern=r"^[^/\s]+$")]
_DeploymentName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")]
_ModelName = Annotated[str, Field(pattern=r"^[^/:\s]+/[^/:\s]+$")]
_VersionId = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$"), AfterValidator(_lowercase)]
_HardwareSku = Annotated[str, Field(pattern=r"^\S+$")]
_MinInstances = Annotated[int, Field(ge=0, le=5)]
_MaxInstances = Annotated[int, Field(ge=0, le=20), AfterValidator(_check_max_not_below_min)]


class _StrictModel(BaseModel):
    """Base of the schema models: no type coercion, no unknown keys, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class RolloutSpec(_StrictModel):
    """The settings `apply` uses to roll out a new version of one deployment.

    Without a `rollout` section, a version change is a plain update that is
    applied but not proven ready. With one, the change runs the rollout flow:
    probes with `probe_input` must pass on the new version, and a failure
    restores the previous release.
    """

    strategy: Literal["in-place", "blue-green"] = "in-place"
    probe_input: dict[str, Any] | None = None
    probe_count: Annotated[int, Field(ge=1, le=20)] = 3
    ready_timeout: Annotated[float, Field(gt=0)] = 900.0
    bake_seconds: Annotated[float, Field(ge=0)] = 0.0
    compare: Literal["none", "exact", "shape"] = "none"
    allow_incompatible_schema: bool = False

    @model_validator(mode="after")
    def _blue_green_needs_probes(self) -> RolloutSpec:
        if self.strategy == "blue-green" and self.probe_input is None:
            raise PydanticCustomError(
                "probe_input_missing",
                "a blue-green rollout needs probe_input to prove the preview ready",
            )
        return self


class DeploymentSpec(_StrictModel):
    """The desired state of one deployment, with the file's defaults merged in.

    The same model validates each deployment entry of the file, so a new
    per-deployment key is declared here, with a default if it is optional.
    """

    name: _DeploymentName
    model: _ModelName
    version: _VersionId
    hardware: _HardwareSku
    min_instances: _MinInstances
    max_instances: _MaxInstances
    rollout: RolloutSpec | None = None


class DeploymentsFile(_StrictModel):
    """The desired state of the deployments of one account, as read from a file.

    `owner` is None when the file leaves the account to the API token. Every
    other field except `deployments` is copied from the key of the same name
    in the file, so a new top-level option is declared here and in _Document.
    """

    owner: _OwnerName | None = None
    deployments: tuple[DeploymentSpec, ...]


class _FileSection(_StrictModel):
    """A mapping of the file whose keys are all optional.

    A key written with no value reads as null in YAML. Such a key is an error rather
    than unset, because its value was more likely left out by mistake.
    """

    @field_validator("*", mode="before")
    @classmethod
    def _reject_null(cls, value: object) -> object:
        if value is None:
            raise PydanticCustomError("null_value", "the key has no value")
        return value


class _Defaults(_FileSection):
    """Values that each deployment inherits for the keys that it omits."""

    hardware: _HardwareSku | None = None
    min_instances: _MinInstances | None = None
    max_instances: _MaxInstances | None = None


class _Document(_FileSection):
    """The top level of a file, before the defaults are merged into each deployment."""

    owner: _OwnerName | None = None
    defaults: _Defaults = _Defaults()
    # Entries are validated one by one against DeploymentSpec, after the merge.
    deployments: list[Any]


# Error messages

# The form that each key expects, as the error messages state it.
_EXPECTED_FORM = {
    "owner": "an account name without '/', such as 'acme'",
    "deployments": "a list of deployments",
    "name": (
        "a name of lowercase letters, digits, '-', '_' and '.' that starts with a letter or digit"
    ),
    "model": "a model in owner/name form, such as 'stability-ai/sdxl'",
    "version": "a version id of 64 hexadecimal characters",
    "hardware": "a hardware SKU, such as 'gpu-t4'",
    "min_instances": "an integer from 0 to 5",
    "max_instances": "an integer from 0 to 20",
    "strategy": "'in-place' or 'blue-green'",
    "probe_input": "a mapping of model input names to values",
    "probe_count": "an integer from 1 to 20",
    "ready_timeout": "a positive number of seconds",
    "bake_seconds": "zero or more seconds",
    "compare": "'none', 'exact' or 'shape'",
    "allow_incompatible_schema": "true or false",
}

_MAX_REPR_LENGTH = 120  # long enough for a version id with its model name


def _short_repr(value: Any) -> str:
    """Return repr(value), cut to a length that fits on one line of a message."""
    text = repr(value)
    return text if len(text) <= _MAX_REPR_LENGTH else text[: _MAX_REPR_LENGTH - 3] + "..."


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a deployments file.

    `field` is the path of the offending key, such as `deployments[2].max_instances`,
    or None for a problem with the file as a whole. `value` is the value found
    there, and `message` the line that describes the problem, without the file name.
    """

    field: str | None
    value: Any
    message: str


def _format_path(location: Location) -> str | None:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif path:
            path += f".{part}"
        else:
            path = part
    return path or None


def _join_words(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


def _model_at(model: type[BaseModel], location: Location) -> type[BaseModel] | None:
    """Return the model that validates the mapping at `location` inside `model`, if any."""
    for part in location:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        nested = [
            candidate
            for candidate in (field.annotation, *get_args(field.annotation))
            if isinstance(candidate, type) and issubclass(candidate, BaseModel)
        ]
        if not nested:
            return None
        model = nested[0]
    return model


def _mapping_form(model: type[BaseModel]) -> str:
    return f"a mapping with the keys {_join_words(list(model.model_fields))}"


def _expected_form(error: ErrorDetails, model: type[BaseModel]) -> str:
    location = error["loc"]
    if error["type"] == "probe_input_missing":
        return (
            "a probe_input mapping, because a blue-green rollout proves the preview "
            "ready with probe predictions"
        )
    if location and location[-1] in _EXPECTED_FORM:
        return _EXPECTED_FORM[str(location[-1])]
    nested = _model_at(model, location)
    if nested is not None:
        return _mapping_form(nested)
    return error["msg"][0].lower() + error["msg"][1:]


def _hint(kind: str, key: int | str | None, value: Any) -> str:
    """Return advice for a few values that are likely mistakes, or an empty string.

    `kind` is the type of the pydantic error, and `key` the last part of its location.
    """
    if key == "owner":
        return "Give the account name alone, or remove the key to use the API token's account."
    if value is None:
        return "Give the key a value."
    if kind == "int_type" and isinstance(value, bool):
        return "Write a number, because YAML reads this word as true or false."
    if kind == "int_type" and isinstance(value, str) and value.strip().isdigit():
        return "Remove the quotes around the number."
    if kind == "string_type" and isinstance(value, bool | int | float):
        return "Put the value in quotes, so that YAML reads it as a string."
    if not isinstance(value, str):
        return ""
    if key == "name" and "/" in value:
        owner, _, name = value.rpartition("/")
        return f"Set 'owner: {owner}' at the top level of the file and 'name: {name}' here."
    if key == "model" and ":" in value:
        return "Give the version id under 'version', and only owner/name here."
    if key == "version" and ":" in value:
        return f"Give only the id after the colon: {value.rpartition(':')[2]!r}."
    return ""


def _problem_from_error(
    error: ErrorDetails,
    model: type[BaseModel],
    prefix: Location = (),
    *,
    defaultable: bool = False,
) -> ConfigProblem:
    """Describe one pydantic error of validating `model` at `prefix` in the file.

    `defaultable` is true when a missing key could have come from defaults.
    """
    location = (*prefix, *error["loc"])
    path = _format_path(location)
    value = error.get("input")
    kind = error["type"]

    if kind == "invalid_key":
        # pydantic appends the key itself to the location of a non-string key.
        path = _format_path(location[:-1])
        subject = f"{path}: invalid key" if path else "invalid key"
        message = (
            f"{subject} {_short_repr(value)}, expected a string. "
            "Put the key in quotes or rename it."
        )
        return ConfigProblem(path, value, message)

    if kind == "extra_forbidden":
        parent = _model_at(model, error["loc"][:-1])
        allowed = list(parent.model_fields) if parent is not None else []
        key = str(location[-1])
        matches = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
        advice = f"Did you mean {matches[0]!r}?" if matches else "Remove it, or fix its spelling."
        message = (
            f"{path}: unknown key (value {_short_repr(value)}), "
            f"expected one of {_join_words(allowed)}. {advice}"
        )
        return ConfigProblem(path, value, message)

    expected = _expected_form(error, model)

    if kind == "missing":
        if location == ("deployments",):
            advice = "Add it, as 'deployments: []' if there are none yet."
        elif defaultable:
            advice = "Add it to this deployment or to defaults."
        else:
            advice = "Add it."
        return ConfigProblem(path, None, f"{path}: missing, expected {expected}. {advice}")

    if kind == "max_below_min":
        context = error.get("ctx") or {}
        message = (
            f"{path}: invalid value {_short_repr(value)}, expected at least min_instances, "
            f"which is {context.get('min_instances')!r}. "
            "Raise max_instances or lower min_instances."
        )
        return ConfigProblem(path, value, message)

    subject = f"{path}: invalid value" if path else "invalid top level"
    message = f"{subject} {_short_repr(value)}, expected {expected}."
    hint = _hint(kind, location[-1] if location else None, value)
    if hint:
        message += " " + hint
    return ConfigProblem(path, value, message)


def _config_error(source: str, problems: list[ConfigProblem]) -> ConfigError:
    """Build the error that reports every problem, one line each, the first in its fields."""
    message = "\n".join(f"{source}: {problem.message}" for problem in problems)
    first = problems[0]
    return ConfigError(
        message, file=source, field=first.field, value=first.value, problems=problems
    )


# YAML


class _DuplicateKeyError(yaml.MarkedYAMLError):
    def __init__(self, key: Hashable, first: yaml.Mark, duplicate: yaml.Mark) -> None:
        super().__init__(problem=f"duplicate key {key!r}", problem_mark=duplicate)
        self.key = key
        self.first = first


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that raises on a key repeated within one mapping.

    PyYAML otherwise keeps the last value silently, which would hide a setting
    written twice. Keys that a merge (`<<`) brings in may still be overridden.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_marks: dict[Hashable, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # PyYAML's own check raises on an unhashable key.
            if key in first_marks:
                raise _DuplicateKeyError(key, first_marks[key], key_node.start_mark)
            first_marks[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _line_and_column(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _load_yaml(text: str, source: str) -> Any:
    """Parse YAML text, raising ConfigError with the line and column of a syntax error."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKeyError as exc:
        assert exc.problem_mark is not None
        message = (
            f"duplicate key {exc.key!r} at {_line_and_column(exc.problem_mark)}, "
            f"first set at {_line_and_column(exc.first)}. Remove one of them."
        )
        raise _config_error(source, [ConfigProblem(None, exc.key, message)]) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at {_line_and_column(mark)}" if mark is not None else ""
        message = f"invalid YAML{where}: {exc.problem or exc.context}"
        if exc.problem and exc.context:
            context_where = f" at {_line_and_column(exc.context_mark)}" if exc.context_mark else ""
            message += f" ({exc.context}{context_where})"
        message += ". Fix the YAML syntax there."
        raise _config_error(source, [ConfigProblem(None, None, message)]) from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        message = (
            f"invalid YAML at line {line}, column {column}: character {character!r} "
            "is not allowed. Remove it."
        )
        raise _config_error(source, [ConfigProblem(None, character, message)]) from exc
    except yaml.YAMLError as exc:
        message = f"invalid YAML: {exc}. Fix the YAML syntax."
        raise _config_error(source, [ConfigProblem(None, None, message)]) from exc


# Loading


def _validate(model: type[Model], data: Any) -> tuple[Model | None, list[ErrorDetails]]:
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, exc.errors()


def _usable_defaults(
    data: dict[Any, Any], failed: set[Location]
) -> tuple[dict[str, Any], set[str]]:
    """Split the defaults as written into valid values and the keys whose value is invalid."""
    defaultable = set(_Defaults.model_fields)
    written = data.get("defaults", {})
    if not isinstance(written, dict) or ("defaults",) in failed:
        return {}, defaultable
    valid = {key: value for key, value in written.items() if ("defaults", key) not in failed}
    return valid, {key for key in defaultable if ("defaults", key) in failed}


def _validate_deployments(
    data: dict[Any, Any], failed: set[Location], problems: list[ConfigProblem]
) -> list[DeploymentSpec]:
    """Merge the defaults into each deployment, validate it, and check that names are unique.

    Values of defaults that failed validation are left out of the merge, and the
    resulting missing keys are not reported again for each deployment.
    """
    entries = data.get("deployments")
    if not isinstance(entries, list):
        return []  # Already reported by _Document.
    defaults, invalid_defaults = _usable_defaults(data, failed)
    defaultable = set(_Defaults.model_fields)
    specs: list[DeploymentSpec] = []
    index_of_name: dict[str, int] = {}

    for index, entry in enumerate(entries):
        merged = {**defaults, **entry} if isinstance(entry, dict) else entry
        spec, errors = _validate(DeploymentSpec, merged)
        prefix = ("deployments", index)
        for error in errors:
            key = error["loc"][0] if error["loc"] else None
            if error["type"] == "missing" and key in invalid_defaults:
                continue
            defaultable_key = key in defaultable
            problems.append(
                _problem_from_error(error, DeploymentSpec, prefix, defaultable=defaultable_key)
            )
        if spec is not None:
            specs.append(spec)

        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or any(error["loc"] == ("name",) for error in errors):
            continue
        if name in index_of_name:
            first_path = _format_path(("deployments", index_of_name[name]))
            path = _format_path((*prefix, "name"))
            message = (
                f"{path}: duplicate name {name!r}, also used by {first_path}; "
                "expected a name unique in the file. Rename one of them."
            )
            problems.append(ConfigProblem(path, name, message))
        else:
            index_of_name[name] = index
    return specs


def parse_config(text: str, *, source: str = "<string>") -> DeploymentsFile:
    """Parse and validate the YAML text of a deployments file.

    `source` names the file in error messages. Raises ConfigError, listing every
    problem found, when the text is not valid YAML or does not match the schema.
    """
    data = _load_yaml(text, source)
    if data is None:
        message = (
            "the file is empty, expected a mapping with a 'deployments' key. "
            "Write 'deployments: []' if there are none yet."
        )
        raise _config_error(source, [ConfigProblem(None, None, message)])

    # Validation has two steps, so that a bad value under defaults is reported once,
    # at defaults, and not again in each deployment that inherits it. _Document checks
    # the top level and the defaults. Then each deployment is checked with the valid
    # defaults merged in. Problems of both steps are reported together.
    document, errors = _validate(_Document, data)
    problems = [_problem_from_error(error, _Document) for error in errors]
    failed = {error["loc"] for error in errors}
    specs = _validate_deployments(data, failed, problems) if isinstance(data, dict) else []
    if problems:
        raise _config_error(source, problems)

    assert document is not None
    options = {
        name: getattr(document, name)
        for name in DeploymentsFile.model_fields
        if name != "deployments"
    }
    return DeploymentsFile(**options, deployments=tuple(specs))


def load_config(path: str | os.PathLike[str]) -> DeploymentsFile:
    """Read, parse and validate a deployments file, which must be UTF-8 text.

    Raises ConfigError, listing every problem found, when the file cannot be read,
    is not valid YAML or does not match the schema.
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        message = "file not found. Check the path, or create the file with 'deployments: []' in it."
        raise _config_error(source, [ConfigProblem(None, None, message)]) from exc
    except UnicodeDecodeError as exc:
        message = (
            f"invalid UTF-8 at byte {exc.start}, expected a UTF-8 text file. "
            "Save the file as UTF-8."
        )
        raise _config_error(source, [ConfigProblem(None, None, message)]) from exc
    except OSError as exc:
        message = (
            f"the file cannot be read: {exc.strerror or exc}. Check the path and its permissions."
        )
        raise _config_error(source, [ConfigProblem(None, None, message)]) from exc
    return parse_config(text, source=source)
