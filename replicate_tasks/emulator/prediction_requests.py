"""Checks of prediction create requests: body fields, headers, input and webhook URL.

Body rules follow Replicate's openapi.json: `input` is a required object;
`webhook`, `webhook_events_filter` and `stream` are optional; no other field is
accepted. `POST /v1/predictions` also needs `version`. The `Prefer` header is
`wait` or `wait=N` with N from 1 to 60, and `Cancel-After` is a duration such
as `30s`, `5m` or `1h30m45s` (a bare number is seconds), of at least 5 seconds.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from .predictions import CreateRequest
from .problems import ProblemError
from .validation import show

WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
DEFAULT_WEBHOOK_EVENTS = frozenset({"output", "completed"})
"""The events sent when a create has no `webhook_events_filter`.

NOTE: openapi.json states that without a filter, webhooks are sent for "new
outputs or finished" predictions, which this follows. Replicate's webhook guide
words the default differently, so a client that needs `start` or `logs` should
send the filter.
"""

MAX_WAIT_SECONDS = 60
MIN_CANCEL_AFTER_SECONDS = 5.0

PREDICTION_FIELDS = ("version", "input", "webhook", "webhook_events_filter", "stream")
VERSIONLESS_FIELDS = ("input", "webhook", "webhook_events_filter", "stream")

_WAIT = re.compile(r"^wait(?:=(\d+))?$")
_NUMBER = r"\d+(?:\.\d+)?"
_SECONDS = re.compile(rf"^{_NUMBER}$")
_DURATION = re.compile(rf"^(?:({_NUMBER})h)?(?:({_NUMBER})m)?(?:({_NUMBER})s)?$")
_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "an array",
    "object": "an object",
}


def parse_create(
    body: Mapping[str, Any],
    allowed_fields: tuple[str, ...],
    webhook_hosts: Collection[str],
    cancel_after_header: str | None,
) -> CreateRequest:
    """Check the fields of a create body that every create endpoint shares.

    Raises `ProblemError` 422 listing every problem in the body, and 400 for an
    invalid `Cancel-After` header.
    """
    cancel_after = parse_cancel_after(cancel_after_header)

    problems = [
        f"Unknown field {field} with value {show(body[field])}. This endpoint "
        f"accepts only {', '.join(allowed_fields)}."
        for field in body
        if field not in allowed_fields
    ]

    input = body.get("input")
    if "input" not in body:
        problems.append("Missing required field input: send the model input as a JSON object.")
    elif not isinstance(input, dict):
        problems.append(f"Invalid input {show(input)}: expected a JSON object.")

    webhook = _check_webhook(body, webhook_hosts, problems)
    events = _check_events(body, problems)

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        problems.append(f"Invalid stream {show(stream)}: expected true or false.")

    if problems:
        raise ProblemError(422, " ".join(problems), title="Unprocessable Entity")
    assert isinstance(input, dict)
    return CreateRequest(
        input=input,
        webhook=webhook,
        webhook_events=events,
        cancel_after_seconds=cancel_after,
    )


def parse_prefer_wait(value: str | None) -> int | None:
    """Return the seconds that `Prefer: wait[=N]` requests, or None without the header.

    Bare `wait` means 60 seconds. Raises `ProblemError` 400 for any other value.
    """
    if value is None:
        return None
    match = _WAIT.match(value.strip())
    seconds = MAX_WAIT_SECONDS if match and match.group(1) is None else None
    if match and match.group(1) is not None:
        number = int(match.group(1))
        seconds = number if 1 <= number <= MAX_WAIT_SECONDS else None
    if seconds is None:
        raise ProblemError(
            400,
            f"Invalid Prefer header {value!r}: expected 'wait' or 'wait=N' with N "
            f"from 1 to {MAX_WAIT_SECONDS} seconds.",
        )
    return seconds


def parse_cancel_after(value: str | None) -> float | None:
    """Return the seconds of a `Cancel-After` header, or None without the header.

    Raises `ProblemError` 400 for a malformed duration or one under 5 seconds.
    """
    if value is None:
        return None
    text = value.strip()
    seconds: float | None = None
    if _SECONDS.match(text):
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if text and match:
            hours, minutes, secs = (float(part) if part else 0.0 for part in match.groups())
            seconds = hours * 3600 + minutes * 60 + secs

    if seconds is None or not math.isfinite(seconds):
        raise ProblemError(
            400,
            f"Invalid Cancel-After header {value!r}: expected a duration such as "
            "'30s', '5m' or '1h30m45s', or a number of seconds.",
        )
    if seconds < MIN_CANCEL_AFTER_SECONDS:
        raise ProblemError(
            400,
            f"Invalid Cancel-After header {value!r}: the minimum is "
            f"{MIN_CANCEL_AFTER_SECONDS:g} seconds.",
        )
    return seconds


def validate_input(input: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Check `input` against the `Input` schema of an OpenAPI document.

    Checks required properties, JSON types, enums and numeric bounds of the
    properties the schema declares. Properties it does not declare are
    accepted. Raises `ProblemError` 422 naming each invalid field.
    """
    input_schema = _component(schema, "Input")
    if input_schema is None:
        return
    properties = input_schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}

    problems: list[str] = []
    for name in input_schema.get("required") or ():
        if name not in input:
            problems.append(f"input.{name} is required but missing.")

    for name, value in input.items():
        declared = properties.get(name)
        if isinstance(declared, Mapping):
            problem = _property_problem(name, value, _resolve(declared, schema))
            if problem is not None:
                problems.append(problem)

    if problems:
        raise ProblemError(
            422,
            "Invalid prediction input: " + " ".join(problems),
            title="Input validation failed",
        )


def is_loopback_host(host: str) -> bool:
    """Return whether `host` is localhost or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def webhook_host_allowed(url: str, webhook_hosts: Collection[str]) -> bool:
    """Return whether the emulator may send webhooks to `url`."""
    host = urlsplit(url).hostname or ""
    return is_loopback_host(host) or host.lower() in webhook_hosts


def _check_webhook(
    body: Mapping[str, Any], webhook_hosts: Collection[str], problems: list[str]
) -> str | None:
    if "webhook" not in body or body["webhook"] is None:
        return None
    value = body["webhook"]
    if not isinstance(value, str):
        problems.append(f"Invalid webhook {show(value)}: expected an http or https URL.")
        return None

    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        problems.append(
            f"Invalid webhook {show(value)}: expected an http or https URL with a host."
        )
        return None

    if not webhook_host_allowed(value, webhook_hosts):
        problems.append(
            f"Invalid webhook {show(value)}: the emulator sends webhooks only to "
            f"loopback hosts (127.0.0.0/8, ::1, localhost), and {host} is not one. "
            f"To allow it, start the emulator with webhook_hosts=[{host!r}]."
        )
        return None
    return value


def _check_events(body: Mapping[str, Any], problems: list[str]) -> frozenset[str]:
    if "webhook_events_filter" not in body or body["webhook_events_filter"] is None:
        return DEFAULT_WEBHOOK_EVENTS
    value = body["webhook_events_filter"]
    valid = isinstance(value, list) and all(
        isinstance(item, str) and item in WEBHOOK_EVENTS for item in value
    )
    if not valid:
        problems.append(
            f"Invalid webhook_events_filter {show(value)}: expected an array of "
            f"events from {', '.join(WEBHOOK_EVENTS)}."
        )
        return DEFAULT_WEBHOOK_EVENTS
    return frozenset(value)


def _property_problem(name: str, value: Any, declared: Mapping[str, Any]) -> str | None:
    expected = declared.get("type")
    if isinstance(expected, str) and not _has_type(value, expected):
        description = _TYPE_NAMES.get(expected, expected)
        return f"input.{name} must be {description}, got {show(value)}."

    choices = declared.get("enum")
    if isinstance(choices, list) and value not in choices:
        listed = ", ".join(show(choice) for choice in choices)
        return f"input.{name} must be one of {listed}, got {show(value)}."

    if _is_number(value):
        minimum = declared.get("minimum")
        maximum = declared.get("maximum")
        if _is_number(minimum) and value < minimum:
            return f"input.{name} must be at least {minimum}, got {show(value)}."
        if _is_number(maximum) and value > maximum:
            return f"input.{name} must be at most {maximum}, got {show(value)}."
    return None


def _has_type(value: Any, expected: str) -> bool:
    checks = {
        "string": lambda: isinstance(value, str),
        "integer": lambda: isinstance(value, int) and not isinstance(value, bool),
        "number": lambda: _is_number(value),
        "boolean": lambda: isinstance(value, bool),
        "array": lambda: isinstance(value, list),
        "object": lambda: isinstance(value, dict),
    }
    check = checks.get(expected)
    return True if check is None else bool(check())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _resolve(declared: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Merge a property with the component its `allOf: [{"$ref"}]` names (Cog's enum form)."""
    parts = declared.get("allOf")
    if not isinstance(parts, list):
        return declared
    merged: dict[str, Any] = {key: value for key, value in declared.items() if key != "allOf"}
    for part in parts:
        reference = part.get("$ref") if isinstance(part, Mapping) else None
        if isinstance(reference, str) and reference.startswith("#/components/schemas/"):
            component = _component(schema, reference.rsplit("/", 1)[1])
            if component is not None:
                merged = {**component, **merged}
    return merged


def _component(schema: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    components = schema.get("components")
    schemas = components.get("schemas") if isinstance(components, Mapping) else None
    component = schemas.get(name) if isinstance(schemas, Mapping) else None
    return component if isinstance(component, Mapping) else None
