"""File outputs of predictions, which arrive as HTTPS URLs or data URIs."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx

__all__ = [
    "FileOutput",
    "decode_data_uri",
    "is_data_uri",
    "is_file_reference",
    "wrap_file_outputs",
]

DEFAULT_MAX_BYTES = 512 * 1024 * 1024


class FileOutput:
    """A file a prediction produced, read on demand from its URL or data URI.

    The file is fetched without the API token: file URLs point at Replicate's
    file delivery host, which needs none, and the token must not leave the API.
    """

    def __init__(self, url: str, *, timeout: httpx.Timeout | float = 60.0) -> None:
        if not is_file_reference(url):
            raise ValueError(
                f"{url[:80]!r} is not a file output: expected an http(s) URL or a data URI"
            )
        self.url = url
        self._timeout = timeout

    def __repr__(self) -> str:
        shown = self.url if not is_data_uri(self.url) else self.url[:40] + "…"
        return f"FileOutput({shown!r})"

    def __str__(self) -> str:
        return self.url

    def read(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        """Return the file's content; ValueError if it is larger than `max_bytes`."""
        if is_data_uri(self.url):
            return _check_size(decode_data_uri(self.url)[0], max_bytes, self.url)
        with (
            httpx.Client(timeout=self._timeout, follow_redirects=True) as http,
            http.stream("GET", self.url) as response,
        ):
            response.raise_for_status()
            return _read_capped(response.iter_bytes(), max_bytes, self.url)

    async def aread(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        if is_data_uri(self.url):
            return _check_size(decode_data_uri(self.url)[0], max_bytes, self.url)
        async with (
            httpx.AsyncClient(timeout=self._timeout, follow_redirects=True) as http,
            http.stream("GET", self.url) as response,
        ):
            response.raise_for_status()
            chunks = [chunk async for chunk in response.aiter_bytes()]
            return _read_capped(chunks, max_bytes, self.url)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the file to `path` and return the path."""
        target = Path(path)
        target.write_bytes(self.read())
        return target


def is_file_reference(value: Any) -> bool:
    """Return whether `value` is a file output: an http(s) URL or a data URI, in any case."""
    return isinstance(value, str) and value[:8].lower().startswith(("https://", "http://", "data:"))


def is_data_uri(value: str) -> bool:
    return value[:5].lower() == "data:"


def decode_data_uri(uri: str) -> tuple[bytes, str]:
    """Decode a data URI into its content and its media type (`text/plain` if it names none).

    Raises:
        ValueError: the URI has no `,` before its data, or invalid base64 data.
    """
    header, separator, data = uri[5:].partition(",")
    if not separator:
        raise ValueError(f"data URI {uri[:40]!r}… has no ',' before its data")
    media_type, *parameters = header.split(";")
    if "base64" in (parameter.strip().lower() for parameter in parameters):
        try:
            content = base64.b64decode(data, validate=True)
        except ValueError as error:
            raise ValueError(f"data URI {uri[:40]!r}… has invalid base64 data") from error
    else:
        content = unquote_to_bytes(data)
    return content, media_type.strip().lower() or "text/plain"


def wrap_file_outputs(output: Any, *, timeout: httpx.Timeout | float = 60.0) -> Any:
    """Replace every URL or data URI in a prediction's output with a FileOutput."""
    if is_file_reference(output):
        return FileOutput(output, timeout=timeout)
    if isinstance(output, list):
        return [wrap_file_outputs(item, timeout=timeout) for item in output]
    if isinstance(output, dict):
        return {key: wrap_file_outputs(item, timeout=timeout) for key, item in output.items()}
    return output


def _read_capped(chunks: Any, max_bytes: int, url: str) -> bytes:
    content = bytearray()
    for chunk in chunks:
        content.extend(chunk)
        _check_size(content, max_bytes, url)
    return bytes(content)


def _check_size(content: bytes | bytearray, max_bytes: int, url: str) -> bytes:
    if len(content) > max_bytes:
        raise ValueError(
            f"file output {url[:80]!r} is larger than max_bytes={max_bytes}; pass a larger limit"
        )
    return bytes(content)
