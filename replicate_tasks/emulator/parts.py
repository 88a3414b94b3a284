"""The parts of one emulator that its routes and middleware share."""

from __future__ import annotations

from dataclasses import dataclass

from .clock import Clock
from .faults import Faults
from .predictions import PredictionStore
from .ratelimit import RateLimiter
from .recording import Recorder
from .settings import SettingsStore
from .state import EmulatorState
from .webhooks import WebhookDispatcher


@dataclass(frozen=True)
class EmulatorParts:
    """The state, clock, faults, request log, predictions and their helpers of one emulator."""

    state: EmulatorState
    clock: Clock
    faults: Faults
    recorder: Recorder
    predictions: PredictionStore
    settings: SettingsStore
    webhooks: WebhookDispatcher
    rate_limiter: RateLimiter

    def reset(self) -> None:
        """Delete deployments, predictions, deliveries, faults, settings and the request log.

        The catalog, the clock, the webhook secret and the rate limits stay, but
        the rate-limit windows start empty.
        """
        self.state.reset()
        self.predictions.reset()
        self.webhooks.reset()
        self.faults.clear()
        self.settings.clear()
        self.rate_limiter.reset()
        self.recorder.clear()
