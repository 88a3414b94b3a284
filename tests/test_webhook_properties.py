"""Property tests: any input raises only WebhookValidationError, and never quotes the secret."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replicate_tasks.webhooks import (
    SKIP_TIMESTAMP_CHECK,
    InvalidSignatureError,
    WebhookValidationError,
    sign,
    signing_key,
    validate,
    verify,
)

NOW = 1_700_000_000
HEADER_NAMES = ["webhook-id", "webhook-timestamp", "webhook-signature"]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

keys = st.binary(min_size=1, max_size=64)
whsec_secrets = keys.map(lambda key: "whsec_" + base64.b64encode(key).decode())
secrets = st.one_of(
    whsec_secrets,
    keys,
    st.text(max_size=60),
    st.text(alphabet="ABCDEFGHabcdefgh0123456789+/=_", max_size=60),
)
bodies = st.one_of(st.binary(max_size=300), st.text(max_size=300), st.none())
garbage_base64 = st.text(alphabet="ABCDabcd0123+/=-_!é ", max_size=60)
signature_entries = st.one_of(
    garbage_base64.map(lambda value: "v1," + value),
    st.sampled_from(["v1", "v1,", "v1a,AAAA", ",", "v2,AAAA"]),
    st.text(max_size=30),
)
header_values = {
    "webhook-id": st.one_of(st.text(max_size=40), st.just("msg_p5jXN8AQM9LWM0D4loKWxJek")),
    "webhook-timestamp": st.one_of(
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.integers(min_value=NOW - 600, max_value=NOW + 600).map(str),
        st.text(max_size=30),
    ),
    "webhook-signature": st.lists(signature_entries, max_size=5).map(" ".join),
}


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name in HEADER_NAMES:
        if draw(st.booleans()) or draw(st.booleans()):
            spelled = draw(st.sampled_from([name, name.upper(), name.title()]))
            headers[spelled] = draw(header_values[name])
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        headers[draw(st.text(min_size=1, max_size=20))] = draw(st.text(max_size=20))
    return headers


def secret_texts(secret: Any) -> list[str]:
    """The forms in which a secret could leak into a message, long enough to be telling."""
    if isinstance(secret, bytes):
        forms = [repr(secret)[2:-1], secret.hex(), base64.b64encode(secret).decode()]
    else:
        forms = [secret, secret.strip().removeprefix("whsec_")]
    return [form for form in forms if len(form) >= 8]


@FAST
@given(headers=header_sets(), body=bodies, secret=secrets, tolerance=st.sampled_from([None, 0, 5]))
def test_any_input_raises_only_validation_errors(
    headers: dict[str, str], body: Any, secret: Any, tolerance: Any
) -> None:
    try:
        validate(headers=headers, body=body, secret=secret, tolerance=tolerance, now=NOW)
    except WebhookValidationError as exc:
        for text in secret_texts(secret):
            assert text not in str(exc)
            assert text not in repr(exc)


@FAST
@given(
    key=keys,
    webhook_id=st.text(min_size=1, max_size=40).filter(lambda value: value.strip() == value),
    timestamp=st.integers(min_value=0, max_value=10**15 - 1),
    body=st.binary(min_size=1, max_size=500),
    secret_form=st.sampled_from(["whsec", "bare", "bytes"]),
)
def test_valid_signature_always_verifies(
    key: bytes, webhook_id: str, timestamp: int, body: bytes, secret_form: str
) -> None:
    encoded = base64.b64encode(key).decode()
    secret: str | bytes = {"whsec": "whsec_" + encoded, "bare": encoded, "bytes": key}[secret_form]
    headers = {
        "Webhook-Id": webhook_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": sign(secret, webhook_id, timestamp, body),
    }

    message = verify(headers=headers, body=body, secret=secret, tolerance=SKIP_TIMESTAMP_CHECK)

    assert message.id == webhook_id
    assert message.timestamp == timestamp
    assert message.body == body


@FAST
@given(
    key=keys,
    body=st.binary(min_size=1, max_size=200),
    extra=st.lists(signature_entries, max_size=4),
    position=st.integers(min_value=0, max_value=4),
)
def test_valid_entry_verifies_among_garbage(
    key: bytes, body: bytes, extra: list[str], position: int
) -> None:
    entries = list(extra)
    entries.insert(min(position, len(entries)), sign(key, "msg_1", NOW, body))
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": ""}
    headers["webhook-signature"] = " ".join(entries)

    assert verify(headers=headers, body=body, secret=key, now=NOW).id == "msg_1"


@FAST
@given(key=keys, body=st.binary(min_size=1, max_size=200), flip=st.integers(min_value=0))
def test_changed_body_never_verifies(key: bytes, body: bytes, flip: int) -> None:
    index = flip % len(body)
    changed = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": sign(key, "msg_1", NOW, body),
    }

    try:
        verify(headers=headers, body=changed, secret=key, now=NOW)
    except InvalidSignatureError:
        return
    raise AssertionError("a changed body verified")


@FAST
@given(secret=secrets)
def test_signing_key_raises_only_validation_errors(secret: Any) -> None:
    try:
        assert signing_key(secret)
    except WebhookValidationError as exc:
        for text in secret_texts(secret):
            assert text not in str(exc)
