"""Signed webhook delivery for predictions, on a background thread.

For each prediction with a `webhook`, the dispatcher POSTs the prediction JSON,
the same shape as `GET /v1/predictions/{id}`, at the events its
`webhook_events_filter` names:

- `start` once, with the prediction as it was when created (NOTE: openapi.json
  states only "immediately on prediction start"; sending it at creation matches
  the example payload in Replicate's webhook guide, which is still `starting`);
- `output` and `logs` when they change while it runs, at most one message per
  `throttle_seconds` of real time, each carrying the latest state;
- `completed` once, when it reaches a terminal status. A prediction that ends
  without `completed` in its filter gets one last `output` or `logs` message
  when they changed.

Messages are signed as Standard Webhooks: `webhook-signature` is `v1,` and the
base64 HMAC-SHA256 of `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with
the base64-decoded part of the account's `whsec_` secret. `webhook-timestamp`
is the real Unix time of each attempt, not the emulator clock, because
receivers compare it with their own clock. A message that gets a non-2xx
response or a connection error is sent again with the same `webhook-id`, up to
`attempts` times with doubling backoff. Redirects are never followed.

The worker thread runs while some prediction still has events to send. It
wakes every `poll_seconds`, on each create and cancel, and whenever a
`ManualClock` advances.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import httpx

from .clock import Clock, ManualClock
from .lifecycle import PredictionRecord, snapshot
from .prediction_requests import webhook_host_allowed
from .predictions import PredictionStore

logger = logging.getLogger("replicate_tasks.emulator")

Render = Callable[[PredictionRecord, datetime], dict[str, Any]]


@dataclass(frozen=True)
class WebhookOptions:
    """Delivery options of webhooks.

    `hosts` are host names or addresses allowed besides loopback ones.
    `attempts` is the number of tries of each message, `backoff_seconds` the
    real wait before the first retry (doubling after each), `timeout_seconds`
    the time allowed for each attempt, and `throttle_seconds` the minimum real
    time between two `output`/`logs` messages of one prediction.
    """

    hosts: frozenset[str] = frozenset()
    attempts: int = 3
    backoff_seconds: float = 0.1
    timeout_seconds: float = 5.0
    throttle_seconds: float = 0.5
    poll_seconds: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"attempts must be an integer, got {self.attempts!r}.")
        if self.attempts < 1:
            raise ValueError(f"attempts must be 1 or more, got {self.attempts}.")
        for name in ("backoff_seconds", "timeout_seconds", "throttle_seconds", "poll_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number of seconds, 0 or more, got {value!r}.")
        object.__setattr__(self, "hosts", frozenset(host.lower() for host in self.hosts))


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of a webhook message: the response status, or the connection error."""

    status_code: int | None
    error: str | None
    webhook_timestamp: str


@dataclass(frozen=True)
class Delivery:
    """One webhook message and its attempts so far.

    `webhook_id` is the same on every attempt. `delivered` is True once an
    attempt got a 2xx response, and `pending` while attempts remain.
    """

    webhook_id: str
    prediction_id: str
    event: str
    url: str
    body: str
    attempts: tuple[DeliveryAttempt, ...] = ()
    delivered: bool = False
    pending: bool = True

    @property
    def status_codes(self) -> list[int | None]:
        """The response status of each attempt, None where the connection failed."""
        return [attempt.status_code for attempt in self.attempts]

    def to_json(self) -> dict[str, Any]:
        """Return the delivery for the admin routes, without the body."""
        return {
            "webhook_id": self.webhook_id,
            "prediction_id": self.prediction_id,
            "event": self.event,
            "url": self.url,
            "delivered": self.delivered,
            "pending": self.pending,
            "attempts": [
                {"status_code": attempt.status_code, "error": attempt.error}
                for attempt in self.attempts
            ],
        }


def sign(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """Return the `webhook-signature` value for a message: `v1,` and the base64 HMAC."""
    encoded_key = secret.split("_", 1)[1] if secret.startswith("whsec_") else secret
    key = base64.b64decode(encoded_key)
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass
class _Tracker:
    prediction_id: str
    start_sent: bool = False
    last_output: str = "null"
    last_logs: str = ""
    last_change_sent_at: float = float("-inf")


@dataclass
class _Message:
    index: int
    url: str
    body: bytes
    webhook_id: str = field(default_factory=lambda: "msg_" + secrets.token_hex(13))


class WebhookDispatcher:
    """Sends the webhooks of one emulator's predictions. Safe to use from several threads."""

    def __init__(
        self,
        *,
        predictions: PredictionStore,
        clock: Clock,
        secret: str,
        render: Render,
        options: WebhookOptions,
    ) -> None:
        self.predictions = predictions
        self.clock = clock
        self.secret = secret
        self.render = render
        self.options = options
        self._condition = threading.Condition()
        self._stopped = threading.Event()
        self._trackers: dict[str, _Tracker] = {}
        self._deliveries: list[Delivery] = []
        self._thread: threading.Thread | None = None
        self._wake_requested = False
        self._requested_pass = 0
        self._completed_pass = 0
        self._remove_listener: Callable[[], None] | None = None
        if isinstance(clock, ManualClock):
            self._remove_listener = clock.add_listener(self.wake)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook message so far, in the order they were queued."""
        with self._condition:
            return list(self._deliveries)

    def track(self, record: PredictionRecord) -> None:
        """Start sending the webhooks of a new prediction."""
        if record.webhook is None:
            return
        with self._condition:
            if self._stopped.is_set():
                raise RuntimeError("The emulator is closed, so it sends no more webhooks.")
            self._trackers[record.id] = _Tracker(prediction_id=record.id)
            self._ensure_worker()
            self._wake_requested = True
            self._condition.notify_all()

    def wake(self) -> None:
        """Check for due events now instead of at the next poll."""
        with self._condition:
            self._wake_requested = True
            self._condition.notify_all()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every event due now has been delivered or has run out of attempts.

        Events that fall due later, such as `completed` for a prediction still
        running on a `ManualClock`, are not waited for. Raises TimeoutError
        after `timeout` real seconds.
        """
        deadline = time.monotonic() + timeout
        with self._condition:
            if self._thread is None:
                return
            self._requested_pass += 1
            target = self._requested_pass
            self._wake_requested = True
            self._condition.notify_all()
            while self._completed_pass < target and self._thread is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pending = sum(1 for delivery in self._deliveries if delivery.pending)
                    raise TimeoutError(
                        f"Webhooks were still being sent after {timeout:g} seconds: "
                        f"{pending} messages pending. Check that the receiver responds "
                        "with 2xx, or pass a longer timeout."
                    )
                self._condition.wait(remaining)

    def reset(self) -> None:
        """Stop tracking every prediction and forget the deliveries."""
        with self._condition:
            self._trackers.clear()
            self._deliveries.clear()

    def close(self) -> None:
        """Stop the worker thread; messages not yet sent are dropped."""
        with self._condition:
            self._stopped.set()
            self._condition.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.options.timeout_seconds + 1)
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None

    def _ensure_worker(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="replicate-emulator-webhooks", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        client = httpx.Client(
            follow_redirects=False, timeout=self.options.timeout_seconds, trust_env=False
        )
        try:
            while True:
                with self._condition:
                    if not self._wake_requested and not self._stopped.is_set():
                        self._condition.wait(self.options.poll_seconds)
                    if self._stopped.is_set():
                        self._thread = None
                        self._condition.notify_all()
                        return
                    self._wake_requested = False
                    current_pass = self._requested_pass

                for message in self._collect():
                    self._deliver(client, message)

                with self._condition:
                    self._completed_pass = current_pass
                    self._condition.notify_all()
                    idle = not self._trackers and self._requested_pass == current_pass
                    if idle or self._stopped.is_set():
                        self._thread = None
                        return
        finally:
            client.close()

    def _collect(self) -> list[_Message]:
        """Queue the messages due now, in order, and stop tracking finished predictions."""
        now = self.clock.now()
        with self._condition:
            trackers = list(self._trackers.values())

        messages: list[_Message] = []
        for tracker in trackers:
            record = self.predictions.find(tracker.prediction_id)
            if record is None or record.webhook is None:
                self._untrack(tracker)
                continue
            for event, document in self._due_events(tracker, record, now):
                messages.append(self._queue(record, event, document))
        return messages

    def _due_events(
        self, tracker: _Tracker, record: PredictionRecord, now: datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        events = record.webhook_events
        due: list[tuple[str, dict[str, Any]]] = []
        if "start" in events and not tracker.start_sent:
            due.append(("start", self.render(record, record.created_at)))
            tracker.start_sent = True

        document = self.render(record, now)
        output = json.dumps(document["output"], sort_keys=True)
        logs = str(document["logs"])
        change = _change_event(events, output != tracker.last_output, logs != tracker.last_logs)
        terminal = snapshot(record, now).terminal

        if terminal:
            if "completed" in events:
                due.append(("completed", document))
            elif change is not None:
                due.append((change, document))
            self._untrack(tracker)
            return due

        real_now = time.monotonic()
        throttled = real_now - tracker.last_change_sent_at < self.options.throttle_seconds
        if change is not None and throttled:
            return due
        if change is not None:
            due.append((change, document))
            tracker.last_change_sent_at = real_now
        tracker.last_output = output
        tracker.last_logs = logs
        if events <= {"start"}:
            self._untrack(tracker)
        return due

    def _queue(self, record: PredictionRecord, event: str, document: dict[str, Any]) -> _Message:
        assert record.webhook is not None
        body = json.dumps(document, separators=(",", ":")).encode()
        with self._condition:
            message = _Message(index=len(self._deliveries), url=record.webhook, body=body)
            self._deliveries.append(
                Delivery(
                    webhook_id=message.webhook_id,
                    prediction_id=record.id,
                    event=event,
                    url=record.webhook,
                    body=body.decode(),
                )
            )
        return message

    def _deliver(self, client: httpx.Client, message: _Message) -> None:
        for attempt in range(1, self.options.attempts + 1):
            if self._stopped.is_set():
                break
            timestamp = str(int(time.time()))
            status_code, error = self._post(client, message, timestamp)
            delivered = status_code is not None and 200 <= status_code < 300
            last = delivered or attempt == self.options.attempts
            self._record(message, DeliveryAttempt(status_code, error, timestamp), delivered, last)
            if delivered:
                return

            outcome = f"status {status_code}" if status_code is not None else error
            logger.warning(
                "Webhook %s to %s failed on attempt %d of %d: %s.",
                message.webhook_id,
                message.url,
                attempt,
                self.options.attempts,
                outcome,
            )
            if not last:
                self._stopped.wait(self.options.backoff_seconds * 2 ** (attempt - 1))
        self._record(message, None, False, True)

    def _post(
        self, client: httpx.Client, message: _Message, timestamp: str
    ) -> tuple[int | None, str | None]:
        if not webhook_host_allowed(message.url, self.options.hosts):
            return None, "The webhook host is not allowed."
        headers = {
            "content-type": "application/json",
            "user-agent": "replicate-tasks-emulator",
            "webhook-id": message.webhook_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": sign(self.secret, message.webhook_id, timestamp, message.body),
        }
        try:
            response = client.post(message.url, content=message.body, headers=headers)
        except httpx.HTTPError as error:
            return None, f"{type(error).__name__}: {error}"
        return response.status_code, None

    def _record(
        self,
        message: _Message,
        attempt: DeliveryAttempt | None,
        delivered: bool,
        last: bool,
    ) -> None:
        with self._condition:
            if message.index >= len(self._deliveries):
                return
            delivery = self._deliveries[message.index]
            if delivery.webhook_id != message.webhook_id:
                return
            attempts = delivery.attempts if attempt is None else (*delivery.attempts, attempt)
            self._deliveries[message.index] = replace(
                delivery,
                attempts=attempts,
                delivered=delivery.delivered or delivered,
                pending=delivery.pending and not last,
            )

    def _untrack(self, tracker: _Tracker) -> None:
        with self._condition:
            self._trackers.pop(tracker.prediction_id, None)


def _change_event(events: Collection[str], output_changed: bool, logs_changed: bool) -> str | None:
    """Return the event for a change of output or logs that the filter requests, or None."""
    if output_changed and "output" in events:
        return "output"
    if logs_changed and "logs" in events:
        return "logs"
    return None
