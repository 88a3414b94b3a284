"""Waits that poll the API until a condition holds, within a wall-clock deadline.

Replicate reports no readiness for a deployment, so waits poll with plain client
calls (not task runs), back off exponentially with full jitter between polls,
and log only when the observed state changes. A transient error while polling
means the state could not be observed; it is tolerated up to a limit and never
reported as the condition failing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import APIConnectionError, RateLimitError, ServerError, WaitTimeoutError
from .models import Deployment

if TYPE_CHECKING:
    from .client import Replicate

__all__ = [
    "WaitOptions",
    "describe_release",
    "release_matches",
    "wait_for_release",
    "wait_until",
]

T = TypeVar("T")

TRANSIENT_ERRORS = (APIConnectionError, RateLimitError, ServerError)


@dataclass(frozen=True)
class WaitOptions:
    """How long and how often a wait polls.

    The pause after poll n is drawn uniformly from 0 up to
    `min(max_interval, initial_interval * 2**n)`, so pauses grow while the state
    stays the same, and the deadline is checked against the wall clock.
    """

    timeout: float = 600.0
    initial_interval: float = 1.0
    max_interval: float = 15.0
    max_consecutive_errors: int = 5

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {self.timeout!r}")
        if self.initial_interval <= 0 or self.max_interval < self.initial_interval:
            raise ValueError(
                f"intervals must satisfy 0 < initial_interval <= max_interval, got "
                f"{self.initial_interval!r} and {self.max_interval!r}"
            )


def wait_until(
    poll: Callable[[], T],
    done: Callable[[T], bool],
    *,
    what: str,
    describe: Callable[[T], str] = str,
    options: WaitOptions | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Poll until `done(poll())` is true, and return the last polled value.

    Args:
        poll: Reads the current state; a plain client call.
        done: Whether the state is the one waited for.
        what: The awaited condition, for log lines and the timeout message,
            such as "acme/app serving release 3".
        describe: Renders a state for logs; a line is logged when it changes.

    Raises:
        WaitTimeoutError: the deadline passed first; the message names the
            limit and the last state seen.
        ReplicateError: a non-transient error, or more consecutive transient
            errors than `options.max_consecutive_errors`.
    """
    options = options or WaitOptions()
    log = logger or logging.getLogger("replicate_tasks.waits")
    deadline = clock() + options.timeout
    last_seen: str | None = None
    errors = 0
    polls = 0
    while True:
        # NOTE: the deadline is checked between polls, so one poll's own client
        # retries (up to the RetryPolicy's attempts and waits) can overrun it.
        try:
            state = poll()
        except TRANSIENT_ERRORS as error:
            errors += 1
            if errors > options.max_consecutive_errors:
                raise
            log.warning("Could not observe %s (%s); will poll again", what, error)
        else:
            errors = 0
            seen = describe(state)
            if seen != last_seen:
                log.info("Waiting for %s: %s", what, seen)
                last_seen = seen
            if done(state):
                return state

        remaining = deadline - clock()
        if remaining <= 0:
            raise WaitTimeoutError(
                f"Timed out after {options.timeout:g} s waiting for {what}; "
                f"last state seen: {last_seen or 'none (every poll failed)'}",
                limit=options.timeout,
                last_state=last_seen,
            )
        ceiling = min(options.max_interval, options.initial_interval * 2**polls)
        polls += 1
        # Sleep at most until the deadline, so the last poll happens right at it.
        sleep(min(random.uniform(0, ceiling), remaining))


def release_matches(deployment: Deployment, expected: dict[str, Any]) -> bool:
    """Return whether the current release has every field in `expected` (version, hardware …)."""
    if deployment.current_release is None:
        return False
    return all(getattr(deployment, name) == value for name, value in expected.items())


def describe_release(deployment: Deployment) -> str:
    """Render a deployment's current release for logs, in one line."""
    if deployment.current_release is None:
        return "no current release"
    return (
        f"release {deployment.release_number}: version {deployment.version[:12]} "
        f"on {deployment.hardware}, instances {deployment.min_instances}-{deployment.max_instances}"
    )


def wait_for_release(
    client: Replicate,
    owner: str,
    name: str,
    fields: dict[str, Any],
    *,
    timeout: float = 300.0,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> Deployment:
    """Wait until a deployment's current release has `fields`, and return it ("applied")."""
    return wait_until(
        lambda: client.deployments.get(owner, name),
        lambda current: release_matches(current, fields),
        what=f"{owner}/{name} to serve the requested release",
        describe=describe_release,
        options=WaitOptions(timeout=timeout),
        logger=logger,
    )
