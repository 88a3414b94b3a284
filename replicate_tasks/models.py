"""Pydantic models of Replicate API resources, in the shapes the API returns.

Unknown fields are kept (`extra="allow"`), so a field the API adds later survives
a round trip and never fails validation. Fields the API documents as optional are
optional here too. A deployment has no status and no instance count in the API,
so none is modelled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "TERMINAL_STATUSES",
    "Account",
    "Configuration",
    "Deployment",
    "Hardware",
    "Model",
    "ModelVersion",
    "Page",
    "Prediction",
    "PredictionStatus",
    "PredictionURLs",
    "Release",
    "WebhookSigningSecret",
]


class APIModel(BaseModel):
    """Base of every API resource: keeps unknown fields and ignores nothing."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Account(APIModel):
    """A user or organization, as returned by `GET /account` and in `created_by`."""

    type: Literal["user", "organization"] | str
    username: str
    name: str | None = None
    github_url: str | None = None
    avatar_url: str | None = None


class Hardware(APIModel):
    """A hardware tier a deployment can run on; `sku` is its identifier in requests."""

    sku: str
    name: str


class Configuration(APIModel):
    """The hardware and scaling range of a deployment release."""

    hardware: str
    min_instances: int
    max_instances: int


class Release(APIModel):
    """One release of a deployment. Every change to a deployment makes a new one."""

    number: int
    model: str
    version: str
    created_at: datetime | None = None
    created_by: Account | None = None
    configuration: Configuration


class Deployment(APIModel):
    """A named endpoint pinned to one model version, hardware tier and instance range.

    The API returns only `owner`, `name` and `current_release`; the properties
    below read through to the current release for convenience.
    """

    owner: str
    name: str
    current_release: Release | None = None

    @property
    def ref(self) -> str:
        """The deployment's `owner/name`."""
        return f"{self.owner}/{self.name}"

    @property
    def release(self) -> Release:
        if self.current_release is None:
            raise ValueError(f"deployment {self.ref} has no current release")
        return self.current_release

    @property
    def release_number(self) -> int:
        return self.release.number

    @property
    def model(self) -> str:
        return self.release.model

    @property
    def version(self) -> str:
        return self.release.version

    @property
    def hardware(self) -> str:
        return self.release.configuration.hardware

    @property
    def min_instances(self) -> int:
        return self.release.configuration.min_instances

    @property
    def max_instances(self) -> int:
        return self.release.configuration.max_instances


class ModelVersion(APIModel):
    """One pushed version of a model, with its OpenAPI schema of inputs and outputs."""

    id: str
    created_at: datetime | None = None
    cog_version: str | None = None
    openapi_schema: dict[str, Any] | None = None


class Model(APIModel):
    """A model on Replicate, as returned by `GET /models/{owner}/{name}`."""

    owner: str
    name: str
    url: str | None = None
    description: str | None = None
    visibility: str | None = None
    github_url: str | None = None
    paper_url: str | None = None
    license_url: str | None = None
    run_count: int | None = None
    cover_image_url: str | None = None
    default_example: dict[str, Any] | None = None
    latest_version: ModelVersion | None = None
    is_official: bool | None = None

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}"


ItemT = TypeVar("ItemT", bound=BaseModel)


class Page(APIModel, Generic[ItemT]):
    """One page of a paginated list; `next` is the absolute URL of the next page, or None."""

    results: list[ItemT] = Field(default_factory=list)
    next: str | None = None
    previous: str | None = None


PredictionStatus = Literal["starting", "processing", "succeeded", "failed", "canceled", "aborted"]

TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "canceled", "aborted"})
"""Statuses after which a prediction never changes. `aborted` is one: the
prediction was stopped before it started, for example by `Cancel-After`."""


class PredictionURLs(APIModel):
    """Links of a prediction: `get` to poll it, `cancel` to cancel it, `web` to view it."""

    get: str | None = None
    cancel: str | None = None
    web: str | None = None
    stream: str | None = None


class Prediction(APIModel):
    """One run of a model, as returned by the predictions endpoints and sent by webhooks.

    `status` is kept as a string, so a status the API adds later still parses;
    `is_terminal` is False while the prediction can still change.
    """

    id: str
    status: PredictionStatus | str
    model: str | None = None
    version: str | None = None
    input: dict[str, Any] | None = None
    output: Any = None
    error: str | None = None
    logs: str | None = None
    source: str | None = None
    data_removed: bool | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    deadline: datetime | None = None
    deployment: str | None = None
    metrics: dict[str, Any] | None = None
    urls: PredictionURLs | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class WebhookSigningSecret(APIModel):
    """The account's default webhook signing secret.

    `key` is a `whsec_`-prefixed base64 string. It is a `SecretStr`, so it does
    not appear in reprs, logs or serialized results; read it with
    `key.get_secret_value()`.
    """

    key: SecretStr
