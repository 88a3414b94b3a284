"""Injected faults: error responses, dropped connections, error rates and latency.

Faults apply to the Replicate API routes only, never to the `/_emulator/` admin
routes. Each rule applies to the next `count` matching requests, in the order the
rules were added. An error rate fails a random share of the matching requests
that no rule took. Rules and rates match on method and path when they are given.
A path is an exact request path, or a shell-style pattern such as
`/v1/deployments/*`.
"""

from __future__ import annotations

import fnmatch
import math
import random
import threading
from dataclasses import dataclass
from typing import Any

from .problems import default_title


@dataclass(frozen=True)
class FailFault:
    """Respond with `status` instead of processing the request."""

    status: int
    retry_after: str | None = None
    body: str | None = None
    content_type: str | None = None

    def detail(self) -> str:
        """Return the problem detail for a fault without a custom body."""
        if self.status == 429:
            # The real API puts its reset estimate in the body text.
            seconds = self.retry_after if (self.retry_after or "").isdigit() else "1"
            return f"Request was throttled. Your rate limit resets in ~{seconds}s."
        return (
            f"The emulator injected a {self.status} {default_title(self.status)} "
            "response for this request."
        )


@dataclass(frozen=True)
class DropFault:
    """Close the connection instead of responding.

    With `after_change`, the request is processed first, so its change is made,
    and only the response is lost.
    """

    after_change: bool = False


Fault = FailFault | DropFault


def _matches(rule_method: str | None, rule_path: str | None, method: str, path: str) -> bool:
    if rule_method is not None and rule_method != method.upper():
        return False
    if rule_path is None:
        return True
    if any(character in rule_path for character in "*?["):
        return fnmatch.fnmatchcase(path, rule_path)
    return rule_path == path


@dataclass
class _Rule:
    fault: Fault
    remaining: int
    method: str | None
    path: str | None

    def matches(self, method: str, path: str) -> bool:
        return _matches(self.method, self.path, method, path)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "count": self.remaining,
            "method": self.method,
            "path": self.path,
        }
        if isinstance(self.fault, FailFault):
            document.update(
                kind="fail",
                status=self.fault.status,
                retry_after=self.fault.retry_after,
                body=self.fault.body,
                content_type=self.fault.content_type,
            )
        else:
            document.update(kind="drop", after_change=self.fault.after_change)
        return document


@dataclass
class _ErrorRate:
    fault: FailFault
    rate: float
    method: str | None
    path: str | None
    seed: int | None
    generator: random.Random

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.fault.status,
            "rate": self.rate,
            "method": self.method,
            "path": self.path,
            "seed": self.seed,
            "retry_after": self.fault.retry_after,
        }


class Faults:
    """The fault rules, error rates and latency of one emulator. Safe to use from threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._error_rates: list[_ErrorRate] = []
        self._latency = 0.0

    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        method: str | None = None,
        path: str | None = None,
        retry_after: str | None = None,
        body: str | None = None,
        content_type: str | None = None,
    ) -> None:
        """Respond to the next `count` matching requests with `status`.

        The body is problem+json unless `body` is given, which is sent with
        `content_type` (plain text by default), for example an HTML 502 page
        from a proxy. `retry_after` becomes the Retry-After header.
        """
        _check_status(status)
        if content_type is not None and body is None:
            raise ValueError(
                f"content_type {content_type!r} was given without a body. Pass body "
                "too, or leave both out for a problem+json body."
            )
        if body is not None and content_type is None:
            content_type = "text/plain; charset=utf-8"

        fault = FailFault(
            status=status, retry_after=retry_after, body=body, content_type=content_type
        )
        self._add(fault, count, method, path)

    def drop_next(
        self,
        *,
        count: int = 1,
        method: str | None = None,
        path: str | None = None,
        after_change: bool = False,
    ) -> None:
        """Drop the connection of the next `count` matching requests.

        With `after_change`, each request is processed (its change is made) and
        then the response is lost, as when a network fails on the way back.
        """
        self._add(DropFault(after_change=after_change), count, method, path)

    def set_error_rate(
        self,
        status: int,
        rate: float,
        *,
        method: str | None = None,
        path: str | None = None,
        seed: int | None = None,
        retry_after: str | None = None,
    ) -> None:
        """Respond with `status` to the share `rate` (0 to 1) of matching requests.

        Each matching request draws from a random generator seeded with `seed`,
        so a seed gives the same sequence of failures on every run. Setting a
        rate for the same status, method and path replaces it, and rate 0
        removes it. Rules added with `fail_next` and `drop_next` apply first.
        """
        fault = FailFault(status=_check_status(status), retry_after=retry_after)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError(f"rate must be a number from 0 to 1, got {rate!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an integer or None, got {seed!r}.")

        method = method.upper() if method is not None else None
        entry = _ErrorRate(
            fault=fault,
            rate=float(rate),
            method=method,
            path=path,
            seed=seed,
            generator=random.Random(seed),
        )
        with self._lock:
            self._error_rates = [
                existing
                for existing in self._error_rates
                if (existing.fault.status, existing.method, existing.path) != (status, method, path)
            ]
            if rate > 0:
                self._error_rates.append(entry)

    def set_latency(self, seconds: float) -> None:
        """Wait `seconds` of real time before responding to each API request."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"seconds must be a number, got {seconds!r}.")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(
                f"Latency must be a finite number of seconds, 0 or more, got {seconds!r}."
            )
        with self._lock:
            self._latency = float(seconds)

    @property
    def latency(self) -> float:
        """The real delay, in seconds, before each API response."""
        with self._lock:
            return self._latency

    def clear(self) -> None:
        """Remove every rule and error rate, and set the latency back to 0."""
        with self._lock:
            self._rules.clear()
            self._error_rates.clear()
            self._latency = 0.0

    def take(self, method: str, path: str) -> Fault | None:
        """Return the fault for this request, using up one count of its rule.

        Rules come first. When none matches, each matching error rate draws in
        the order the rates were set, and the first that hits gives the fault.
        """
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    return rule.fault
            for error_rate in self._error_rates:
                if not _matches(error_rate.method, error_rate.path, method, path):
                    continue
                if error_rate.generator.random() < error_rate.rate:
                    return error_rate.fault
        return None

    def to_json(self) -> dict[str, Any]:
        """Return the pending rules, the error rates and the latency, for the admin routes."""
        with self._lock:
            return {
                "latency": self._latency,
                "rules": [rule.to_json() for rule in self._rules],
                "error_rates": [entry.to_json() for entry in self._error_rates],
            }

    def _add(self, fault: Fault, count: int, method: str | None, path: str | None) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an integer of 1 or more, got {count!r}.")
        rule = _Rule(
            fault=fault,
            remaining=count,
            method=method.upper() if method is not None else None,
            path=path,
        )
        with self._lock:
            self._rules.append(rule)


def _check_status(status: object) -> int:
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"status must be an int, got {status!r}.")
    if not 400 <= status <= 599:
        raise ValueError(f"status must be an HTTP error status from 400 to 599, got {status}.")
    return status
