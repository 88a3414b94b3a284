"""Deterministic prediction outputs, derived from the version's Output schema and the input.

The same model, version and input always give the same output, so tests can
assert on it. The output follows the version's `components.schemas.Output`:

- a string with `format: uri` is a file, a small PNG that the emulator serves
  under `/_emulator/files/{prediction_id}/...`;
- an array of such strings contains `num_outputs` files (1 when the input has no
  valid `num_outputs`);
- an array of strings marked `x-cog-array-type: iterator`, as language models
  declare, is a list of tokens that grows while the prediction processes;
- any other string, or an untyped output, is a sentence naming the input;
- objects, numbers and booleans are filled in from the same digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_FILE_OUTPUTS = 4
PNG_SIZE = 16


@dataclass(frozen=True)
class FileRef:
    """A file in an output, served as `name` and drawn from `seed`."""

    name: str
    seed: bytes


@dataclass(frozen=True)
class OutputPlan:
    """The final output of a prediction, with files still unresolved.

    `value` is JSON-like data in which `FileRef` marks each file. `tokens` is
    set when the output is a token list that grows while processing.
    """

    value: Any
    tokens: tuple[str, ...] | None = None

    def render(self, file_url: Callable[[FileRef], str], fraction: float = 1.0) -> Any:
        """Return the output with each file replaced by `file_url(file)`.

        A token list is cut to the share `fraction` (0 to 1) of its tokens, to
        show the output of a prediction that is still processing.
        """
        if self.tokens is not None:
            count = int(len(self.tokens) * min(max(fraction, 0.0), 1.0))
            return list(self.tokens[:count])
        return _resolve(self.value, file_url)

    def files(self) -> list[FileRef]:
        """Return the files of the output, in order."""
        found: list[FileRef] = []
        _collect_files(self.value, found)
        return found


def plan_output(
    output_schema: Mapping[str, Any] | None, input: Mapping[str, Any], identity: str
) -> OutputPlan:
    """Plan the output of a prediction of `identity` (model and version) with `input`."""
    canonical = json.dumps({"identity": identity, "input": input}, sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode()).digest()
    generator = _Generator(digest, input)
    schema = dict(output_schema or {})

    if _is_token_list(schema):
        return OutputPlan(value=None, tokens=generator.tokens())
    return OutputPlan(value=generator.value(schema))


def png_bytes(seed: bytes) -> bytes:
    """Encode a small solid-colour RGB PNG whose colour comes from `seed`."""
    red, green, blue = hashlib.sha256(seed).digest()[:3]
    row = b"\x00" + bytes((red, green, blue)) * PNG_SIZE
    header = struct.pack(">IIBBBBB", PNG_SIZE, PNG_SIZE, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(row * PNG_SIZE))
        + _png_chunk(b"IEND", b"")
    )


def png_data_uri(seed: bytes) -> str:
    """Return the PNG for `seed` as a `data:image/png;base64,...` URI."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(seed)).decode()


class _Generator:
    def __init__(self, digest: bytes, input: Mapping[str, Any]) -> None:
        self.digest = digest
        self.input = input
        self.file_count = 0

    def text(self) -> str:
        subject = _subject(self.input)
        label = self.digest.hex()[:8]
        if subject:
            return f"Emulated output {label} for: {subject}"
        return f"Emulated output {label}"

    def tokens(self) -> tuple[str, ...]:
        words = self.text().split(" ")
        return tuple(word if index == 0 else " " + word for index, word in enumerate(words))

    def file(self) -> FileRef:
        name = "output.png" if self.file_count == 0 else f"output-{self.file_count}.png"
        seed = self.digest + self.file_count.to_bytes(2, "big")
        self.file_count += 1
        return FileRef(name=name, seed=seed)

    def value(self, schema: Mapping[str, Any]) -> Any:
        kind = schema.get("type")
        if kind == "string" and schema.get("format") == "uri":
            return self.file()
        if kind == "array":
            items = schema.get("items")
            items = items if isinstance(items, Mapping) else {}
            if items.get("type") == "string" and items.get("format") == "uri":
                return [self.file() for _ in range(_file_count(self.input))]
            return [self.value(items)]
        if kind == "object":
            return self.object(schema)
        if kind == "integer":
            return int.from_bytes(self.digest[:2], "big") % 1000
        if kind == "number":
            return int.from_bytes(self.digest[2:4], "big") / 1000
        if kind == "boolean":
            return self.digest[4] % 2 == 0
        return self.text()

    def object(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        required = set(schema.get("required") or ())
        document: dict[str, Any] = {}
        for name, property_schema in properties.items():
            if not isinstance(property_schema, Mapping):
                continue
            if "type" not in property_schema and name not in required:
                continue
            document[name] = self.value(property_schema)
        return document


def _is_token_list(schema: Mapping[str, Any]) -> bool:
    items = schema.get("items")
    return (
        schema.get("type") == "array"
        and schema.get("x-cog-array-type") == "iterator"
        and isinstance(items, Mapping)
        and items.get("type") == "string"
        and items.get("format") != "uri"
    )


def _file_count(input: Mapping[str, Any]) -> int:
    count = input.get("num_outputs")
    if isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= MAX_FILE_OUTPUTS:
        return count
    return 1


def _subject(input: Mapping[str, Any]) -> str:
    """Return the input text that the output echoes: prompt or text first, else any string."""
    for key in ("prompt", "text"):
        value = input.get(key)
        if isinstance(value, str) and value:
            return _shorten(value)
    for key in sorted(input):
        value = input[key]
        if isinstance(value, str) and value:
            return _shorten(value)
    return ""


def _shorten(text: str) -> str:
    single_line = " ".join(text.split())
    return single_line if len(single_line) <= 60 else single_line[:57] + "..."


def _resolve(value: Any, file_url: Callable[[FileRef], str]) -> Any:
    if isinstance(value, FileRef):
        return file_url(value)
    if isinstance(value, list):
        return [_resolve(item, file_url) for item in value]
    if isinstance(value, dict):
        return {key: _resolve(item, file_url) for key, item in value.items()}
    return value


def _collect_files(value: Any, found: list[FileRef]) -> None:
    if isinstance(value, FileRef):
        found.append(value)
    elif isinstance(value, list):
        for item in value:
            _collect_files(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_files(item, found)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    checksum = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)
