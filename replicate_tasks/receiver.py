"""A small web app that receives Replicate webhooks and hands verified ones on.

`create_receiver` builds a Starlette app with one route, `POST
/webhooks/replicate`. For each delivery it reads the raw body (up to
`max_body_bytes`), verifies it with `replicate_tasks.webhooks.validate`, responds
at once, and hands the prediction on in one of two modes:

- `"flow"`: calls `handler(prediction)` on a background thread of this
  process, one delivery at a time, for example a Prefect flow.
- `"event"`: emits the Prefect event `replicate.prediction.<status>` about the
  resource `replicate.prediction.<id>`, with the prediction as its payload, so
  that deployment triggers can start flows anywhere.

Responses:

| status | when |
|---|---|
| 202 | verified and handed on |
| 200 | a duplicate of a delivery that was already handed on: not handed on again |
| 400 | a missing or malformed header, an empty body, or a body that is not a prediction |
| 401 | no matching signature, or a timestamp outside the tolerance |
| 413 | a body larger than `max_body_bytes` |
| 503 | the hand-off failed (backlog full, event not sent): the id is forgotten |

Rejection bodies give no reason, so they teach a forger nothing. The reason
and the webhook id are logged on the `replicate_tasks.receiver` logger instead.

Prefect is imported only in `"event"` mode, at the first delivery, so this
module imports quickly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Literal

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .models import Prediction
from .webhooks import (
    ID_HEADER,
    InvalidSecretKeyError,
    InvalidSignatureError,
    InvalidTimestampError,
    MemoryReplayStore,
    ReplayedWebhookError,
    ReplayStore,
    Secret,
    Tolerance,
    VerifiedWebhook,
    WebhookValidationError,
    signing_key,
    validate,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_PORT",
    "SECRET_ENVIRONMENT_VARIABLE",
    "WEBHOOK_PATH",
    "create_receiver",
    "prediction_event",
    "run_receiver",
]

logger = logging.getLogger("replicate_tasks.receiver")

WEBHOOK_PATH: Final = "/webhooks/replicate"
DEFAULT_PORT: Final = 8788
DEFAULT_MAX_BODY_BYTES: Final = 1_000_000
DEFAULT_MAX_PENDING: Final = 100
SECRET_ENVIRONMENT_VARIABLE: Final = "REPLICATE_WEBHOOK_SECRET"

# Event ids are derived from the webhook id, so two emissions of one delivery
# carry the same event id.
_EVENT_NAMESPACE: Final = uuid.UUID("5f0d2b53-2a43-4c1e-9a55-0b7f1c6f2f11")
_STOP: Final = object()

Mode = Literal["flow", "event"]
Handler = Callable[[Prediction], object]


class HandOffError(Exception):
    """A verified webhook could not be handed on, so the sender should retry it."""


def create_receiver(
    secret: Secret | None = None,
    *,
    mode: Mode = "flow",
    handler: Handler | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    tolerance: Tolerance = None,
    replay_store: ReplayStore | None = None,
    max_pending: int = DEFAULT_MAX_PENDING,
) -> Starlette:
    """Build the webhook receiver app.

    Args:
        secret: The signing secret. Defaults to the `REPLICATE_WEBHOOK_SECRET`
            environment variable. It is decoded now, so a bad one fails here.
        mode: `"flow"` calls `handler` in the background, `"event"` emits a
            Prefect event.
        handler: Required in mode `"flow"`, not allowed in mode `"event"`.
            Called with the `Prediction` on a background thread, one delivery
            at a time; `flows.webhook.handle_prediction_event` is the bundled one.
        max_body_bytes: Larger bodies get a 413 response.
        tolerance: Passed to `validate`: seconds, None for the default, or
            `SKIP_TIMESTAMP_CHECK`.
        replay_store: Where accepted webhook ids are kept; defaults to a new
            `MemoryReplayStore`. Share one store between replicas.
        max_pending: In mode `"flow"`, the number of deliveries that may wait
            for the handler. Beyond it, deliveries get a 503 response.

    Raises:
        InvalidSecretKeyError: No secret, or one that does not decode.
        ValueError: `mode`, `max_body_bytes` or `max_pending` is invalid.
        TypeError: `handler` does not fit the mode.
    """
    if secret is None:
        secret = os.environ.get(SECRET_ENVIRONMENT_VARIABLE) or None
    if secret is None:
        raise InvalidSecretKeyError(
            "No webhook signing secret was given. Pass secret= or set "
            f"{SECRET_ENVIRONMENT_VARIABLE} to the key that GET /v1/webhooks/default/secret "
            "returns."
        )
    key = signing_key(secret)
    _check_positive("max_body_bytes", max_body_bytes)
    _check_positive("max_pending", max_pending)
    hand_off = _make_hand_off(mode, handler, max_pending)

    receiver = _Receiver(
        key=key,
        tolerance=tolerance,
        replay_store=replay_store if replay_store is not None else MemoryReplayStore(),
        max_body_bytes=max_body_bytes,
        hand_off=hand_off,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(hand_off.close)

    app = Starlette(
        routes=[Route(WEBHOOK_PATH, receiver.receive, methods=["POST"])],
        lifespan=lifespan,
    )
    app.state.replay_store = receiver.replay_store
    return app


def run_receiver(host: str = "127.0.0.1", port: int = DEFAULT_PORT, **options: Any) -> None:
    """Serve a receiver with uvicorn until interrupted. This call blocks.

    `options` are passed to `create_receiver`. The default host accepts
    connections from this machine only. Put a TLS-terminating proxy in front
    to receive webhooks from Replicate, which sends them to HTTPS URLs. When
    logging is not configured yet, INFO lines go to stderr.
    """
    import uvicorn

    app = create_receiver(**options)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logger.info("Receiving Replicate webhooks on http://%s:%s%s", host, port, WEBHOOK_PATH)
    uvicorn.run(app, host=host, port=port)


def prediction_event(webhook: VerifiedWebhook) -> dict[str, Any]:
    """Return the keyword arguments of `prefect.events.emit_event` for a webhook.

    The event is `replicate.prediction.<status>`, about the resource
    `replicate.prediction.<id>`, with the prediction as its payload and an
    event id derived from the webhook id.
    """
    prediction = webhook.prediction
    return {
        "event": f"replicate.prediction.{prediction.status}",
        "resource": {
            "prefect.resource.id": f"replicate.prediction.{prediction.id}",
            "prefect.resource.name": prediction.id,
            "replicate.webhook.id": webhook.id,
        },
        "payload": prediction.model_dump(mode="json"),
        "id": uuid.uuid5(_EVENT_NAMESPACE, webhook.id),
    }


class _Receiver:
    def __init__(
        self,
        *,
        key: bytes,
        tolerance: Tolerance,
        replay_store: ReplayStore,
        max_body_bytes: int,
        hand_off: _HandOff,
    ) -> None:
        self.key = key
        self.tolerance = tolerance
        self.replay_store = replay_store
        self.max_body_bytes = max_body_bytes
        self.hand_off = hand_off

    async def receive(self, request: Request) -> Response:
        webhook_id = _loggable(request.headers.get(ID_HEADER, "")) or "(no id)"
        body = await self._read_body(request, webhook_id)
        if isinstance(body, Response):
            return body

        try:
            webhook = validate(
                headers=request.headers,
                body=body,
                secret=self.key,
                tolerance=self.tolerance,
                replay_store=self.replay_store,
            )
        except ReplayedWebhookError:
            logger.info("Ignored webhook %s: already received.", webhook_id)
            return PlainTextResponse("Already received.", status_code=200)
        except WebhookValidationError as exc:
            status = _rejection_status(exc)
            logger.warning("Rejected webhook %s with %d: %s", webhook_id, status, exc)
            return _rejection(status)

        try:
            await self.hand_off(webhook)
        except Exception as exc:
            self.replay_store.discard(webhook.id)
            logger.error(
                "Could not hand on webhook %s for prediction %s, so responded 503 for "
                "Replicate to send it again: %s",
                webhook_id,
                webhook.prediction.id,
                exc,
                exc_info=not isinstance(exc, HandOffError),
            )
            return PlainTextResponse(
                "Try again later.", status_code=503, headers={"Retry-After": "5"}
            )

        logger.info(
            "Accepted webhook %s for prediction %s (%s).",
            webhook_id,
            webhook.prediction.id,
            webhook.prediction.status,
        )
        return PlainTextResponse("Accepted.", status_code=202)

    async def _read_body(self, request: Request, webhook_id: str) -> bytes | Response:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                logger.warning(
                    "Rejected webhook %s with 400: Content-Length %s is not a number.",
                    webhook_id,
                    _loggable(declared),
                )
                return _rejection(400)
            if int(declared) > self.max_body_bytes:
                return self._too_large(webhook_id, f"Content-Length is {int(declared)}")

        # Content-Length may be absent (chunked) or wrong, so the stream is counted too.
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body_bytes:
                return self._too_large(webhook_id, f"the body passed {self.max_body_bytes}")
        return bytes(body)

    def _too_large(self, webhook_id: str, found: str) -> Response:
        logger.warning(
            "Rejected webhook %s with 413: %s bytes, and the limit is %d bytes.",
            webhook_id,
            found,
            self.max_body_bytes,
        )
        return _rejection(413)


class _HandOff:
    """Passes a verified webhook on, or raises so that the sender retries it."""

    async def __call__(self, webhook: VerifiedWebhook) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the hand-off holds when the app shuts down."""


class _BackgroundHandOff(_HandOff):
    """Queues webhooks for one daemon thread that calls the handler on each in turn."""

    def __init__(self, handler: Handler, max_pending: int) -> None:
        self.handler = handler
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def __call__(self, webhook: VerifiedWebhook) -> None:
        self._ensure_started()
        try:
            self._queue.put_nowait(webhook)
        except queue.Full:
            raise HandOffError(
                f"{self._queue.maxsize} deliveries are already waiting for the handler"
            ) from None

    def close(self) -> None:
        with self._lock:
            thread = self._thread
            self._thread = None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout=30)

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="replicate-webhook-handler", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, VerifiedWebhook)
            try:
                self.handler(item.prediction)
            except Exception:
                # The delivery already got a 202 response, so Replicate will not
                # send it again, and the failure is only logged.
                logger.exception(
                    "The handler failed on webhook %s for prediction %s.",
                    _loggable(item.id),
                    item.prediction.id,
                )


class _EventHandOff(_HandOff):
    """Emits one Prefect event per webhook."""

    async def __call__(self, webhook: VerifiedWebhook) -> None:
        await run_in_threadpool(self._emit, webhook)

    @staticmethod
    def _emit(webhook: VerifiedWebhook) -> None:
        from prefect.events import emit_event

        # emit_event queues the event for Prefect's background sender and
        # returns None when events are off or could not be queued.
        if emit_event(**prediction_event(webhook)) is None:
            raise HandOffError(
                "Prefect did not accept the event. Check PREFECT_API_URL and that "
                "events are enabled"
            )


def _make_hand_off(mode: str, handler: Handler | None, max_pending: int) -> _HandOff:
    if mode == "event":
        if handler is not None:
            raise TypeError(
                "handler is used only in mode 'flow'. In mode 'event' the receiver emits "
                "a Prefect event, and a deployment trigger picks the flow."
            )
        return _EventHandOff()
    if mode == "flow":
        if handler is None:
            raise TypeError(
                "mode 'flow' needs handler=, the function or flow to call with each "
                "verified Prediction, such as flows.webhook.handle_prediction_event."
            )
        return _BackgroundHandOff(handler, max_pending)
    raise ValueError(f"mode must be 'flow' or 'event', got {mode!r}.")


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer of 1 or more, got {value!r}.")


def _rejection_status(exc: WebhookValidationError) -> int:
    if isinstance(exc, InvalidSignatureError):
        return 401
    if isinstance(exc, InvalidTimestampError) and exc.skew is not None:
        return 401
    return 400


_REJECTION_TEXT: Final = {
    400: "Bad request.",
    401: "Unauthorized.",
    413: "Payload too large.",
}


def _rejection(status: int) -> Response:
    return PlainTextResponse(_REJECTION_TEXT[status], status_code=status)


def _loggable(value: str, limit: int = 64) -> str:
    """Return a header value that is safe to log: printable characters only, cut to `limit`.

    An empty value gives an empty string.
    """
    if not value:
        return ""
    printable = "".join(c if c.isprintable() else "?" for c in value[:limit])
    text = repr(printable)
    return text if len(value) <= limit else f"{text}..."
