"""Tests of the deployments.yaml schema and loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from replicate_tasks.config import (
    ConfigProblem,
    DeploymentsFile,
    DeploymentSpec,
    load_config,
    parse_config,
)
from replicate_tasks.errors import ConfigError

VERSION = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
REMOVE = object()


def entry(**changes: Any) -> dict[str, Any]:
    """Return a valid deployment entry with `changes` applied. REMOVE drops a key."""
    values: dict[str, Any] = {
        "name": "sdxl-images",
        "model": "stability-ai/sdxl",
        "version": VERSION,
        "hardware": "gpu-t4",
        "min_instances": 0,
        "max_instances": 1,
    }
    values.update(changes)
    return {key: value for key, value in values.items() if value is not REMOVE}


def write(tmp_path: Path, content: str | bytes | dict[str, Any]) -> Path:
    """Write a deployments file: text or bytes as given, a dict as YAML."""
    path = tmp_path / "deployments.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path


def load_error(tmp_path: Path, content: str | bytes | dict[str, Any]) -> ConfigError:
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


# Valid files


def test_load_config_merges_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
owner: acme
defaults:
  hardware: gpu-t4
  min_instances: 0
  max_instances: 1
deployments:
  - name: sdxl-images
    model: stability-ai/sdxl
    version: {VERSION}
    hardware: gpu-a40-large
    max_instances: 3
  - name: whisper.v3_small
    model: openai/whisper
    version: {VERSION.upper()}
    min_instances: 1
""",
    )

    config = load_config(path)

    assert isinstance(config, DeploymentsFile)
    assert config.owner == "acme"
    assert len(config.deployments) == 2
    first, second = config.deployments
    assert first.name == "sdxl-images"
    assert first.model == "stability-ai/sdxl"
    assert first.version == VERSION
    assert first.hardware == "gpu-a40-large"
    assert first.min_instances == 0
    assert first.max_instances == 3
    assert second.name == "whisper.v3_small"
    assert second.model == "openai/whisper"
    assert second.version == VERSION  # normalized to lowercase
    assert second.hardware == "gpu-t4"
    assert second.min_instances == 1
    assert second.max_instances == 1


def test_load_config_without_owner_or_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {"deployments": [entry()]}))

    assert config.owner is None
    assert config.deployments == (DeploymentSpec(**entry()),)


def test_load_config_empty_deployments(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "deployments: []\n"))

    assert config.owner is None
    assert config.deployments == ()


def test_load_config_accepts_path_string(tmp_path: Path) -> None:
    path = write(tmp_path, {"owner": "acme", "deployments": []})

    assert load_config(str(path)).owner == "acme"


def test_parse_config_yaml_merge_keys() -> None:
    # The anchor lives in a deployment entry, because unknown top-level keys are errors.
    text = f"""\
deployments:
  - &base
    name: first
    model: stability-ai/sdxl
    version: {VERSION}
    hardware: gpu-t4
    min_instances: 0
    max_instances: 1
  - <<: *base
    name: second
    max_instances: 4
"""

    config = parse_config(text)

    assert [spec.name for spec in config.deployments] == ["first", "second"]
    assert config.deployments[1].max_instances == 4
    assert config.deployments[1].hardware == "gpu-t4"


def test_example_deployments_file_is_valid() -> None:
    config = load_config(Path(__file__).parents[1] / "deployments.yaml")

    assert len(config.deployments) > 0


def test_deployment_spec_is_frozen() -> None:
    spec = DeploymentSpec(**entry())

    with pytest.raises(ValidationError):
        spec.max_instances = 2  # type: ignore[misc]


# One problem per file

# Each case: file content, expected `field`, expected `value`, and parts of the message
# besides the file name, field and value, which every case checks.
ERROR_CASES = [
    pytest.param(
        {"deployments": [], "ownr": "acme"},
        "ownr",
        "acme",
        ["unknown key", "expected one of owner, defaults and deployments", "Did you mean 'owner'?"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        {"defaults": {"hardwre": "gpu-t4"}, "deployments": []},
        "defaults.hardwre",
        "gpu-t4",
        ["unknown key", "Did you mean 'hardware'?"],
        id="unknown-defaults-key",
    ),
    pytest.param(
        {"defaults": {"model": "stability-ai/sdxl"}, "deployments": []},
        "defaults.model",
        "stability-ai/sdxl",
        ["expected one of hardware, min_instances and max_instances", "Remove it"],
        id="deployment-only-key-in-defaults",
    ),
    pytest.param(
        {"deployments": [entry(max_instance=3)]},
        "deployments[0].max_instance",
        3,
        ["unknown key", "Did you mean 'max_instances'?"],
        id="unknown-deployment-key",
    ),
    pytest.param(
        {"deployments": [entry(region="us-east")]},
        "deployments[0].region",
        "us-east",
        ["unknown key", "Remove it, or fix its spelling."],
        id="unknown-key-without-suggestion",
    ),
    pytest.param(
        {"deployments": [{**entry(), 1: "x"}]},
        "deployments[0]",
        1,
        ["invalid key", "expected a string"],
        id="non-string-key",
    ),
    pytest.param(
        {"owner": "acme/team", "deployments": []},
        "owner",
        "acme/team",
        ["an account name without '/'"],
        id="owner-with-slash",
    ),
    pytest.param(
        {"owner": "", "deployments": []},
        "owner",
        "",
        ["an account name without '/'"],
        id="owner-empty",
    ),
    pytest.param(
        "owner:\ndeployments: []\n",
        "owner",
        None,
        ["invalid value None", "remove the key to use the API token's account"],
        id="owner-null",
    ),
    pytest.param(
        {"owner": 42, "deployments": []},
        "owner",
        42,
        ["an account name without '/'"],
        id="owner-not-string",
    ),
    pytest.param(
        {"deployments": [entry(name="SDXL Images")]},
        "deployments[0].name",
        "SDXL Images",
        ["lowercase letters, digits, '-', '_' and '.' that starts with a letter or digit"],
        id="name-invalid-characters",
    ),
    pytest.param(
        {"deployments": [entry(name="-sdxl")]},
        "deployments[0].name",
        "-sdxl",
        ["starts with a letter or digit"],
        id="name-leading-dash",
    ),
    pytest.param(
        {"deployments": [entry(name="acme/sdxl-images")]},
        "deployments[0].name",
        "acme/sdxl-images",
        ["Set 'owner: acme' at the top level of the file and 'name: sdxl-images' here."],
        id="name-with-owner",
    ),
    pytest.param(
        {"deployments": [entry(name=123)]},
        "deployments[0].name",
        123,
        ["Put the value in quotes"],
        id="name-not-string",
    ),
    pytest.param(
        {"deployments": [entry(name=REMOVE)]},
        "deployments[0].name",
        None,
        ["missing", "Add it."],
        id="name-missing",
    ),
    pytest.param(
        {"deployments": [entry(), entry(name="other"), entry()]},
        "deployments[2].name",
        "sdxl-images",
        ["duplicate name", "also used by deployments[0]", "Rename one of them."],
        id="name-duplicate",
    ),
    pytest.param(
        {"deployments": [entry(model=REMOVE)]},
        "deployments[0].model",
        None,
        ["missing", "a model in owner/name form"],
        id="model-missing",
    ),
    pytest.param(
        {"deployments": [entry(model="sdxl")]},
        "deployments[0].model",
        "sdxl",
        ["a model in owner/name form, such as 'stability-ai/sdxl'"],
        id="model-without-owner",
    ),
    pytest.param(
        {"deployments": [entry(model=f"stability-ai/sdxl:{VERSION}")]},
        "deployments[0].model",
        f"stability-ai/sdxl:{VERSION}",
        ["Give the version id under 'version'"],
        id="model-with-version",
    ),
    pytest.param(
        {"deployments": [entry(version=REMOVE)]},
        "deployments[0].version",
        None,
        ["missing", "a version id of 64 hexadecimal characters"],
        id="version-missing",
    ),
    pytest.param(
        {"deployments": [entry(version=VERSION[:63])]},
        "deployments[0].version",
        VERSION[:63],
        ["a version id of 64 hexadecimal characters"],
        id="version-too-short",
    ),
    pytest.param(
        {"deployments": [entry(version="g" * 64)]},
        "deployments[0].version",
        "g" * 64,
        ["a version id of 64 hexadecimal characters"],
        id="version-not-hexadecimal",
    ),
    pytest.param(
        {"deployments": [entry(version=f"stability-ai/sdxl:{VERSION}")]},
        "deployments[0].version",
        f"stability-ai/sdxl:{VERSION}",
        [f"Give only the id after the colon: '{VERSION}'."],
        id="version-with-model",
    ),
    pytest.param(
        {"deployments": [entry(version=int("1" * 64))]},
        "deployments[0].version",
        int("1" * 64),
        ["Put the value in quotes"],
        id="version-read-as-integer",
    ),
    pytest.param(
        {"deployments": [entry(hardware=REMOVE)]},
        "deployments[0].hardware",
        None,
        ["missing", "a hardware SKU", "Add it to this deployment or to defaults."],
        id="hardware-missing",
    ),
    pytest.param(
        {"deployments": [entry(hardware="")]},
        "deployments[0].hardware",
        "",
        ["a hardware SKU, such as 'gpu-t4'"],
        id="hardware-empty",
    ),
    pytest.param(
        {"deployments": [entry(hardware="gpu t4")]},
        "deployments[0].hardware",
        "gpu t4",
        ["a hardware SKU"],
        id="hardware-with-space",
    ),
    pytest.param(
        {"defaults": {"hardware": ""}, "deployments": [entry(hardware=REMOVE)]},
        "defaults.hardware",
        "",
        ["a hardware SKU"],
        id="defaults-hardware-empty",
    ),
    pytest.param(
        {"deployments": [entry(min_instances=6)]},
        "deployments[0].min_instances",
        6,
        ["an integer from 0 to 5"],
        id="min-instances-above-range",
    ),
    pytest.param(
        {"deployments": [entry(min_instances=-1)]},
        "deployments[0].min_instances",
        -1,
        ["an integer from 0 to 5"],
        id="min-instances-negative",
    ),
    pytest.param(
        {"deployments": [entry(min_instances=True)]},
        "deployments[0].min_instances",
        True,
        ["an integer from 0 to 5", "YAML reads this word as true or false"],
        id="min-instances-boolean",
    ),
    pytest.param(
        {"deployments": [entry(max_instances="3")]},
        "deployments[0].max_instances",
        "3",
        ["an integer from 0 to 20", "Remove the quotes around the number."],
        id="max-instances-quoted",
    ),
    pytest.param(
        {"deployments": [entry(max_instances=1.5)]},
        "deployments[0].max_instances",
        1.5,
        ["an integer from 0 to 20"],
        id="max-instances-float",
    ),
    pytest.param(
        {"deployments": [entry(max_instances=21)]},
        "deployments[0].max_instances",
        21,
        ["an integer from 0 to 20"],
        id="max-instances-above-range",
    ),
    pytest.param(
        {"defaults": {"min_instances": 7}, "deployments": []},
        "defaults.min_instances",
        7,
        ["an integer from 0 to 5"],
        id="defaults-min-instances-above-range",
    ),
    pytest.param(
        {"deployments": [entry(max_instances=REMOVE)]},
        "deployments[0].max_instances",
        None,
        ["missing", "an integer from 0 to 20", "Add it to this deployment or to defaults."],
        id="max-instances-missing",
    ),
    pytest.param(
        {"deployments": [entry(min_instances=3, max_instances=1)]},
        "deployments[0].max_instances",
        1,
        ["expected at least min_instances, which is 3", "Raise max_instances or lower"],
        id="max-below-min",
    ),
    pytest.param(
        {"defaults": {"min_instances": 2}, "deployments": [entry(min_instances=REMOVE)]},
        "deployments[0].max_instances",
        1,
        ["expected at least min_instances, which is 2"],
        id="max-below-inherited-min",
    ),
    pytest.param(
        {"defaults": {"min_instances": 4, "max_instances": 2}, "deployments": []},
        "defaults.max_instances",
        2,
        ["expected at least min_instances, which is 4"],
        id="defaults-max-below-min",
    ),
    pytest.param(
        "deployments: [\n",
        None,
        None,
        ["invalid YAML at line 2, column 1", "Fix the YAML syntax there."],
        id="yaml-syntax",
    ),
    pytest.param(
        "deployments:\n  - name: a\n    max_instances: 1\n    max_instances: 2\n",
        None,
        "max_instances",
        ["duplicate key", "at line 4, column 5, first set at line 3, column 5"],
        id="yaml-duplicate-key",
    ),
    pytest.param(
        "deployments: [\x07]\n",
        None,
        "\x07",
        ["invalid YAML at line 1, column 15", "is not allowed"],
        id="yaml-control-character",
    ),
    pytest.param(
        b"deployments: []\nowner: \xff\n",
        None,
        None,
        ["invalid UTF-8 at byte 23", "Save the file as UTF-8."],
        id="not-utf8",
    ),
    pytest.param(
        "",
        None,
        None,
        ["the file is empty", "'deployments: []'"],
        id="empty-file",
    ),
    pytest.param(
        "# nothing yet\n",
        None,
        None,
        ["the file is empty"],
        id="comments-only",
    ),
    pytest.param(
        "- sdxl-images\n- whisper\n",
        None,
        ["sdxl-images", "whisper"],
        ["invalid top level", "a mapping with the keys owner, defaults and deployments"],
        id="top-level-list",
    ),
    pytest.param(
        "sdxl-images\n",
        None,
        "sdxl-images",
        ["invalid top level", "a mapping with the keys"],
        id="top-level-scalar",
    ),
    pytest.param(
        {"owner": "acme"},
        "deployments",
        None,
        ["missing", "a list of deployments", "'deployments: []'"],
        id="deployments-missing",
    ),
    pytest.param(
        {"deployments": {"sdxl-images": "stability-ai/sdxl"}},
        "deployments",
        {"sdxl-images": "stability-ai/sdxl"},
        ["a list of deployments"],
        id="deployments-not-list",
    ),
    pytest.param(
        "deployments:\n",
        "deployments",
        None,
        ["invalid value None", "a list of deployments", "Give the key a value."],
        id="deployments-null",
    ),
    pytest.param(
        {"deployments": ["sdxl-images"]},
        "deployments[0]",
        "sdxl-images",
        [
            "a mapping with the keys name, model, version, hardware, min_instances, "
            "max_instances and rollout"
        ],
        id="deployment-not-mapping",
    ),
    pytest.param(
        {"defaults": ["gpu-t4"], "deployments": []},
        "defaults",
        ["gpu-t4"],
        ["a mapping with the keys hardware, min_instances and max_instances"],
        id="defaults-not-mapping",
    ),
]


@pytest.mark.parametrize(("content", "field", "value", "fragments"), ERROR_CASES)
def test_load_config_error(
    tmp_path: Path,
    content: str | bytes | dict[str, Any],
    field: str | None,
    value: Any,
    fragments: list[str],
) -> None:
    error = load_error(tmp_path, content)
    message = str(error)

    assert isinstance(error, ValueError)
    assert error.file == str(tmp_path / "deployments.yaml")
    assert error.field == field
    assert error.value == value
    assert type(error.value) is type(value)
    assert len(error.problems) == 1
    assert message.startswith(f"{error.file}: ")
    if field is not None:
        assert f"{field}: " in message
    if value is not None:
        assert repr(value) in message
    for fragment in fragments:
        assert fragment in message


# Messages


def test_message_for_out_of_range_value() -> None:
    text = yaml.safe_dump({"deployments": [entry(), entry(name="b", max_instances=25)]})

    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="prod.yaml")

    assert str(caught.value) == (
        "prod.yaml: deployments[1].max_instances: invalid value 25, "
        "expected an integer from 0 to 20."
    )


def test_message_for_typo_in_key() -> None:
    text = yaml.safe_dump({"deployments": [entry(max_instance=3)]})

    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="prod.yaml")

    assert str(caught.value) == (
        "prod.yaml: deployments[0].max_instance: unknown key (value 3), expected one of "
        "name, model, version, hardware, min_instances, max_instances and rollout. "
        "Did you mean 'max_instances'?"
    )


def test_message_for_version_with_model() -> None:
    text = yaml.safe_dump({"deployments": [entry(version=f"stability-ai/sdxl:{VERSION}")]})

    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="prod.yaml")

    assert str(caught.value) == (
        f"prod.yaml: deployments[0].version: invalid value 'stability-ai/sdxl:{VERSION}', "
        f"expected a version id of 64 hexadecimal characters. "
        f"Give only the id after the colon: '{VERSION}'."
    )


def test_message_for_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.file == str(path)
    assert caught.value.field is None
    assert caught.value.value is None
    assert str(caught.value) == (
        f"{path}: file not found. Check the path, or create the file with 'deployments: []' in it."
    )


def test_message_for_yaml_syntax() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("deployments:\n  - name: 'unclosed\n")

    assert str(caught.value) == (
        "<string>: invalid YAML at line 3, column 1: found unexpected end of stream "
        "(while scanning a quoted scalar at line 2, column 11). Fix the YAML syntax there."
    )


def test_message_cuts_long_value() -> None:
    hardware = "gpu t4 " * 50
    text = yaml.safe_dump({"deployments": [entry(hardware=hardware)]})

    with pytest.raises(ConfigError) as caught:
        parse_config(text)

    truncated = repr(hardware)[:117] + "..."
    assert caught.value.value == hardware
    assert f"invalid value {truncated}, expected a hardware SKU" in str(caught.value)


def test_load_config_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)

    assert caught.value.file == str(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}: the file cannot be read: ")


# Several problems


def test_all_problems_in_one_error() -> None:
    text = yaml.safe_dump(
        {
            "owner": "acme/team",
            "deployments": [
                entry(max_instance=3),
                entry(name="other", version="abc", min_instances=9),
                "not-a-mapping",
            ],
        }
    )

    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="prod.yaml")

    error = caught.value
    lines = str(error).splitlines()
    fields = [problem.field for problem in error.problems]
    assert fields == [
        "owner",
        "deployments[0].max_instance",
        "deployments[1].version",
        "deployments[1].min_instances",
        "deployments[2]",
    ]
    assert len(lines) == len(fields)
    assert all(line.startswith("prod.yaml: ") for line in lines)
    assert [line.removeprefix("prod.yaml: ") for line in lines] == [
        problem.message for problem in error.problems
    ]
    assert all(isinstance(problem, ConfigProblem) for problem in error.problems)
    assert error.field == "owner"
    assert error.value == "acme/team"


def test_invalid_default_reported_once() -> None:
    text = yaml.safe_dump(
        {
            "defaults": {"hardware": "", "max_instances": 2},
            "deployments": [entry(hardware=REMOVE), entry(name="b", hardware=REMOVE)],
        }
    )

    with pytest.raises(ConfigError) as caught:
        parse_config(text)

    assert [problem.field for problem in caught.value.problems] == ["defaults.hardware"]


def test_duplicate_names_with_other_problems() -> None:
    text = yaml.safe_dump(
        {"deployments": [entry(), entry(max_instances=99), entry(hardware=REMOVE)]}
    )

    with pytest.raises(ConfigError) as caught:
        parse_config(text)

    assert [problem.field for problem in caught.value.problems] == [
        "deployments[1].max_instances",
        "deployments[1].name",
        "deployments[2].hardware",
        "deployments[2].name",
    ]


def test_parse_config_default_source() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("deployments: 3\n")

    assert caught.value.file == "<string>"
    assert str(caught.value).startswith("<string>: deployments: invalid value 3")
