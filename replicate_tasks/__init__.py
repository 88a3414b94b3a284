"""Prefect tasks and flows that run Replicate model deployments as code."""

from .client import Replicate, __version__
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ConcurrentChangeError,
    ConfigError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PlanError,
    RateLimitError,
    ReplicateError,
    ServerError,
    WaitTimeoutError,
)
from .models import (
    Account,
    Configuration,
    Deployment,
    Hardware,
    Model,
    ModelVersion,
    Page,
    Release,
)
from .retry import RetryPolicy

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "Account",
    "AuthenticationError",
    "ConcurrentChangeError",
    "ConfigError",
    "Configuration",
    "ConflictError",
    "Deployment",
    "Hardware",
    "InvalidRequestError",
    "Model",
    "ModelVersion",
    "NotFoundError",
    "Page",
    "PlanError",
    "RateLimitError",
    "Release",
    "Replicate",
    "ReplicateError",
    "RetryPolicy",
    "ServerError",
    "WaitTimeoutError",
    "__version__",
]
