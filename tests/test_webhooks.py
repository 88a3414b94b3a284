"""Webhook validation: published vectors, the call forms users copy, and every error."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.requests import Request

from replicate_tasks.models import Prediction, WebhookSigningSecret
from replicate_tasks.webhooks import (
    DEFAULT_TOLERANCE_SECONDS,
    SKIP_TIMESTAMP_CHECK,
    InvalidPayloadError,
    InvalidSecretKeyError,
    InvalidSignatureError,
    InvalidTimestampError,
    MemoryReplayStore,
    MissingWebhookBodyError,
    MissingWebhookHeaderError,
    ReplayedWebhookError,
    VerifiedWebhook,
    WebhookValidationError,
    sign,
    sign_headers,
    signing_key,
    validate,
    verify,
)

# Standard Webhooks verification vectors as published by the standard-webhooks,
# svix-webhooks and replicate-python test suites. The file's "about" text names
# each source.
VECTORS_FILE = Path(__file__).parent / "data" / "webhook-vectors.json"
PUBLISHED_VECTORS_FILE = Path(__file__).parents[2] / "shared/reference/webhook-vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text())

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_BASE64 = SECRET.removeprefix("whsec_")
KEY = base64.b64decode(SECRET_BASE64)
NOW = 1_700_000_000

# Each vector expectation and the error class that stands for it.
EXPECTED_ERRORS: dict[str, type[WebhookValidationError]] = {
    "missing_header": MissingWebhookHeaderError,
    "invalid_timestamp": InvalidTimestampError,
    "timestamp_too_old": InvalidTimestampError,
    "timestamp_too_new": InvalidTimestampError,
    "no_matching_signature": InvalidSignatureError,
    "invalid_secret": InvalidSecretKeyError,
    "empty_secret": InvalidSecretKeyError,
}


def vector_body(vector: dict[str, Any]) -> str:
    if vector.get("body") is not None:
        return str(vector["body"])
    repeat = vector["body_repeat"]
    return str(repeat["chunk"]) * int(repeat["count"])


def vector_secret(vector: dict[str, Any]) -> str | bytes:
    if vector.get("secret_format") == "raw":
        return str(vector["secret"]).encode()
    return str(vector["secret"])


def prediction_json(status: str = "succeeded", **fields: Any) -> str:
    document = {"id": "ufawqhfynnddngldkgtslldrkq", "status": status, "output": None, **fields}
    return json.dumps(document)


def signed(body: str | bytes, *, webhook_id: str = "msg_1", timestamp: int = NOW) -> dict[str, str]:
    return sign_headers(SECRET, body, webhook_id=webhook_id, timestamp=timestamp)


HMAC_VECTORS = [v for v in VECTORS["vectors"] if v.get("scheme", "v1") == "v1"]
V1A_VECTOR = next(v for v in VECTORS["vectors"] if v.get("scheme") == "v1a")


class TestPublishedVectors:
    def test_copy_matches_published_file(self) -> None:
        if not PUBLISHED_VECTORS_FILE.exists():
            pytest.skip("the published vector file is not beside this checkout")
        assert json.loads(PUBLISHED_VECTORS_FILE.read_text()) == VECTORS

    def test_every_expectation_is_mapped(self) -> None:
        expectations = {v["expect"] for v in VECTORS["vectors"]}
        assert expectations <= {"valid", *EXPECTED_ERRORS}
        assert VECTORS["tolerance_seconds"] == DEFAULT_TOLERANCE_SECONDS

    @pytest.mark.parametrize("vector", HMAC_VECTORS, ids=lambda v: v["name"])
    def test_vector(self, vector: dict[str, Any]) -> None:
        arguments: dict[str, Any] = {
            "headers": vector["headers"],
            "body": vector_body(vector),
            "secret": vector_secret(vector),
            "now": vector["now"],
        }
        if vector["expect"] == "valid":
            message = verify(**arguments)
            assert message.id == vector["id"]
            assert message.timestamp == int(vector["timestamp"])
            assert message.body == vector_body(vector).encode()
            # The bodies are not predictions, so validate() gets past the
            # signature and stops at the payload.
            with pytest.raises(InvalidPayloadError):
                validate(**arguments)
            return

        with pytest.raises(EXPECTED_ERRORS[vector["expect"]]) as caught:
            verify(**arguments)
        if vector["expect"] == "timestamp_too_old":
            assert caught.value.skew == -301  # type: ignore[attr-defined]
        if vector["expect"] == "timestamp_too_new":
            assert caught.value.skew == 301  # type: ignore[attr-defined]
        if vector["expect"] == "invalid_timestamp":
            assert caught.value.skew is None  # type: ignore[attr-defined]

    @pytest.mark.parametrize(
        "vector",
        [v for v in HMAC_VECTORS if "published_signature" in v],
        ids=lambda v: v["name"],
    )
    def test_sign_reproduces_published_signature(self, vector: dict[str, Any]) -> None:
        signature = sign(
            vector_secret(vector), vector["id"], vector["timestamp"], vector_body(vector)
        )

        assert signature == vector["published_signature"]

    # The v1a vector is signed with ed25519. This validator supports only v1
    # (HMAC), so an ed25519 key is rejected as a secret, and a header whose only
    # entry is v1a has no matching signature.
    def test_v1a_signing_key_is_rejected_as_secret(self) -> None:
        with pytest.raises(InvalidSecretKeyError, match="ed25519"):
            verify(
                headers=V1A_VECTOR["headers"],
                body=vector_body(V1A_VECTOR),
                secret=V1A_VECTOR["secret"],
                now=V1A_VECTOR["now"],
            )

    def test_v1a_public_key_is_rejected_as_secret(self) -> None:
        with pytest.raises(InvalidSecretKeyError, match="does not support"):
            signing_key(V1A_VECTOR["public_key"])

    def test_v1a_only_header_has_no_matching_signature(self) -> None:
        with pytest.raises(InvalidSignatureError):
            verify(
                headers=V1A_VECTOR["headers"],
                body=vector_body(V1A_VECTOR),
                secret=SECRET,
                now=V1A_VECTOR["now"],
            )

    def test_v1a_entry_beside_valid_v1_is_skipped(self) -> None:
        headers = dict(V1A_VECTOR["headers"])
        reference = HMAC_VECTORS[0]
        headers["webhook-signature"] += " " + reference["published_signature"]

        message = verify(
            headers=headers, body=vector_body(V1A_VECTOR), secret=SECRET, now=V1A_VECTOR["now"]
        )

        assert message.id == V1A_VECTOR["id"]


class TestCallForms:
    def test_headers_dict_and_str_body(self) -> None:
        body = prediction_json()

        webhook = validate(headers=signed(body), body=body, secret=SECRET, now=NOW)

        assert isinstance(webhook, VerifiedWebhook)
        assert webhook.id == "msg_1"
        assert webhook.timestamp == NOW
        assert webhook.body == body.encode()
        assert webhook.prediction == Prediction(id="ufawqhfynnddngldkgtslldrkq", status="succeeded")

    def test_header_names_match_in_any_case(self) -> None:
        body = prediction_json()
        headers = {name.title(): value for name, value in signed(body).items()}

        assert validate(headers=headers, body=body, secret=SECRET, now=NOW).id == "msg_1"

    def test_bytes_body(self) -> None:
        body = prediction_json(input={"text": "Grüße"}).encode()

        webhook = validate(headers=signed(body), body=body, secret=SECRET, now=NOW)

        assert webhook.prediction.input == {"text": "Grüße"}

    def test_httpx_request(self) -> None:
        body = prediction_json()
        request = httpx.Request(
            "POST", "http://127.0.0.1/webhooks", headers=signed(body), content=body
        )

        assert validate(request, secret=SECRET, now=NOW).prediction.status == "succeeded"

    def test_object_with_body_attribute(self) -> None:
        body = prediction_json().encode()
        request = SimpleNamespace(headers=signed(body), body=body)

        assert validate(request, secret=SECRET, now=NOW).id == "msg_1"

    async def test_starlette_request_headers_and_body(self) -> None:
        body = prediction_json().encode()
        request = starlette_request(signed(body), body)

        webhook = validate(
            headers=request.headers, body=await request.body(), secret=SECRET, now=NOW
        )

        assert webhook.prediction.id == "ufawqhfynnddngldkgtslldrkq"

    def test_starlette_request_as_request_raises(self) -> None:
        body = prediction_json().encode()
        request = starlette_request(signed(body), body)

        with pytest.raises(TypeError, match=r"body=await request\.body\(\)"):
            validate(request, secret=SECRET, now=NOW)

    def test_request_with_headers_raises(self) -> None:
        body = prediction_json()
        request = httpx.Request("POST", "http://127.0.0.1/", headers=signed(body), content=body)

        with pytest.raises(TypeError, match="either request or headers and body, not both"):
            validate(request, headers=signed(body), secret=SECRET, now=NOW)

    def test_headers_not_a_mapping_raises(self) -> None:
        with pytest.raises(TypeError, match="headers must be a mapping"):
            validate(headers=["webhook-id"], body="{}", secret=SECRET, now=NOW)

    @pytest.mark.parametrize(
        "secret",
        [
            SECRET,
            SECRET_BASE64,
            f"  {SECRET}\n",
            KEY,
            SecretStr(SECRET),
            WebhookSigningSecret(key=SecretStr(SECRET)),
        ],
        ids=["whsec", "bare-base64", "whitespace", "raw-bytes", "secret-str", "signing-secret"],
    )
    def test_secret_forms(self, secret: Any) -> None:
        body = prediction_json()

        assert validate(headers=signed(body), body=body, secret=secret, now=NOW).id == "msg_1"

    def test_repeated_signature_headers_are_combined(self) -> None:
        body = prediction_json().encode()
        valid = signed(body)
        raw = [
            (b"webhook-id", b"msg_1"),
            (b"webhook-timestamp", str(NOW).encode()),
            (b"webhook-signature", b"v1,bm90IHRoaXMgb25l"),
            (b"webhook-signature", valid["webhook-signature"].encode()),
        ]

        assert validate(headers=Headers(raw=raw), body=body, secret=SECRET, now=NOW).id == "msg_1"

    def test_repeated_timestamp_headers_are_rejected(self) -> None:
        body = prediction_json().encode()
        raw = [
            (b"webhook-id", b"msg_1"),
            (b"webhook-timestamp", str(NOW).encode()),
            (b"webhook-timestamp", str(NOW + 1).encode()),
            (b"webhook-signature", signed(body)["webhook-signature"].encode()),
        ]

        with pytest.raises(InvalidTimestampError, match="ASCII digits"):
            validate(headers=Headers(raw=raw), body=body, secret=SECRET, now=NOW)

    def test_verified_webhook_repr_leaves_out_body(self) -> None:
        body = prediction_json(logs="x" * 500)

        webhook = validate(headers=signed(body), body=body, secret=SECRET, now=NOW)

        assert repr(webhook) == (
            "VerifiedWebhook(id='msg_1', timestamp=1700000000, "
            "prediction='ufawqhfynnddngldkgtslldrkq', status='succeeded')"
        )


def starlette_request(headers: dict[str, str], body: bytes) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/webhooks/replicate",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


class TestTolerance:
    @pytest.mark.parametrize("skew", [-300, 0, 300])
    def test_inside_tolerance_passes(self, skew: int) -> None:
        body = prediction_json()
        headers = signed(body, timestamp=NOW + skew)

        assert validate(headers=headers, body=body, secret=SECRET, now=NOW).timestamp == NOW + skew

    def test_too_old_raises_with_skew(self) -> None:
        body = prediction_json()

        with pytest.raises(InvalidTimestampError) as caught:
            validate(headers=signed(body, timestamp=NOW - 301), body=body, secret=SECRET, now=NOW)

        assert caught.value.skew == -301
        assert caught.value.header == "webhook-timestamp"
        assert str(caught.value) == (
            "The webhook-timestamp header is 301 seconds in the past, beyond the tolerance "
            "of 300 seconds. A stale timestamp means a late or replayed delivery; if many "
            "deliveries fail this way, check this machine's clock."
        )

    def test_too_new_raises_with_skew(self) -> None:
        body = prediction_json()

        with pytest.raises(InvalidTimestampError) as caught:
            validate(headers=signed(body, timestamp=NOW + 301), body=body, secret=SECRET, now=NOW)

        assert caught.value.skew == 301
        assert "301 seconds in the future, beyond the tolerance of 300 seconds" in str(caught.value)

    def test_custom_tolerance(self) -> None:
        body = prediction_json()
        headers = signed(body, timestamp=NOW - 11)

        with pytest.raises(InvalidTimestampError, match="tolerance of 10 seconds"):
            validate(headers=headers, body=body, secret=SECRET, tolerance=10, now=NOW)
        assert validate(headers=headers, body=body, secret=SECRET, tolerance=11, now=NOW)

    def test_default_clock_is_current_time(self) -> None:
        body = prediction_json()
        headers = sign_headers(SECRET, body)

        assert validate(headers=headers, body=body, secret=SECRET).prediction.status == "succeeded"

    def test_old_timestamp_fails_without_now(self) -> None:
        body = prediction_json()

        with pytest.raises(InvalidTimestampError, match="in the past"):
            validate(headers=signed(body, timestamp=NOW), body=body, secret=SECRET)

    def test_skip_timestamp_check(self) -> None:
        body = prediction_json()
        headers = signed(body, timestamp=1)

        webhook = validate(
            headers=headers, body=body, secret=SECRET, tolerance=SKIP_TIMESTAMP_CHECK, now=NOW
        )

        assert webhook.timestamp == 1

    @pytest.mark.parametrize("tolerance", [True, False, "300"])
    def test_tolerance_of_wrong_type_raises(self, tolerance: Any) -> None:
        body = prediction_json()

        with pytest.raises(TypeError, match="tolerance must be a number of seconds"):
            validate(headers=signed(body), body=body, secret=SECRET, tolerance=tolerance, now=NOW)

    def test_negative_tolerance_raises(self) -> None:
        body = prediction_json()

        with pytest.raises(ValueError, match="tolerance must be 0 or more seconds, got -1"):
            validate(headers=signed(body), body=body, secret=SECRET, tolerance=-1, now=NOW)

    @pytest.mark.parametrize(
        "timestamp",
        ["hello", "1.5", "-5", "+5", "0x10", "1_700_000_000", "\u0661\u0667", "1" * 16, "17e8"],
    )
    def test_non_integer_timestamp_raises(self, timestamp: str) -> None:
        body = prediction_json()
        headers = signed(body) | {"webhook-timestamp": timestamp}

        with pytest.raises(InvalidTimestampError) as caught:
            validate(headers=headers, body=body, secret=SECRET, now=NOW)

        assert caught.value.skew is None
        assert str(caught.value).startswith(
            "The webhook-timestamp header must be Unix time in whole seconds, given as ASCII "
            f"digits, got {timestamp!r}"
        )


class TestSignatures:
    def test_malformed_entries_and_other_labels_are_skipped(self) -> None:
        body = prediction_json()
        valid = signed(body)["webhook-signature"]
        header = f"garbage v1 v1, v1,!!!! v1,é v2,{valid[3:]} V1,{valid[3:]} {valid}"

        webhook = validate(
            headers=signed(body) | {"webhook-signature": header}, body=body, secret=SECRET, now=NOW
        )

        assert webhook.id == "msg_1"

    def test_label_is_case_sensitive(self) -> None:
        body = prediction_json()
        upper = "V1," + signed(body)["webhook-signature"][3:]

        with pytest.raises(InvalidSignatureError):
            validate(
                headers=signed(body) | {"webhook-signature": upper},
                body=body,
                secret=SECRET,
                now=NOW,
            )

    def test_changed_body_raises(self) -> None:
        body = prediction_json()

        with pytest.raises(InvalidSignatureError) as caught:
            validate(headers=signed(body), body=body.replace("succeeded", "succeedeD"),
                     secret=SECRET, now=NOW)  # fmt: skip

        assert str(caught.value) == (
            "No v1 signature in the webhook-signature header matches the body. Check that "
            "the secret belongs to this account and that the body is passed unchanged, as "
            "raw bytes."
        )

    def test_reserialized_json_body_raises(self) -> None:
        body = prediction_json()
        reserialized = json.dumps(json.loads(body), separators=(",", ":"))

        with pytest.raises(InvalidSignatureError):
            validate(headers=signed(body), body=reserialized, secret=SECRET, now=NOW)

    def test_changed_id_raises(self) -> None:
        body = prediction_json()
        headers = signed(body) | {"webhook-id": "msg_2"}

        with pytest.raises(InvalidSignatureError):
            validate(headers=headers, body=body, secret=SECRET, now=NOW)

    def test_other_secret_raises(self) -> None:
        body = prediction_json()
        other = "whsec_" + base64.b64encode(b"another key of 24 bytes!").decode()

        with pytest.raises(InvalidSignatureError):
            validate(headers=signed(body), body=body, secret=other, now=NOW)


class TestErrors:
    def test_error_tree(self) -> None:
        for error in (
            MissingWebhookHeaderError,
            MissingWebhookBodyError,
            InvalidSecretKeyError,
            InvalidTimestampError,
            InvalidSignatureError,
            InvalidPayloadError,
            ReplayedWebhookError,
        ):
            assert issubclass(error, WebhookValidationError)
        assert issubclass(WebhookValidationError, ValueError)

    @pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_missing_header_names_it(self, header: str) -> None:
        body = prediction_json()
        headers = {k: v for k, v in signed(body).items() if k != header}

        with pytest.raises(MissingWebhookHeaderError) as caught:
            validate(headers=headers, body=body, secret=SECRET, now=NOW)

        assert caught.value.header == header
        assert str(caught.value) == (
            f"The {header} header is missing or empty. Replicate sends webhook-id, "
            "webhook-timestamp and webhook-signature with every webhook, so pass the "
            "request's headers unchanged."
        )

    def test_blank_header_counts_as_missing(self) -> None:
        body = prediction_json()

        with pytest.raises(MissingWebhookHeaderError, match="webhook-id header is missing"):
            validate(headers=signed(body) | {"webhook-id": "  "}, body=body, secret=SECRET)

    def test_no_headers_raises(self) -> None:
        with pytest.raises(MissingWebhookHeaderError, match="No webhook headers were given"):
            validate(body=prediction_json(), secret=SECRET, now=NOW)

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (None, "The webhook body is missing. Pass the raw request body."),
            ("", "The webhook body is empty. Pass the raw request body."),
            (b"", "The webhook body is empty. Pass the raw request body."),
        ],
    )
    def test_missing_body_raises(self, body: Any, message: str) -> None:
        with pytest.raises(MissingWebhookBodyError) as caught:
            validate(headers=signed("{}"), body=body, secret=SECRET, now=NOW)

        assert str(caught.value) == message

    def test_body_with_surrogates_raises(self) -> None:
        with pytest.raises(InvalidPayloadError, match="cannot be encoded as UTF-8"):
            validate(headers=signed("{}"), body="{\ud800}", secret=SECRET, now=NOW)

    @pytest.mark.parametrize(
        ("secret", "message"),
        [
            (None, "No webhook signing secret was given."),
            ("", "The webhook signing secret is empty. Expected whsec_ followed by base64."),
            ("whsec_", "The webhook signing secret is empty. Expected whsec_ followed by base64."),
            (b"", "The webhook signing secret is empty."),
            ("whsec_not*base64!", "The webhook signing secret is not valid base64."),
            ("whsec_a", "The webhook signing secret is not valid base64."),
            ("whsec_sécret", "The webhook signing secret is not valid base64."),
            ("====", "The webhook signing secret is not valid base64."),
            (12345, "The webhook signing secret must be a WebhookSigningSecret, a str or bytes"),
        ],
    )
    def test_invalid_secret_raises_without_quoting_it(self, secret: Any, message: str) -> None:
        body = prediction_json()

        with pytest.raises(InvalidSecretKeyError) as caught:
            validate(headers=signed(body), body=body, secret=secret, now=NOW)

        assert str(caught.value).startswith(message)
        assert caught.value.__cause__ is None
        text = secret.decode() if isinstance(secret, bytes) else str(secret or "")
        if len(text.removeprefix("whsec_")) > 3:
            assert text.removeprefix("whsec_") not in str(caught.value)
            assert text.removeprefix("whsec_") not in repr(caught.value)

    def test_no_message_contains_the_secret(self) -> None:
        body = prediction_json(logs="the body text")
        good = signed(body)
        failing_calls: list[dict[str, Any]] = [
            {"headers": {}, "body": body},
            {"headers": good, "body": None},
            {"headers": good | {"webhook-timestamp": "soon"}, "body": body},
            {"headers": good | {"webhook-signature": f"v1,{SECRET_BASE64}"}, "body": body},
            {"headers": signed(body, timestamp=NOW - 999), "body": body},
            {"headers": signed("[1, 2]"), "body": "[1, 2]"},
        ]
        secret_forms = [SECRET, SECRET_BASE64, repr(KEY), KEY.hex(), base64.b64encode(KEY).decode()]

        for call in failing_calls:
            with pytest.raises(WebhookValidationError) as caught:
                validate(**call, secret=SECRET, now=NOW)
            for form in secret_forms:
                assert form not in str(caught.value), call
                assert form not in repr(caught.value), call
            assert "the body text" not in str(caught.value)


class TestPayload:
    def test_not_json_raises(self) -> None:
        body = "not json: the body text"

        with pytest.raises(InvalidPayloadError) as caught:
            validate(headers=signed(body), body=body, secret=SECRET, now=NOW)

        assert str(caught.value) == (
            "The webhook body is signed but is not JSON: expecting value at character 0. "
            "Replicate sends the prediction as a JSON object."
        )

    def test_invalid_utf8_raises(self) -> None:
        body = b'{"id": "\xff"}'

        with pytest.raises(InvalidPayloadError, match="invalid UTF-8 at byte 8"):
            validate(headers=signed(body), body=body, secret=SECRET, now=NOW)

    def test_json_array_raises(self) -> None:
        with pytest.raises(InvalidPayloadError) as caught:
            validate(headers=signed("[1]"), body="[1]", secret=SECRET, now=NOW)

        assert str(caught.value) == (
            "The webhook body is signed but is a JSON list, not an object. Replicate sends "
            "the prediction as a JSON object."
        )

    def test_object_without_status_raises(self) -> None:
        body = json.dumps({"id": "abc", "secret-looking": "the body text"})

        with pytest.raises(InvalidPayloadError) as caught:
            validate(headers=signed(body), body=body, secret=SECRET, now=NOW)

        assert str(caught.value) == (
            "The webhook body is signed but is not a prediction: invalid or missing status. "
            "Replicate sends the prediction object, with at least id and status."
        )

    def test_deeply_nested_json_raises(self) -> None:
        body = "[" * 100_000 + "]" * 100_000

        with pytest.raises(InvalidPayloadError, match="nested too deeply"):
            validate(headers=signed(body), body=body, secret=SECRET, now=NOW)

    def test_unknown_fields_are_kept(self) -> None:
        body = prediction_json(status="aborted", new_field={"a": 1})

        prediction = validate(headers=signed(body), body=body, secret=SECRET, now=NOW).prediction

        assert prediction.status == "aborted"
        assert prediction.is_terminal
        assert prediction.model_extra == {"new_field": {"a": 1}}


class TestReplay:
    def test_second_delivery_raises(self) -> None:
        store = MemoryReplayStore(clock=lambda: NOW)
        body = prediction_json()

        validate(headers=signed(body), body=body, secret=SECRET, now=NOW, replay_store=store)
        with pytest.raises(ReplayedWebhookError) as caught:
            validate(headers=signed(body), body=body, secret=SECRET, now=NOW, replay_store=store)

        assert caught.value.webhook_id == "msg_1"
        assert str(caught.value) == (
            "Webhook 'msg_1' was already accepted. Replicate keeps the webhook-id of a "
            "message across retries, so this delivery is a duplicate and should not be "
            "handled again."
        )

    def test_forged_delivery_does_not_use_up_id(self) -> None:
        store = MemoryReplayStore(clock=lambda: NOW)
        body = prediction_json()
        forged = signed(body) | {"webhook-signature": "v1,AAAA"}

        with pytest.raises(InvalidSignatureError):
            validate(headers=forged, body=body, secret=SECRET, now=NOW, replay_store=store)

        assert validate(headers=signed(body), body=body, secret=SECRET, now=NOW, replay_store=store)

    def test_invalid_payload_does_not_use_up_id(self) -> None:
        store = MemoryReplayStore(clock=lambda: NOW)

        with pytest.raises(InvalidPayloadError):
            validate(headers=signed("[]"), body="[]", secret=SECRET, now=NOW, replay_store=store)

        assert "msg_1" not in store

    def test_retry_within_window_raises_and_after_it_passes(self) -> None:
        clock = SimpleNamespace(now=NOW)
        store = MemoryReplayStore(clock=lambda: clock.now)
        body = prediction_json()

        def deliver(at: int) -> VerifiedWebhook:
            clock.now = at
            headers = signed(body, timestamp=at)
            return validate(headers=headers, body=body, secret=SECRET, now=at, replay_store=store)

        deliver(NOW)
        with pytest.raises(ReplayedWebhookError):
            deliver(NOW + 300)

        assert deliver(NOW + 301).timestamp == NOW + 301

    def test_verify_records_ids_too(self) -> None:
        store = MemoryReplayStore(clock=lambda: NOW)

        verify(headers=signed("x"), body="x", secret=SECRET, now=NOW, replay_store=store)
        with pytest.raises(ReplayedWebhookError):
            verify(headers=signed("x"), body="x", secret=SECRET, now=NOW, replay_store=store)


class TestMemoryReplayStore:
    def test_add_if_absent(self) -> None:
        store = MemoryReplayStore(clock=lambda: 100.0)

        assert store.add_if_absent("a", 200.0)
        assert not store.add_if_absent("a", 300.0)
        assert "a" in store

    def test_expired_id_is_added_again(self) -> None:
        store = MemoryReplayStore(clock=lambda: 100.0)

        assert store.add_if_absent("a", 100.0)
        assert "a" not in store
        assert store.add_if_absent("a", 200.0)

    def test_full_store_drops_expired_first(self) -> None:
        clock = SimpleNamespace(now=100.0)
        store = MemoryReplayStore(max_entries=2, clock=lambda: clock.now)
        store.add_if_absent("old-but-long", 1000.0)
        store.add_if_absent("short", 150.0)
        clock.now = 200.0

        store.add_if_absent("new", 1000.0)

        assert len(store) == 2
        assert "old-but-long" in store
        assert "new" in store

    def test_full_store_drops_oldest(self) -> None:
        store = MemoryReplayStore(max_entries=2, clock=lambda: 100.0)
        for webhook_id in ("a", "b", "c"):
            store.add_if_absent(webhook_id, 1000.0)

        assert len(store) == 2
        assert "a" not in store
        assert "c" in store

    def test_discard(self) -> None:
        store = MemoryReplayStore(clock=lambda: 100.0)
        store.add_if_absent("a", 1000.0)

        store.discard("a")
        store.discard("never-added")

        assert store.add_if_absent("a", 1000.0)

    def test_one_thread_wins_a_race(self) -> None:
        store = MemoryReplayStore()
        results: list[bool] = []
        barrier = threading.Barrier(8)

        def add() -> None:
            barrier.wait()
            results.append(store.add_if_absent("same", 2e9))

        threads = [threading.Thread(target=add) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(results) == [False] * 7 + [True]

    @pytest.mark.parametrize("max_entries", [0, -1, True, 1.5])
    def test_invalid_max_entries_raises(self, max_entries: Any) -> None:
        with pytest.raises(ValueError, match="max_entries must be an integer of 1 or more"):
            MemoryReplayStore(max_entries=max_entries)


class TestSign:
    def test_round_trip(self) -> None:
        body = prediction_json()
        signature = sign(SECRET, "msg_x", NOW, body)
        headers = {
            "webhook-id": "msg_x",
            "webhook-timestamp": str(NOW),
            "webhook-signature": signature,
        }

        assert signature.startswith("v1,")
        assert validate(headers=headers, body=body, secret=SECRET, now=NOW).id == "msg_x"

    def test_str_and_bytes_body_sign_alike(self) -> None:
        assert sign(SECRET, "m", NOW, "é") == sign(SECRET, "m", str(NOW), "é".encode())

    def test_sign_headers_defaults_are_fresh(self) -> None:
        first = sign_headers(SECRET, "x")
        second = sign_headers(SECRET, "x")

        assert first["webhook-id"].startswith("msg_")
        assert first["webhook-id"] != second["webhook-id"]
        assert verify(headers=first, body="x", secret=SECRET).id == first["webhook-id"]

    def test_sign_rejects_invalid_secret(self) -> None:
        with pytest.raises(InvalidSecretKeyError):
            sign("whsec_", "m", NOW, "x")
