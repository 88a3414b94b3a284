"""Polling waits: deadline, backoff, state-change logging, transient errors."""

from __future__ import annotations

import logging

import pytest

from replicate_tasks.errors import APIConnectionError, NotFoundError, ServerError, WaitTimeoutError
from replicate_tasks.waits import WaitOptions, wait_until


class FakeTime:
    """A clock that only moves when the wait sleeps, so tests take no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_when_done() -> None:
    time = FakeTime()
    states = iter(["starting", "starting", "ready"])

    result = wait_until(
        lambda: next(states),
        lambda state: state == "ready",
        what="the thing",
        sleep=time.sleep,
        clock=time.clock,
    )

    assert result == "ready"
    assert len(time.sleeps) == 2


def test_backoff_is_capped_and_jittered() -> None:
    time = FakeTime()
    options = WaitOptions(timeout=1000, initial_interval=1, max_interval=4)

    with pytest.raises(WaitTimeoutError):
        wait_until(
            lambda: "waiting",
            lambda state: False,
            what="never",
            options=options,
            sleep=time.sleep,
            clock=time.clock,
        )

    ceilings = [min(4, 2**n) for n in range(len(time.sleeps))]
    assert all(0 <= s <= c for s, c in zip(time.sleeps[:-1], ceilings, strict=False))
    assert time.now == pytest.approx(1000)


def test_timeout_names_limit_and_last_state() -> None:
    time = FakeTime()

    with pytest.raises(WaitTimeoutError) as raised:
        wait_until(
            lambda: "release 3",
            lambda state: False,
            what="acme/app to serve release 4",
            options=WaitOptions(timeout=30),
            sleep=time.sleep,
            clock=time.clock,
        )

    assert str(raised.value) == (
        "Timed out after 30 s waiting for acme/app to serve release 4; last state seen: release 3"
    )
    assert raised.value.limit == 30
    assert raised.value.last_state == "release 3"


def test_logs_only_state_changes(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    states = iter(["a", "a", "a", "b", "b", "done"])

    with caplog.at_level(logging.INFO, logger="replicate_tasks.waits"):
        wait_until(
            lambda: next(states),
            lambda state: state == "done",
            what="x",
            sleep=time.sleep,
            clock=time.clock,
        )

    assert [record.getMessage() for record in caplog.records] == [
        "Waiting for x: a",
        "Waiting for x: b",
        "Waiting for x: done",
    ]


def test_transient_errors_are_tolerated() -> None:
    time = FakeTime()
    outcomes: list[object] = [
        APIConnectionError("dropped"),
        ServerError(503),
        "ready",
    ]

    def poll() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    assert (
        wait_until(poll, lambda s: s == "ready", what="x", sleep=time.sleep, clock=time.clock)
        == "ready"
    )


def test_too_many_transient_errors_raise() -> None:
    time = FakeTime()

    def poll() -> str:
        raise ServerError(503)

    with pytest.raises(ServerError):
        wait_until(
            poll,
            lambda s: True,
            what="x",
            options=WaitOptions(max_consecutive_errors=2),
            sleep=time.sleep,
            clock=time.clock,
        )

    assert len(time.sleeps) == 2


def test_other_errors_raise_at_once() -> None:
    time = FakeTime()

    def poll() -> str:
        raise NotFoundError(404)

    with pytest.raises(NotFoundError):
        wait_until(poll, lambda s: True, what="x", sleep=time.sleep, clock=time.clock)

    assert time.sleeps == []


def test_timeout_with_only_errors_says_so() -> None:
    time = FakeTime()

    def poll() -> str:
        raise APIConnectionError("refused")

    with pytest.raises(WaitTimeoutError, match=r"last state seen: none \(every poll failed\)"):
        wait_until(
            poll,
            lambda s: True,
            what="x",
            options=WaitOptions(timeout=5, max_consecutive_errors=1000),
            sleep=time.sleep,
            clock=time.clock,
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout must be positive seconds, got 0"),
        ({"initial_interval": 0}, "intervals must satisfy"),
        ({"initial_interval": 5, "max_interval": 1}, "intervals must satisfy"),
    ],
)
def test_options_reject_bad_values(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WaitOptions(**options)
