"""Validation of Replicate webhooks, which are signed the Standard Webhooks way.

Replicate signs each delivery with three headers: `webhook-id` (the same on
every retry of one message), `webhook-timestamp` (Unix seconds) and
`webhook-signature`, a space-separated list of `v1,<base64>` entries. Each
`v1` entry is the base64 HMAC-SHA256 of `"{id}.{timestamp}.{raw body}"`,
keyed with the base64-decoded part of the account's `whsec_...` secret.

`validate` checks a delivery in this order and raises at the first failure:

1. the secret decodes to a key (`InvalidSecretKeyError`);
2. the three headers are present (`MissingWebhookHeaderError`) and the body is
   not empty (`MissingWebhookBodyError`);
3. the timestamp is an integer (`InvalidTimestampError`) within the tolerance,
   in both directions (`InvalidTimestampError`, with `skew` set);
4. one `v1` entry matches, compared in constant time (`InvalidSignatureError`);
5. the body is a prediction (`InvalidPayloadError`);
6. the webhook id was not accepted before (`ReplayedWebhookError`), when a
   replay store is given.

The exception tree::

    ValueError
    └── WebhookValidationError
        ├── MissingWebhookHeaderError    a signing header is missing or empty
        ├── MissingWebhookBodyError      the body is missing or empty
        ├── InvalidSecretKeyError        the secret is missing, empty, not base64 or ed25519
        ├── InvalidTimestampError        not an integer, or outside the tolerance
        ├── InvalidSignatureError        no `v1` signature matches
        ├── InvalidPayloadError          not a prediction, or a str body that is not Unicode
        └── ReplayedWebhookError         this webhook id was already accepted

No message contains the secret or the body. This module does not import
Prefect, so it is cheap to import in a web app.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypeAlias

from pydantic import SecretStr, ValidationError

from .models import Prediction, WebhookSigningSecret

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "SKIP_TIMESTAMP_CHECK",
    "TIMESTAMP_HEADER",
    "InvalidPayloadError",
    "InvalidSecretKeyError",
    "InvalidSignatureError",
    "InvalidTimestampError",
    "MemoryReplayStore",
    "MissingWebhookBodyError",
    "MissingWebhookHeaderError",
    "ReplayStore",
    "ReplayedWebhookError",
    "VerifiedMessage",
    "VerifiedWebhook",
    "WebhookValidationError",
    "sign",
    "sign_headers",
    "signing_key",
    "validate",
    "verify",
]

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"

DEFAULT_TOLERANCE_SECONDS: Final = 300
"""The maximum difference in seconds between a webhook's timestamp and the local
clock, in either direction. Five minutes is the Standard Webhooks convention."""

SECRET_PREFIX: Final = "whsec_"
SIGNATURE_VERSION: Final = "v1"

# A timestamp of more digits is not a time of this era. The limit also keeps a
# hostile header from reaching int() with thousands of digits.
_TIMESTAMP_PATTERN: Final = re.compile(r"\A[0-9]{1,15}\Z")
_MAX_QUOTED_VALUE: Final = 40


class _SkipTimestampCheck(enum.Enum):
    SKIP_TIMESTAMP_CHECK = "skip-timestamp-check"


SKIP_TIMESTAMP_CHECK: Final = _SkipTimestampCheck.SKIP_TIMESTAMP_CHECK
"""Pass as `tolerance` to accept any timestamp. This removes the protection
against replayed deliveries, so use it only for recorded test deliveries."""

Tolerance: TypeAlias = int | float | Literal[_SkipTimestampCheck.SKIP_TIMESTAMP_CHECK] | None
Secret: TypeAlias = WebhookSigningSecret | SecretStr | str | bytes


class WebhookValidationError(ValueError):
    """Base class of every reason to reject a webhook delivery."""


class MissingWebhookHeaderError(WebhookValidationError):
    """A signing header is missing or empty. `header` names the first missing one."""

    def __init__(self, header: str, message: str | None = None) -> None:
        self.header = header
        super().__init__(
            message
            or f"The {header} header is missing or empty. Replicate sends {ID_HEADER}, "
            f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} with every webhook, so pass the "
            "request's headers unchanged."
        )


class MissingWebhookBodyError(WebhookValidationError):
    """The body is missing or empty."""


class InvalidSecretKeyError(WebhookValidationError):
    """The signing secret is missing, empty or not base64. The message never quotes it."""


class InvalidTimestampError(WebhookValidationError):
    """The timestamp is not an integer, or is outside the tolerance.

    `skew` is the timestamp minus the local time in seconds (negative when the
    timestamp is in the past), or None when the header is not an integer.
    """

    def __init__(self, message: str, *, skew: int | None = None) -> None:
        self.header = TIMESTAMP_HEADER
        self.skew = skew
        super().__init__(message)


class InvalidSignatureError(WebhookValidationError):
    """No `v1` entry of the signature header matches the body."""


class InvalidPayloadError(WebhookValidationError):
    """The body is not a usable prediction.

    Raised when a validly signed body is not a prediction in JSON, and, before
    any signature check, when a str body cannot be encoded as UTF-8.
    """


class ReplayedWebhookError(WebhookValidationError):
    """A delivery with this webhook id was already accepted within the replay window.

    The signature was valid, so this is either a retry of a delivery that was
    already handled or a replay of a captured one. `webhook_id` names it.
    """

    def __init__(self, webhook_id: str) -> None:
        self.webhook_id = webhook_id
        super().__init__(
            f"Webhook {_quote(webhook_id)} was already accepted. Replicate keeps the "
            f"{ID_HEADER} of a message across retries, so this delivery is a duplicate "
            "and should not be handled again."
        )


class ReplayStore(Protocol):
    """Remembers accepted webhook ids until they expire.

    A store shared by every process that receives webhooks (Redis, a database
    table with a unique key) protects them all. One process can use
    `MemoryReplayStore`.
    """

    def add_if_absent(self, webhook_id: str, expires_at: float) -> bool:
        """Record `webhook_id` until `expires_at` (Unix seconds).

        Return True if it was recorded, or False if it is already recorded and
        has not expired. The check and the write must be one atomic step.
        """
        ...

    def discard(self, webhook_id: str) -> None:
        """Forget `webhook_id`, so that a retry of its delivery is accepted again."""
        ...


class MemoryReplayStore:
    """A `ReplayStore` in this process's memory, bounded and thread-safe.

    When it contains `max_entries` ids, adding one drops the expired ids first,
    then the oldest ones. A dropped id that is delivered again is accepted again,
    so size `max_entries` above the number of webhooks received in one
    tolerance window.

    Args:
        max_entries: The maximum number of ids kept.
        clock: Returns the current Unix time in seconds. It decides when an id
            expires, so it must agree with the `now` given to `validate`.
    """

    def __init__(
        self, max_entries: int = 10_000, *, clock: Callable[[], float] = time.time
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be an integer of 1 or more, got {max_entries!r}.")
        self.max_entries = max_entries
        self._clock = clock
        self._expiry_by_id: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry_by_id)

    def __contains__(self, webhook_id: object) -> bool:
        if not isinstance(webhook_id, str):
            return False
        with self._lock:
            expires_at = self._expiry_by_id.get(webhook_id)
            return expires_at is not None and expires_at > self._clock()

    def add_if_absent(self, webhook_id: str, expires_at: float) -> bool:
        """Record `webhook_id` until `expires_at`, or return False if it is already recorded."""
        with self._lock:
            now = self._clock()
            recorded_until = self._expiry_by_id.get(webhook_id)
            if recorded_until is not None and recorded_until > now:
                return False

            self._expiry_by_id.pop(webhook_id, None)
            if len(self._expiry_by_id) >= self.max_entries:
                self._drop_expired(now)
            while len(self._expiry_by_id) >= self.max_entries:
                self._expiry_by_id.popitem(last=False)
            self._expiry_by_id[webhook_id] = expires_at
            return True

    def discard(self, webhook_id: str) -> None:
        """Forget `webhook_id`. Nothing happens if it is not recorded."""
        with self._lock:
            self._expiry_by_id.pop(webhook_id, None)

    def _drop_expired(self, now: float) -> None:
        expired = [key for key, expires_at in self._expiry_by_id.items() if expires_at <= now]
        for key in expired:
            del self._expiry_by_id[key]


@dataclass(frozen=True)
class VerifiedMessage:
    """A delivery whose signature and timestamp were verified, with its body unparsed."""

    id: str
    timestamp: int
    body: bytes = field(repr=False)


@dataclass(frozen=True)
class VerifiedWebhook:
    """A verified delivery of a Replicate prediction.

    Attributes:
        id: The `webhook-id` header, the same on every retry of this message.
        timestamp: The `webhook-timestamp` header, in Unix seconds.
        body: The raw body, byte for byte as signed.
        prediction: The body parsed as a prediction.
    """

    id: str
    timestamp: int
    body: bytes = field(repr=False)
    prediction: Prediction = field(repr=False)

    def __repr__(self) -> str:
        # The prediction's input, output and logs can be large or private.
        return (
            f"VerifiedWebhook(id={self.id!r}, timestamp={self.timestamp}, "
            f"prediction={self.prediction.id!r}, status={self.prediction.status!r})"
        )


def validate(
    request: object | None = None,
    headers: object | None = None,
    body: bytes | str | None = None,
    secret: Secret | None = None,
    tolerance: Tolerance = None,
    *,
    now: float | None = None,
    replay_store: ReplayStore | None = None,
) -> VerifiedWebhook:
    """Verify a Replicate webhook delivery and parse its prediction.

    Pass either `request` or `headers` and `body`:

    - `request`: an `httpx.Request`, or any object with `.headers` and a raw
      body in `.content`, `.body` or `.data` (Django, requests, Werkzeug).
      Starlette and FastAPI read the body asynchronously, so pass
      `headers=request.headers, body=await request.body()` instead.
    - `headers`: a mapping (a dict, `httpx.Headers`, Starlette's `Headers`);
      names match in any case.
    - `body`: the raw body as bytes, verified byte for byte, or as a str,
      which is encoded as UTF-8. Never pass re-serialized JSON, because its
      bytes differ from what was signed.

    Args:
        secret: A `WebhookSigningSecret`, a `whsec_...` string, the base64 part
            alone, or the raw key bytes.
        tolerance: The maximum difference in seconds between the timestamp and
            `now`, in either direction. None means `DEFAULT_TOLERANCE_SECONDS`.
            `SKIP_TIMESTAMP_CHECK` accepts any timestamp.
        now: The current Unix time; defaults to `time.time()`.
        replay_store: Where to record accepted webhook ids. When given, a
            second delivery of one id within the window raises
            `ReplayedWebhookError`. The id is recorded only after the signature
            and the payload are verified, so forged requests cannot use it up.

    Returns:
        The verified webhook, with its prediction.

    Raises:
        WebhookValidationError: One of its subclasses, listed in this module's
            docstring, names the reason.
        TypeError: `request` was passed together with `headers` or `body`, or
            no body can be read from `request`.
    """
    message = _verify_signature(request, headers, body, secret, tolerance, now)
    prediction = _parse_prediction(message.body)
    _remember(message, tolerance, now, replay_store)
    return VerifiedWebhook(message.id, message.timestamp, message.body, prediction)


def verify(
    request: object | None = None,
    headers: object | None = None,
    body: bytes | str | None = None,
    secret: Secret | None = None,
    tolerance: Tolerance = None,
    *,
    now: float | None = None,
    replay_store: ReplayStore | None = None,
) -> VerifiedMessage:
    """Verify a Standard Webhooks delivery without parsing its body.

    Takes the same arguments and raises the same errors as `validate`, except
    `InvalidPayloadError`. Use it for webhooks that are not predictions.
    """
    message = _verify_signature(request, headers, body, secret, tolerance, now)
    _remember(message, tolerance, now, replay_store)
    return message


def sign(secret: Secret, webhook_id: str, timestamp: int | str, body: bytes | str) -> str:
    """Return the `webhook-signature` header value for one delivery: `v1,<base64>`.

    Useful to send signed deliveries to your own receiver in tests.
    """
    key = signing_key(secret)
    content = _signed_content(webhook_id, str(timestamp), _body_bytes(body))
    return f"{SIGNATURE_VERSION},{_signature(key, content)}"


def sign_headers(
    secret: Secret,
    body: bytes | str,
    *,
    webhook_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Return the three signing headers of a delivery of `body`.

    `webhook_id` defaults to a new random `msg_...` id and `timestamp` to the
    current time, both chosen at each call.
    """
    if webhook_id is None:
        webhook_id = "msg_" + secrets.token_hex(12)
    if timestamp is None:
        timestamp = int(time.time())
    return {
        ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, webhook_id, timestamp, body),
    }


def signing_key(secret: Secret | None) -> bytes:
    """Decode a webhook secret to its HMAC key.

    Accepts what `validate` accepts. Whitespace around a string secret is
    ignored, and missing base64 padding is added.

    Raises:
        InvalidSecretKeyError: The secret is None, empty or not base64. The
            message never quotes the secret.
    """
    if secret is None:
        raise InvalidSecretKeyError(
            "No webhook signing secret was given. Pass the account's secret, which "
            "GET /v1/webhooks/default/secret returns, as secret=."
        )
    if isinstance(secret, WebhookSigningSecret):
        secret = secret.key
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if isinstance(secret, bytes | bytearray | memoryview):
        if not secret:
            raise InvalidSecretKeyError("The webhook signing secret is empty.")
        return bytes(secret)
    if not isinstance(secret, str):
        raise InvalidSecretKeyError(
            "The webhook signing secret must be a WebhookSigningSecret, a str or bytes, "
            f"got {type(secret).__name__}."
        )
    return _decode_secret_text(secret)


def _decode_secret_text(secret: str) -> bytes:
    text = secret.strip()
    if text.startswith(("whsk_", "whpk_")):
        raise InvalidSecretKeyError(
            "The webhook secret is a Standard Webhooks ed25519 key (whsk_ or whpk_), for "
            "v1a signatures, which this validator does not support. Replicate signs with "
            "an HMAC secret that starts with whsec_."
        )

    encoded = text.removeprefix(SECRET_PREFIX)
    if not encoded:
        raise InvalidSecretKeyError(
            "The webhook signing secret is empty. Expected whsec_ followed by base64."
        )
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        # The decoder's message may quote part of the secret, so it is dropped.
        raise InvalidSecretKeyError(
            "The webhook signing secret is not valid base64. Expected whsec_ followed "
            "by base64, as GET /v1/webhooks/default/secret returns it."
        ) from None
    return key


def _verify_signature(
    request: object | None,
    headers: object | None,
    body: bytes | str | None,
    secret: Secret | None,
    tolerance: Tolerance,
    now: float | None,
) -> VerifiedMessage:
    key = signing_key(secret)
    if request is not None:
        if headers is not None or body is not None:
            raise TypeError("validate() takes either request or headers and body, not both.")
        headers, body = _read_request(request)

    fields = _normalize_headers(headers)
    webhook_id = _require_header(fields, ID_HEADER)
    timestamp_text = _require_header(fields, TIMESTAMP_HEADER)
    signature_header = _require_header(fields, SIGNATURE_HEADER)
    if body is None:
        raise MissingWebhookBodyError("The webhook body is missing. Pass the raw request body.")
    raw_body = _body_bytes(body)
    if not raw_body:
        raise MissingWebhookBodyError("The webhook body is empty. Pass the raw request body.")

    timestamp = _parse_timestamp(timestamp_text)
    _check_tolerance(timestamp, tolerance, now)
    expected = _signature_digest(key, _signed_content(webhook_id, timestamp_text, raw_body))
    if not _any_signature_matches(signature_header, expected):
        raise InvalidSignatureError(
            f"No {SIGNATURE_VERSION} signature in the {SIGNATURE_HEADER} header matches "
            "the body. Check that the secret belongs to this account and that the body "
            "is passed unchanged, as raw bytes."
        )
    return VerifiedMessage(webhook_id, timestamp, raw_body)


def _read_request(request: object) -> tuple[object, bytes | str]:
    headers = getattr(request, "headers", None)
    for attribute in ("content", "body", "data"):
        try:
            value = getattr(request, attribute, None)
        except Exception as exc:
            # httpx raises RequestNotRead for a streaming request that was not read.
            raise TypeError(
                f"Could not read {type(request).__name__}.{attribute}. Read the request "
                "body first, then pass headers= and body=."
            ) from exc
        if isinstance(value, bytes | bytearray | memoryview | str):
            return headers, value if isinstance(value, str) else bytes(value)
    raise TypeError(
        f"{type(request).__name__} has no raw body in .content, .body or .data. For a "
        "Starlette or FastAPI request, pass headers=request.headers and "
        "body=await request.body()."
    )


def _normalize_headers(headers: object) -> dict[str, str]:
    """Return the headers as a dict with lowercase names.

    A name that appears more than once keeps all its values. Signature entries
    are joined with a space, other values with ", " as HTTP combines fields.
    A combined id or timestamp then fails verification instead of one value
    being picked silently.
    """
    if headers is None:
        raise MissingWebhookHeaderError(
            ID_HEADER, "No webhook headers were given. Pass the request's headers unchanged."
        )
    if isinstance(headers, Mapping) or hasattr(headers, "items"):
        items = _header_items(headers)
    else:
        raise TypeError(
            f"headers must be a mapping of header names to values, got {type(headers).__name__}."
        )

    fields: dict[str, list[str]] = {}
    for name, value in items:
        fields.setdefault(_header_text(name).lower(), []).append(_header_text(value))
    return {
        name: (" " if name == SIGNATURE_HEADER else ", ").join(values)
        for name, values in fields.items()
    }


def _header_items(headers: Any) -> Iterable[tuple[object, object]]:
    # httpx.Headers.items() merges repeated fields, multi_items() keeps them apart.
    multi_items = getattr(headers, "multi_items", None)
    if callable(multi_items):
        return list(multi_items())
    return list(headers.items())


def _header_text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return str(value)


def _require_header(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if not value:
        raise MissingWebhookHeaderError(name)
    return value


def _body_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidPayloadError(
                "The webhook body is a str that cannot be encoded as UTF-8, because it "
                "contains unpaired surrogates. Pass the raw request body as bytes."
            ) from None
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise TypeError(f"body must be bytes or str, got {type(body).__name__}.")


def _parse_timestamp(text: str) -> int:
    if not _TIMESTAMP_PATTERN.match(text):
        raise InvalidTimestampError(
            f"The {TIMESTAMP_HEADER} header must be Unix time in whole seconds, given "
            f"as ASCII digits, got {_quote(text)}."
        )
    return int(text)


def _check_tolerance(timestamp: int, tolerance: Tolerance, now: float | None) -> None:
    if tolerance is SKIP_TIMESTAMP_CHECK:
        return
    limit = _tolerance_seconds(tolerance)
    current = time.time() if now is None else now
    skew = timestamp - int(current)
    if abs(skew) <= limit:
        return

    direction = "in the future" if skew > 0 else "in the past"
    raise InvalidTimestampError(
        f"The {TIMESTAMP_HEADER} header is {abs(skew)} seconds {direction}, beyond the "
        f"tolerance of {limit:g} seconds. A stale timestamp means a late or replayed "
        "delivery; if many deliveries fail this way, check this machine's clock.",
        skew=skew,
    )


def _tolerance_seconds(tolerance: Tolerance) -> float:
    if tolerance is None:
        return DEFAULT_TOLERANCE_SECONDS
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float):
        raise TypeError(
            "tolerance must be a number of seconds, None for the default of "
            f"{DEFAULT_TOLERANCE_SECONDS}, or SKIP_TIMESTAMP_CHECK, got {tolerance!r}."
        )
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be 0 or more seconds, got {tolerance!r}.")
    return tolerance


def _signed_content(webhook_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{webhook_id}.{timestamp}.".encode() + body


def _signature_digest(key: bytes, content: bytes) -> bytes:
    return hmac.new(key, content, hashlib.sha256).digest()


def _signature(key: bytes, content: bytes) -> str:
    return base64.b64encode(_signature_digest(key, content)).decode("ascii")


def _any_signature_matches(header: str, expected: bytes) -> bool:
    """Compare every `v1` entry with the expected digest in constant time.

    Entries with another label (such as `v1a`) and malformed entries are
    skipped, so one bad entry does not hide a valid one after it. Every entry
    is compared, even after a match.
    """
    matched = False
    for entry in header.split():
        label, comma, encoded = entry.partition(",")
        if label != SIGNATURE_VERSION or not comma:
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        matched |= hmac.compare_digest(candidate, expected)
    return matched


def _parse_prediction(body: bytes) -> Prediction:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidPayloadError(
            f"The webhook body is signed but is not JSON: {_json_error_reason(exc)}. "
            "Replicate sends the prediction as a JSON object."
        ) from None
    if not isinstance(document, dict):
        raise InvalidPayloadError(
            f"The webhook body is signed but is a JSON {type(document).__name__}, not an "
            "object. Replicate sends the prediction as a JSON object."
        )
    try:
        return Prediction.model_validate(document)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(part) for part in error["loc"]) for error in exc.errors())
        raise InvalidPayloadError(
            f"The webhook body is signed but is not a prediction: invalid or missing "
            f"{fields}. Replicate sends the prediction object, with at least id and "
            "status."
        ) from None


def _json_error_reason(exc: Exception) -> str:
    # Each reason names a position, never the body's text.
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg.lower()} at character {exc.pos}"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "a value is out of range"


def _remember(
    message: VerifiedMessage,
    tolerance: Tolerance,
    now: float | None,
    replay_store: ReplayStore | None,
) -> None:
    if replay_store is None:
        return
    # The id is kept for as long as a delivery with it could still pass the
    # timestamp check, which accepts a skew equal to the window: hence the + 1.
    # Without a timestamp check, the default window is used.
    # NOTE: with SKIP_TIMESTAMP_CHECK, a replay after that window is accepted.
    if tolerance is SKIP_TIMESTAMP_CHECK:
        window: float = DEFAULT_TOLERANCE_SECONDS
    else:
        window = _tolerance_seconds(tolerance)
    current = time.time() if now is None else now
    expires_at = max(message.timestamp, current) + window + 1
    if not replay_store.add_if_absent(message.id, expires_at):
        raise ReplayedWebhookError(message.id)


def _quote(value: str) -> str:
    """Return `value` in quotes, cut to a length that is safe to log."""
    if len(value) <= _MAX_QUOTED_VALUE:
        return repr(value)
    return repr(value[:_MAX_QUOTED_VALUE]) + f" (cut from {len(value)} characters)"
