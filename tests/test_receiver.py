"""The webhook receiver, driven in process through httpx and served on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from replicate_tasks.emulator.server import serve_in_thread
from replicate_tasks.models import Prediction
from replicate_tasks.receiver import WEBHOOK_PATH, create_receiver, prediction_event
from replicate_tasks.webhooks import InvalidSecretKeyError, sign_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_BASE64 = SECRET.removeprefix("whsec_")
WAIT_SECONDS = 10


def prediction_body(prediction_id: str = "p1", status: str = "succeeded") -> str:
    return json.dumps({"id": prediction_id, "status": status, "output": ["https://x/out.png"]})


class Handled:
    """A handler that records each prediction it is called with."""

    def __init__(self) -> None:
        self.predictions: list[Prediction] = []
        self.called = threading.Condition()

    def __call__(self, prediction: Prediction) -> None:
        with self.called:
            self.predictions.append(prediction)
            self.called.notify_all()

    def wait_for(self, count: int) -> list[str]:
        with self.called:
            assert self.called.wait_for(lambda: len(self.predictions) >= count, WAIT_SECONDS)
            return [prediction.id for prediction in self.predictions]


@pytest.fixture
def handled() -> Handled:
    return Handled()


@pytest.fixture
def app(handled: Handled) -> Starlette:
    return create_receiver(SECRET, handler=handled, max_body_bytes=2_000)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        yield client


@pytest.fixture
def receiver_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="replicate_tasks.receiver")
    return caplog


async def post(
    client: httpx.AsyncClient, body: str | bytes, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(WEBHOOK_PATH, content=body, headers=headers)


class TestDelivery:
    async def test_valid_delivery_is_handed_on_once(
        self, client: httpx.AsyncClient, handled: Handled
    ) -> None:
        body = prediction_body()

        response = await post(client, body, sign_headers(SECRET, body))

        assert response.status_code == 202
        assert response.text == "Accepted."
        assert handled.wait_for(1) == ["p1"]
        assert handled.predictions[0].output == ["https://x/out.png"]

    async def test_duplicate_delivery_not_handed_on(
        self, client: httpx.AsyncClient, handled: Handled, receiver_logs: pytest.LogCaptureFixture
    ) -> None:
        body = prediction_body()
        headers = sign_headers(SECRET, body, webhook_id="msg_dup")

        first = await post(client, body, headers)
        handled.wait_for(1)
        second = await post(client, body, headers)

        assert first.status_code == 202
        assert second.status_code == 200
        assert second.text == "Already received."
        assert len(handled.predictions) == 1
        assert "Ignored webhook 'msg_dup': already received." in receiver_logs.messages

    async def test_handler_does_not_delay_answer(self, handled: Handled) -> None:
        release = threading.Event()

        def slow_handler(prediction: Prediction) -> None:
            release.wait(WAIT_SECONDS)
            handled(prediction)

        app = create_receiver(SECRET, handler=slow_handler)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            body = prediction_body()
            response = await post(client, body, sign_headers(SECRET, body))

        assert response.status_code == 202
        assert handled.predictions == []
        release.set()
        assert handled.wait_for(1) == ["p1"]

    async def test_full_backlog_then_retry_handled_once(
        self, handled: Handled, receiver_logs: pytest.LogCaptureFixture
    ) -> None:
        release = threading.Event()
        started = threading.Event()

        def blocking_handler(prediction: Prediction) -> None:
            started.set()
            release.wait(WAIT_SECONDS)
            handled(prediction)

        app = create_receiver(SECRET, handler=blocking_handler, max_pending=1)
        transport = httpx.ASGITransport(app=app)
        bodies = {name: prediction_body(name) for name in ("a", "b", "c")}
        headers = {name: sign_headers(SECRET, body) for name, body in bodies.items()}
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            first = await post(client, bodies["a"], headers["a"])
            assert started.wait(WAIT_SECONDS)
            second = await post(client, bodies["b"], headers["b"])
            rejected = await post(client, bodies["c"], headers["c"])
            release.set()
            handled.wait_for(2)
            retried = await post(client, bodies["c"], headers["c"])

        assert [first.status_code, second.status_code] == [202, 202]
        assert rejected.status_code == 503
        assert rejected.headers["retry-after"] == "5"
        assert retried.status_code == 202
        assert handled.wait_for(3) == ["a", "b", "c"]
        assert any(
            "so responded 503 for Replicate to send it again" in message
            for message in receiver_logs.messages
        )

    async def test_handler_failure_is_logged_and_not_retried(
        self, receiver_logs: pytest.LogCaptureFixture
    ) -> None:
        failed = threading.Event()

        def failing_handler(prediction: Prediction) -> None:
            failed.set()
            raise RuntimeError("disk full")

        app = create_receiver(SECRET, handler=failing_handler)
        transport = httpx.ASGITransport(app=app)
        body = prediction_body()
        headers = sign_headers(SECRET, body, webhook_id="msg_fail")
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            response = await post(client, body, headers)
            assert failed.wait(WAIT_SECONDS)
            duplicate = await post(client, body, headers)

        assert response.status_code == 202
        assert duplicate.status_code == 200
        record = next(r for r in receiver_logs.records if r.exc_info)
        assert record.getMessage() == "The handler failed on webhook 'msg_fail' for prediction p1."

    async def test_get_is_not_allowed(self, client: httpx.AsyncClient) -> None:
        assert (await client.get(WEBHOOK_PATH)).status_code == 405


class TestRejection:
    async def test_bad_signature_answers_401(
        self, client: httpx.AsyncClient, handled: Handled, receiver_logs: pytest.LogCaptureFixture
    ) -> None:
        body = prediction_body()
        headers = sign_headers(SECRET, body, webhook_id="msg_forged")
        headers["webhook-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

        response = await post(client, body, headers)

        assert response.status_code == 401
        assert response.text == "Unauthorized."
        assert handled.predictions == []
        assert receiver_logs.records[-1].levelno == logging.WARNING
        assert receiver_logs.messages[-1].startswith(
            "Rejected webhook 'msg_forged' with 401: No v1 signature in the "
            "webhook-signature header matches the body."
        )

    async def test_stale_timestamp_answers_401(
        self, client: httpx.AsyncClient, receiver_logs: pytest.LogCaptureFixture
    ) -> None:
        body = prediction_body()
        headers = sign_headers(SECRET, body, webhook_id="msg_old", timestamp=1_600_000_000)

        response = await post(client, body, headers)

        assert response.status_code == 401
        assert (
            "seconds in the past, beyond the tolerance of 300 seconds"
            in (receiver_logs.messages[-1])
        )

    async def test_forged_delivery_does_not_block_genuine_one(
        self, client: httpx.AsyncClient, handled: Handled
    ) -> None:
        body = prediction_body()
        headers = sign_headers(SECRET, body, webhook_id="msg_same")
        forged = headers | {"webhook-signature": "v1,AAAA"}

        assert (await post(client, body, forged)).status_code == 401
        assert (await post(client, body, headers)).status_code == 202
        assert handled.wait_for(1) == ["p1"]

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"webhook-id": None}, "The webhook-id header is missing or empty."),
            ({"webhook-timestamp": None}, "The webhook-timestamp header is missing or empty."),
            ({"webhook-signature": None}, "The webhook-signature header is missing or empty."),
            ({"webhook-timestamp": "soon"}, "must be Unix time in whole seconds"),
        ],
    )
    async def test_malformed_headers_answer_400(
        self,
        client: httpx.AsyncClient,
        receiver_logs: pytest.LogCaptureFixture,
        change: dict[str, str | None],
        reason: str,
    ) -> None:
        body = prediction_body()
        headers = sign_headers(SECRET, body) | change
        sent = {name: value for name, value in headers.items() if value is not None}

        response = await post(client, body, sent)

        assert response.status_code == 400
        assert response.text == "Bad request."
        assert reason in receiver_logs.messages[-1]

    async def test_empty_body_answers_400(self, client: httpx.AsyncClient) -> None:
        response = await post(client, b"", sign_headers(SECRET, b"x"))

        assert response.status_code == 400

    async def test_signed_non_prediction_answers_400(self, client: httpx.AsyncClient) -> None:
        body = json.dumps({"hello": "world"})

        response = await post(client, body, sign_headers(SECRET, body))

        assert response.status_code == 400

    async def test_declared_size_over_limit_answers_413(
        self, client: httpx.AsyncClient, receiver_logs: pytest.LogCaptureFixture
    ) -> None:
        body = prediction_body().ljust(2_001)

        response = await post(client, body, sign_headers(SECRET, body, webhook_id="msg_big"))

        assert response.status_code == 413
        assert response.text == "Payload too large."
        assert receiver_logs.messages[-1] == (
            "Rejected webhook 'msg_big' with 413: Content-Length is 2001 bytes, and the "
            "limit is 2000 bytes."
        )

    async def test_streamed_size_over_limit_answers_413(
        self, client: httpx.AsyncClient, handled: Handled
    ) -> None:
        body = prediction_body().ljust(5_000).encode()

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 1_000):
                yield body[start : start + 1_000]

        response = await client.post(
            WEBHOOK_PATH, content=chunks(), headers=sign_headers(SECRET, body)
        )

        assert response.status_code == 413
        assert handled.predictions == []

    async def test_invalid_content_length_answers_400(self, app: Starlette) -> None:
        body = prediction_body().encode()
        headers = [(k.encode(), v.encode()) for k, v in sign_headers(SECRET, body).items()]
        messages: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": WEBHOOK_PATH,
            "headers": [(b"content-length", b"12abc"), *headers],
            "query_string": b"",
        }
        await app(scope, receive, send)

        assert messages[0]["status"] == 400

    async def test_logs_never_contain_secret(
        self, client: httpx.AsyncClient, receiver_logs: pytest.LogCaptureFixture
    ) -> None:
        body = prediction_body()
        await post(client, body, sign_headers(SECRET, body))
        await post(client, body, sign_headers(SECRET, body) | {"webhook-signature": "v1,AA"})
        await post(client, body, {"webhook-id": SECRET_BASE64[:5]})

        assert SECRET_BASE64 not in receiver_logs.text


class TestConfiguration:
    def test_secret_from_environment(
        self, monkeypatch: pytest.MonkeyPatch, handled: Handled
    ) -> None:
        monkeypatch.setenv("REPLICATE_WEBHOOK_SECRET", SECRET)

        assert isinstance(create_receiver(handler=handled), Starlette)

    def test_missing_secret_raises(self, monkeypatch: pytest.MonkeyPatch, handled: Handled) -> None:
        monkeypatch.delenv("REPLICATE_WEBHOOK_SECRET", raising=False)

        with pytest.raises(InvalidSecretKeyError, match="set REPLICATE_WEBHOOK_SECRET"):
            create_receiver(handler=handled)

    def test_invalid_secret_raises(self, handled: Handled) -> None:
        with pytest.raises(InvalidSecretKeyError, match="not valid base64"):
            create_receiver("whsec_!!!!", handler=handled)

    def test_flow_mode_needs_handler(self) -> None:
        with pytest.raises(TypeError, match="mode 'flow' needs handler="):
            create_receiver(SECRET)

    def test_event_mode_takes_no_handler(self, handled: Handled) -> None:
        with pytest.raises(TypeError, match="handler is used only in mode 'flow'"):
            create_receiver(SECRET, mode="event", handler=handled)

    def test_unknown_mode_raises(self) -> None:
        with pytest.raises(ValueError, match="mode must be 'flow' or 'event', got 'queue'"):
            create_receiver(SECRET, mode="queue")  # type: ignore[arg-type]

    @pytest.mark.parametrize("option", ["max_body_bytes", "max_pending"])
    def test_limits_must_be_positive(self, option: str, handled: Handled) -> None:
        with pytest.raises(ValueError, match=f"{option} must be an integer of 1 or more, got 0"):
            create_receiver(SECRET, handler=handled, **{option: 0})


@pytest.fixture
def prefect_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Collect the Prefect events emitted in this test instead of sending them."""
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)
    yield worker
    worker.drain()


def emitted(worker: Any) -> list[Any]:
    worker.wait_until_empty()
    # The asserting client creates its event list when it first connects,
    # which it never does in a test that emits nothing.
    return list(getattr(worker._client, "events", []))


@pytest.mark.usefixtures("prefect_server")
class TestEventMode:
    async def test_verified_webhook_emits_event(self, prefect_events: Any) -> None:
        app = create_receiver(SECRET, mode="event")
        body = prediction_body("p9", "failed")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            response = await post(client, body, sign_headers(SECRET, body, webhook_id="msg_e"))
            duplicate = await post(client, body, sign_headers(SECRET, body, webhook_id="msg_e"))

        assert response.status_code == 202
        assert duplicate.status_code == 200
        events = emitted(prefect_events)
        assert len(events) == 1
        assert events[0].event == "replicate.prediction.failed"
        assert events[0].resource.id == "replicate.prediction.p9"
        assert events[0].resource["replicate.webhook.id"] == "msg_e"
        assert events[0].payload["id"] == "p9"
        assert events[0].payload["output"] == ["https://x/out.png"]

    async def test_failed_emit_answers_503_and_retry_emits_once(
        self, prefect_events: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import prefect.events

        real_emit = prefect.events.emit_event
        rejections = [None]

        def emit_after_one_rejection(**kwargs: Any) -> Any:
            if rejections:
                return rejections.pop()
            return real_emit(**kwargs)

        monkeypatch.setattr(prefect.events, "emit_event", emit_after_one_rejection)
        app = create_receiver(SECRET, mode="event")
        body = prediction_body()
        headers = sign_headers(SECRET, body)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            rejected = await post(client, body, headers)
            retried = await post(client, body, headers)

        assert rejected.status_code == 503
        assert retried.status_code == 202
        assert [event.event for event in emitted(prefect_events)] == [
            "replicate.prediction.succeeded"
        ]

    def test_event_id_comes_from_webhook_id(self) -> None:
        from replicate_tasks.webhooks import validate

        body = prediction_body()
        webhook = validate(headers=sign_headers(SECRET, body), body=body, secret=SECRET)
        again = validate(headers=sign_headers(SECRET, body, webhook_id=webhook.id), body=body,
                         secret=SECRET)  # fmt: skip

        assert prediction_event(webhook)["id"] == prediction_event(again)["id"]
        assert isinstance(prediction_event(webhook)["id"], uuid.UUID)


class TestServed:
    def test_delivery_over_a_socket(self, handled: Handled) -> None:
        app = create_receiver(SECRET, handler=handled, max_body_bytes=2_000)
        body = prediction_body()
        headers = sign_headers(SECRET, body)

        with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
            accepted = client.post(WEBHOOK_PATH, content=body, headers=headers)
            duplicate = client.post(WEBHOOK_PATH, content=body, headers=headers)
            forged = client.post(
                WEBHOOK_PATH, content=body, headers=headers | {"webhook-signature": "v1,AA"}
            )
            large = client.post(WEBHOOK_PATH, content=b"x" * 5_000, headers=headers)

        assert url.startswith("http://127.0.0.1:")
        assert [accepted.status_code, duplicate.status_code] == [202, 200]
        assert forged.status_code == 401
        assert large.status_code == 413
        assert handled.wait_for(1) == ["p1"]


@pytest.mark.usefixtures("prefect_server")
async def test_event_too_large_answers_503(
    prefect_events: Any, receiver_logs: pytest.LogCaptureFixture
) -> None:
    from prefect.settings import PREFECT_SERVER_EVENTS_MAXIMUM_SIZE_BYTES, temporary_settings

    app = create_receiver(SECRET, mode="event")
    body = json.dumps({"id": "p-large", "status": "succeeded", "output": "x" * 5_000})
    transport = httpx.ASGITransport(app=app)
    with temporary_settings({PREFECT_SERVER_EVENTS_MAXIMUM_SIZE_BYTES: 2_000}):
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            response = await post(client, body, sign_headers(SECRET, body))

    assert response.status_code == 503
    assert emitted(prefect_events) == []
    assert "Could not hand on webhook" in receiver_logs.messages[-1]


async def test_rejection_without_id_is_logged(
    client: httpx.AsyncClient, receiver_logs: pytest.LogCaptureFixture
) -> None:
    body = prediction_body()
    headers = {k: v for k, v in sign_headers(SECRET, body).items() if k != "webhook-id"}

    response = await post(client, body, headers)

    assert response.status_code == 400
    assert receiver_logs.messages[-1].startswith(
        "Rejected webhook (no id) with 400: The webhook-id header is missing or empty."
    )
