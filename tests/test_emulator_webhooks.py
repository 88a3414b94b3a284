"""Tests of the emulator's signed webhook delivery, against a receiver on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from replicate_tasks.emulator import Emulator, ManualClock, WebhookOptions
from replicate_tasks.emulator.webhooks import sign

AUTH = {"Authorization": "Bearer test-token"}
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
HELLO_WORLD_VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
FAST = WebhookOptions(attempts=3, backoff_seconds=0.01, throttle_seconds=0, timeout_seconds=2)
ALL_EVENTS = ["start", "output", "logs", "completed"]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


@dataclass
class Receiver:
    """A webhook receiver that responds with the queued statuses, then 200."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else 200


@contextmanager
def receiver(*statuses: int) -> Iterator[Receiver]:
    state = Receiver(statuses=list(statuses))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with state.lock:
                headers = {key.lower(): value for key, value in self.headers.items()}
                state.received.append(Received(self.path, headers, body))
            status = state.next_status()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def expected_signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """Compute a Standard Webhooks v1 signature independently of the emulator."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def assert_signed(message: Received, secret: str) -> None:
    headers = message.headers
    expected = expected_signature(
        secret, headers["webhook-id"], headers["webhook-timestamp"], message.body
    )
    entries = headers["webhook-signature"].split(" ")
    assert any(
        entry.startswith("v1,") and hmac.compare_digest(entry[3:], expected) for entry in entries
    )


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(clock=ManualClock(START), webhook_options=FAST) as emulator:
        emulator.configure(predict_seconds=2)
        yield emulator


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://emulator.test", headers=AUTH
    ) as http:
        yield http


def advance(emulator: Emulator, seconds: float) -> None:
    assert isinstance(emulator.clock, ManualClock)
    emulator.clock.advance(seconds)


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"version": HELLO_WORLD_VERSION, "input": {"text": "Alice"}, **fields}
    response = await client.post("/v1/predictions", json=body)
    assert response.status_code == 202, response.text
    document: dict[str, Any] = response.json()
    return document


async def test_events_in_order(client: httpx.AsyncClient, emulator: Emulator) -> None:
    with receiver() as hooks:
        created = await create(
            client, webhook=hooks.url + "?run=7", webhook_events_filter=ALL_EVENTS
        )
        await emulator.aflush_webhooks()
        advance(emulator, 1)
        await emulator.aflush_webhooks()
        advance(emulator, 1)
        await emulator.aflush_webhooks()
        final = (await client.get(f"/v1/predictions/{created['id']}")).json()

    events = [delivery.event for delivery in emulator.deliveries]
    bodies = [message.json() for message in hooks.received]
    assert events == ["start", "logs", "logs", "completed"]
    assert [message.path for message in hooks.received] == ["/hooks?run=7"] * 4
    assert [body["status"] for body in bodies] == ["processing"] * 3 + ["succeeded"]
    assert [len(body["logs"].splitlines()) for body in bodies] == [1, 1, 3, 5]
    assert bodies[-1] == final
    assert all(delivery.status_codes == [200] for delivery in emulator.deliveries)
    assert len({delivery.webhook_id for delivery in emulator.deliveries}) == 4


async def test_default_filter_output_and_completed(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    with receiver() as hooks:
        await create(client, webhook=hooks.url)
        await emulator.aflush_webhooks()
        advance(emulator, 1)
        await emulator.aflush_webhooks()
        advance(emulator, 1)
        await emulator.aflush_webhooks()

    assert [delivery.event for delivery in emulator.deliveries] == ["completed"]
    assert hooks.received[0].json()["output"].startswith("Emulated output")


async def test_filter_without_completed(client: httpx.AsyncClient, emulator: Emulator) -> None:
    with receiver() as hooks:
        await create(client, webhook=hooks.url, webhook_events_filter=["start"])
        await create(client, webhook=hooks.url, webhook_events_filter=["output"])
        advance(emulator, 5)
        await emulator.aflush_webhooks()

    events = sorted(delivery.event for delivery in emulator.deliveries)
    assert events == ["output", "start"]
    output_message = next(m for m in hooks.received if m.json()["status"] == "succeeded")
    assert output_message.json()["output"].startswith("Emulated output")


async def test_cancel_sends_completed(client: httpx.AsyncClient, emulator: Emulator) -> None:
    with receiver() as hooks:
        created = await create(client, webhook=hooks.url, webhook_events_filter=["completed"])
        await client.post(f"/v1/predictions/{created['id']}/cancel")
        await emulator.aflush_webhooks()

    assert [delivery.event for delivery in emulator.deliveries] == ["completed"]
    assert hooks.received[0].json()["status"] == "canceled"


async def test_signature_headers_valid(client: httpx.AsyncClient, emulator: Emulator) -> None:
    secret = (await client.get("/v1/webhooks/default/secret")).json()["key"]
    with receiver() as hooks:
        await create(client, webhook=hooks.url, webhook_events_filter=["start"])
        await emulator.aflush_webhooks()

    message = hooks.received[0]
    assert secret == emulator.webhook_secret
    assert message.headers["content-type"] == "application/json"
    assert message.headers["webhook-id"].startswith("msg_")
    assert message.headers["webhook-id"] == emulator.deliveries[0].webhook_id
    assert abs(int(message.headers["webhook-timestamp"]) - time.time()) < 10
    assert message.headers["webhook-signature"].startswith("v1,")
    assert_signed(message, secret)


def test_sign_matches_published_vector() -> None:
    # The Standard Webhooks reference vector, also used by the official Python client's tests.
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        b'{"test": 2432232314}',
    )

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signature[3:] == expected_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        b'{"test": 2432232314}',
    )


async def test_retry_keeps_webhook_id(client: httpx.AsyncClient, emulator: Emulator) -> None:
    with receiver(500, 200) as hooks:
        await create(client, webhook=hooks.url, webhook_events_filter=["start"])
        await emulator.aflush_webhooks()

    first, second = hooks.received
    delivery = emulator.deliveries[0]
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert_signed(first, emulator.webhook_secret)
    assert_signed(second, emulator.webhook_secret)
    assert delivery.status_codes == [500, 200]
    assert delivery.delivered is True
    assert delivery.pending is False


async def test_retries_give_up(client: httpx.AsyncClient, emulator: Emulator) -> None:
    with receiver(503, 503, 503, 503) as hooks:
        await create(client, webhook=hooks.url, webhook_events_filter=["start"])
        await emulator.aflush_webhooks()

    delivery = emulator.deliveries[0]
    assert len(hooks.received) == 3
    assert delivery.status_codes == [503, 503, 503]
    assert delivery.delivered is False
    assert delivery.pending is False


async def test_redirect_not_followed(client: httpx.AsyncClient, emulator: Emulator) -> None:
    with receiver(307, 307, 307) as hooks:
        await create(client, webhook=hooks.url, webhook_events_filter=["start"])
        await emulator.aflush_webhooks()

    assert [message.path for message in hooks.received] == ["/hooks"] * 3
    assert emulator.deliveries[0].status_codes == [307, 307, 307]


async def test_connection_error_retried(client: httpx.AsyncClient, emulator: Emulator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    await create(
        client,
        webhook=f"http://127.0.0.1:{closed_port}/hooks",
        webhook_events_filter=["start"],
    )
    await emulator.aflush_webhooks()

    delivery = emulator.deliveries[0]
    assert delivery.status_codes == [None, None, None]
    assert all(attempt.error for attempt in delivery.attempts)
    assert delivery.delivered is False


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/replicate",
        "http://10.0.0.8/hooks",
        "http://169.254.169.254/latest",
        "http://localhost.example.com/hooks",
    ],
)
async def test_non_loopback_webhook_rejected(client: httpx.AsyncClient, url: str) -> None:
    body = {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}, "webhook": url}

    response = await client.post("/v1/predictions", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "webhook_hosts" in detail
    assert "loopback" in detail
    assert url in detail


@pytest.mark.parametrize(
    "url", ["http://localhost:9/hooks", "http://127.3.2.1:9/hooks", "http://[::1]:9/hooks"]
)
async def test_loopback_webhooks_accepted(client: httpx.AsyncClient, url: str) -> None:
    await create(client, webhook=url, webhook_events_filter=[])


async def test_allowed_webhook_host() -> None:
    with Emulator(clock=ManualClock(START), webhook_hosts=["Hooks.Example.com"]) as emulator:
        async with httpx.AsyncClient(
            transport=emulator.transport(), base_url="http://emulator.test", headers=AUTH
        ) as client:
            # An empty filter means no events, so nothing is sent to the allowed host.
            created = await create(
                client, webhook="https://hooks.example.com/replicate", webhook_events_filter=[]
            )
        emulator.flush_webhooks(timeout=2)

    assert created["status"] == "processing"
    assert emulator.deliveries == []


def test_served_webhook_admin_routes() -> None:
    with (
        Emulator(clock=ManualClock(START), webhook_options=FAST) as emulator,
        receiver() as hooks,
        emulator.serve() as url,
        httpx.Client(base_url=url) as http,
    ):
        created = http.post(
            "/v1/predictions",
            headers=AUTH,
            json={
                "version": HELLO_WORLD_VERSION,
                "input": {"text": "x"},
                "webhook": hooks.url,
                "webhook_events_filter": ["completed"],
            },
        )
        http.post("/_emulator/clock/advance", json={"seconds": 10})
        flushed = http.post("/_emulator/webhooks/flush", json={"timeout": 5})
        listed = http.get("/_emulator/webhooks")
        bad_timeout = http.post("/_emulator/webhooks/flush", json={"timeout": "soon"})

    assert created.status_code == 202
    assert flushed.status_code == 200
    deliveries = listed.json()["deliveries"]
    assert [item["event"] for item in deliveries] == ["completed"]
    assert deliveries[0]["attempts"] == [{"status_code": 200, "error": None}]
    assert deliveries[0]["delivered"] is True
    assert hooks.received[0].json()["status"] == "succeeded"
    assert bad_timeout.status_code == 422


def test_flush_times_out_when_receiver_hangs() -> None:
    options = WebhookOptions(attempts=1, timeout_seconds=1.5)
    hang = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hang.wait(3)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with Emulator(clock=ManualClock(START), webhook_options=options) as emulator:
            with emulator.serve() as url:
                httpx.post(
                    f"{url}/v1/predictions",
                    headers=AUTH,
                    json={
                        "version": HELLO_WORLD_VERSION,
                        "input": {"text": "x"},
                        "webhook": f"http://127.0.0.1:{server.server_address[1]}/",
                        "webhook_events_filter": ["start"],
                    },
                )
                with pytest.raises(TimeoutError, match="1 messages pending"):
                    emulator.flush_webhooks(timeout=0.2)
            hang.set()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_webhook_options_validated() -> None:
    with pytest.raises(ValueError, match="attempts"):
        WebhookOptions(attempts=0)
    with pytest.raises(ValueError, match="backoff_seconds"):
        WebhookOptions(backoff_seconds=-1)
    with pytest.raises(TypeError, match="webhook_hosts"):
        Emulator(webhook_hosts="example.com")
