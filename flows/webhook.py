"""Prefect flows that handle Replicate prediction webhooks.

- `handle_prediction_webhook(headers, body)` verifies a delivery with the
  `validate_webhook` task first. When verification fails, the flow run fails
  with the reason and no other task runs. When it passes, the flow handles the
  prediction by its status.
- `handle_prediction_event(prediction)` handles a prediction that was already
  verified: by the receiver in mode "flow", or, through a deployment trigger,
  from the payload of a `replicate.prediction.<status>` event that the receiver
  emitted in mode "event".

Handling by status:

- `succeeded`: the outputs are saved under `<output_dir>/<prediction id>/`.
  Strings that are `http(s)://` URLs or `data:` URIs are files and are
  downloaded or decoded, up to `max_output_bytes` each. Any other output is
  written to `output.json`, with each file replaced by its local name.
- `failed`, `canceled`, `aborted`: the error and the last lines of the logs go
  to a markdown artifact and a warning log line.
- `starting`, `processing`: logged, nothing else.

`output_dir` defaults to `REPLICATE_TASKS_OUTPUT_DIR`, then to
`replicate-outputs` in the working directory. The signing secret is read from
`REPLICATE_WEBHOOK_SECRET` inside the task, so it is never a parameter, a
result, or part of a log line.
"""

# No `from __future__ import annotations` here: when a deployment runs a flow,
# Prefect builds the parameter model from these annotations, and a pydantic
# model named in a string annotation (such as Prediction) then fails to resolve.
import json
import mimetypes
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel
from starlette.applications import Starlette

from replicate_tasks.credentials import CREDENTIALS_ENVIRONMENT_VARIABLE, ReplicateCredentials
from replicate_tasks.files import decode_data_uri, is_data_uri, is_file_reference
from replicate_tasks.models import Prediction
from replicate_tasks.receiver import SECRET_ENVIRONMENT_VARIABLE, create_receiver
from replicate_tasks.webhooks import InvalidSecretKeyError, MemoryReplayStore, validate

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_OUTPUT_DIR",
    "OUTPUT_DIR_ENVIRONMENT_VARIABLE",
    "HandledPrediction",
    "OutputSaveError",
    "create_flow_receiver",
    "handle_prediction",
    "handle_prediction_event",
    "handle_prediction_webhook",
    "record_prediction_failure",
    "save_prediction_outputs",
    "validate_webhook",
]

OUTPUT_DIR_ENVIRONMENT_VARIABLE = "REPLICATE_TASKS_OUTPUT_DIR"
DEFAULT_OUTPUT_DIR = "replicate-outputs"
DEFAULT_MAX_OUTPUT_BYTES = 100 * 1024 * 1024
LOG_LINES_RECORDED = 20
FAILED_STATUSES = frozenset({"failed", "canceled", "aborted"})
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)

# Replicate serves prediction files from replicate.delivery and its subdomains.
# Other hosts must be trusted explicitly, so that a forged or mistaken payload
# cannot make a worker fetch internal addresses.
OUTPUT_HOSTS_ENVIRONMENT_VARIABLE = "REPLICATE_TASKS_OUTPUT_HOSTS"
DEFAULT_OUTPUT_HOSTS = ("replicate.delivery", "*.replicate.delivery")

# Webhook ids accepted by this process. Each run of a deployment is its own
# process, so this stops replays within one worker only. The receiver keeps
# its own store.
_accepted_webhooks = MemoryReplayStore()


class OutputSaveError(RuntimeError):
    """An output could not be saved: not decodable, too large, or its download failed."""


class HandledPrediction(BaseModel):
    """The outcome of handling one prediction in a flow.

    `action` is `saved` (outputs written to `files`), `recorded` (a failure
    recorded as an artifact) or `ignored` (the prediction is not finished).
    """

    prediction_id: str
    status: str
    action: Literal["saved", "recorded", "ignored"]
    files: list[str] = []


def _secret_from_block() -> str | None:
    name = os.environ.get(CREDENTIALS_ENVIRONMENT_VARIABLE)
    if not name:
        return None
    credentials = ReplicateCredentials.load(name)
    assert isinstance(credentials, ReplicateCredentials)
    if credentials.webhook_secret is None:
        return None
    return credentials.webhook_secret.get_secret_value()


@task(name="Validate Replicate webhook", cache_policy=NO_CACHE, retries=0)
def validate_webhook(headers: dict[str, str], body: str) -> Prediction:
    """Verify a webhook delivery with the account's webhook signing secret.

    The secret comes from the credentials block named in
    `REPLICATE_TASKS_CREDENTIALS` when that block has one, else from
    `REPLICATE_WEBHOOK_SECRET`. `body` is the raw body decoded as UTF-8. It is
    encoded back before the signature check, so pass it unchanged. Returns the
    prediction, and raises a `WebhookValidationError` subclass when the delivery
    is not genuine.
    """
    secret = _secret_from_block() or os.environ.get(SECRET_ENVIRONMENT_VARIABLE)
    if not secret:
        raise InvalidSecretKeyError(
            f"{SECRET_ENVIRONMENT_VARIABLE} is not set. Set it to the key that "
            "GET /v1/webhooks/default/secret returns."
        )
    webhook = validate(headers=headers, body=body, secret=secret, replay_store=_accepted_webhooks)
    get_run_logger().info(
        "Verified webhook %s for prediction %s (%s)",
        webhook.id,
        webhook.prediction.id,
        webhook.prediction.status,
    )
    return webhook.prediction


@task(
    name="Save Replicate prediction outputs",
    task_run_name="save-outputs-{prediction.id}",
    cache_policy=NO_CACHE,
    retries=0,
)
def save_prediction_outputs(
    prediction: Prediction,
    output_dir: str,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> list[str]:
    """Save the outputs of a succeeded prediction and return the paths written.

    Files go to `<output_dir>/<prediction id>/`. Raises `OutputSaveError` when a
    file cannot be fetched or is larger than `max_output_bytes`.
    """
    logger = get_run_logger()
    directory = Path(output_dir) / _safe_file_name(prediction.id, "prediction")
    directory.mkdir(parents=True, exist_ok=True)

    saver = _OutputSaver(directory, max_output_bytes)
    with saver.open():
        document = saver.replace_files(prediction.output)
    if saver.files and _only_files(prediction.output):
        paths = saver.files
    else:
        json_path = directory / "output.json"
        json_path.write_text(_to_json(document), encoding="utf-8")
        paths = [*saver.files, json_path]

    logger.info("Saved %d files of prediction %s in %s", len(paths), prediction.id, directory)
    return [str(path) for path in paths]


@task(
    name="Record failed Replicate prediction",
    task_run_name="record-failure-{prediction.id}",
    cache_policy=NO_CACHE,
    retries=0,
)
def record_prediction_failure(prediction: Prediction) -> None:
    """Record a failed, canceled or aborted prediction as an artifact and a log line."""
    error = prediction.error or "no error message"
    get_run_logger().warning("Prediction %s %s: %s", prediction.id, prediction.status, error)
    create_markdown_artifact(
        key=_artifact_key(prediction.id),
        markdown=failure_markdown(prediction),
        description=f"Replicate prediction {prediction.id} {prediction.status}",
    )


def failure_markdown(prediction: Prediction) -> str:
    """Return the markdown report of a prediction that did not succeed."""
    log_lines = (prediction.logs or "").splitlines()[-LOG_LINES_RECORDED:]
    sections = [
        f"# Replicate prediction {prediction.id}: {prediction.status}",
        f"- model: {prediction.model or 'unknown'}\n"
        f"- version: {prediction.version or 'unknown'}\n"
        f"- completed at: {prediction.completed_at or 'unknown'}",
        "## Error",
        _fenced(prediction.error or "No error message."),
        f"## Last {len(log_lines)} log lines",
        _fenced("\n".join(log_lines) or "No logs."),
    ]
    return "\n\n".join(sections) + "\n"


def handle_prediction(prediction: Prediction, output_dir: str | None = None) -> HandledPrediction:
    """Handle a verified prediction by its status. Call it inside a flow."""
    status = prediction.status
    if status == "succeeded":
        files = save_prediction_outputs(prediction, _resolve_output_dir(output_dir))
        return HandledPrediction(
            prediction_id=prediction.id, status=status, action="saved", files=files
        )
    if status in FAILED_STATUSES:
        record_prediction_failure(prediction)
        return HandledPrediction(prediction_id=prediction.id, status=status, action="recorded")

    get_run_logger().info(
        "Prediction %s is %s, not finished, so there is nothing to do yet.", prediction.id, status
    )
    return HandledPrediction(prediction_id=prediction.id, status=status, action="ignored")


@flow(name="handle-prediction-webhook")
def handle_prediction_webhook(
    headers: dict[str, str], body: str, output_dir: str | None = None
) -> HandledPrediction:
    """Verify a Replicate webhook delivery, then handle its prediction by status.

    A delivery that fails verification fails the flow run with the reason, and
    nothing else runs.
    """
    prediction = validate_webhook(headers, body)
    return handle_prediction(prediction, output_dir)


@flow(name="handle-prediction-event")
def handle_prediction_event(
    prediction: Prediction, output_dir: str | None = None
) -> HandledPrediction:
    """Handle a prediction that the webhook receiver already verified.

    A deployment triggered by a `replicate.prediction.<status>` event passes
    `"{{ event.payload }}"` as `prediction`.
    """
    return handle_prediction(prediction, output_dir)


def create_flow_receiver(secret: str | None = None, **options: Any) -> Starlette:
    """Build a receiver that runs `handle_prediction_event` for each verified webhook.

    `options` are passed to `replicate_tasks.receiver.create_receiver`.
    """
    return create_receiver(secret, mode="flow", handler=handle_prediction_event, **options)


def _resolve_output_dir(output_dir: str | None) -> str:
    if output_dir:
        return output_dir
    return os.environ.get(OUTPUT_DIR_ENVIRONMENT_VARIABLE) or DEFAULT_OUTPUT_DIR


class _OutputSaver:
    """Writes the files found in an output and records their paths."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.files: list[Path] = []
        self._client: httpx.Client | None = None

    @contextmanager
    def open(self) -> Iterator[None]:
        hooks = {"request": [_check_output_host]}
        with httpx.Client(
            timeout=DOWNLOAD_TIMEOUT, follow_redirects=True, event_hooks=hooks
        ) as client:
            self._client = client
            try:
                yield
            finally:
                self._client = None

    def replace_files(self, value: Any) -> Any:
        """Save each file in `value` and return `value` with local names in their place."""
        if isinstance(value, str) and is_file_reference(value):
            return self._save(value).name
        if isinstance(value, list):
            return [self.replace_files(item) for item in value]
        if isinstance(value, dict):
            return {key: self.replace_files(item) for key, item in value.items()}
        return value

    def _save(self, reference: str) -> Path:
        if is_data_uri(reference):
            content, suggested = _decode_data_uri(reference, self.max_bytes)
            path = self._new_path(suggested)
            path.write_bytes(content)
        else:
            path = self._new_path(_name_from_url(reference))
            self._download(reference, path)
        self.files.append(path)
        return path

    def _new_path(self, name: str) -> Path:
        used_names = {path.name for path in self.files}
        stem, suffix = os.path.splitext(name)
        candidate, number = name, 1
        while candidate in used_names or candidate == "output.json":
            candidate = f"{stem}-{number}{suffix}"
            number += 1
        return self.directory / candidate

    def _download(self, url: str, path: Path) -> None:
        assert self._client is not None
        partial = path.with_name(path.name + ".part")
        try:
            with self._client.stream("GET", url) as response:
                response.raise_for_status()
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(url, f"declares {declared} bytes")
                written = 0
                with partial.open("wb") as file:
                    for chunk in response.iter_bytes():
                        written += len(chunk)
                        if written > self.max_bytes:
                            raise self._too_large(url, f"passed {self.max_bytes} bytes")
                        file.write(chunk)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise OutputSaveError(f"Could not download output {_short(url)}: {exc}") from exc
        except OutputSaveError:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(path)

    def _too_large(self, url: str, found: str) -> OutputSaveError:
        return OutputSaveError(
            f"Output {_short(url)} {found}, more than the limit of {self.max_bytes} bytes. "
            "Raise max_output_bytes to save it."
        )


def allowed_output_hosts() -> tuple[str, ...]:
    """Return the hosts that outputs may be downloaded from: Replicate's, and any trusted."""
    extra = os.environ.get(OUTPUT_HOSTS_ENVIRONMENT_VARIABLE, "")
    trusted = tuple(host.strip().lower() for host in extra.split(",") if host.strip())
    return DEFAULT_OUTPUT_HOSTS + trusted


def _check_output_host(request: httpx.Request) -> None:
    """Reject a download, or a redirect, to a host that is not allowed."""
    host = request.url.host.lower()
    for pattern in allowed_output_hosts():
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return
    raise OutputSaveError(
        f"Output host {host!r} is not allowed: outputs are downloaded only from "
        f"{', '.join(DEFAULT_OUTPUT_HOSTS)}. Add the host to "
        f"{OUTPUT_HOSTS_ENVIRONMENT_VARIABLE} (comma-separated) to trust it."
    )


def _only_files(output: Any) -> bool:
    if isinstance(output, str):
        return is_file_reference(output)
    if isinstance(output, list) and output:
        return all(isinstance(item, str) and is_file_reference(item) for item in output)
    return False


def _decode_data_uri(uri: str, max_bytes: int) -> tuple[bytes, str]:
    """Return the content of a `data:` URI and a file name for it."""
    data = uri.partition(",")[2]
    # Base64 needs 4 characters for 3 bytes, so this bounds the decoded size.
    if len(data) * 3 // 4 > max_bytes:
        raise OutputSaveError(
            f"Output data URI {_short(uri)} is larger than the limit of {max_bytes} bytes."
        )
    try:
        content, media_type = decode_data_uri(uri)
    except ValueError as exc:
        raise OutputSaveError(f"Output data URI {_short(uri)} does not decode: {exc}") from exc
    extension = mimetypes.guess_extension(media_type) or ".bin"
    return content, f"output{extension}"


def _name_from_url(url: str) -> str:
    return _safe_file_name(PurePosixPath(urlsplit(url).path).name, "output")


def _safe_file_name(name: str, fallback: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._")
    return cleaned[:120] or fallback


def _artifact_key(prediction_id: str) -> str:
    # Prefect allows only lowercase letters, digits and dashes in artifact keys.
    slug = re.sub(r"[^a-z0-9-]+", "-", prediction_id.lower()).strip("-")
    return f"replicate-prediction-{slug or 'unknown'}"


def _fenced(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def _to_json(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
