"""Tests of the emulator's rate limits and injected error rates."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from replicate_tasks.emulator import Emulator, ManualClock, RateLimit, RateLimits
from replicate_tasks.emulator.ratelimit import RateLimiter, bucket_for

AUTH = {"Authorization": "Bearer test-token"}
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
HELLO_WORLD_VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
PREDICTION = {"version": HELLO_WORLD_VERSION, "input": {"text": "x"}}


def in_process_client(emulator: Emulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://emulator.test", headers=AUTH
    )


@pytest.fixture
def emulator() -> Emulator:
    limits = RateLimits(predictions=RateLimit(3, 1.0), other=RateLimit(5, 1.0))
    return Emulator(clock=ManualClock(START), rate_limits=limits)


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(emulator) as http:
        yield http


# Rate limits


async def test_prediction_creates_throttled(client: httpx.AsyncClient, emulator: Emulator) -> None:
    accepted = [await client.post("/v1/predictions", json=PREDICTION) for _ in range(3)]
    throttled = await client.post("/v1/predictions", json=PREDICTION)
    other = await client.get("/v1/account")

    assert [response.status_code for response in accepted] == [202, 202, 202]
    assert [response.headers["ratelimit-remaining"] for response in accepted] == ["2", "1", "0"]
    assert throttled.status_code == 429
    assert throttled.headers["content-type"] == "application/problem+json"
    assert throttled.headers["retry-after"] == "1"
    assert throttled.headers["ratelimit-remaining"] == "0"
    assert throttled.headers["ratelimit-reset"] == "1"
    assert throttled.json()["detail"] == "Request was throttled. Your rate limit resets in ~1s."
    assert throttled.json()["status"] == 429
    assert other.status_code == 200
    assert len((await client.get("/v1/predictions")).json()["results"]) == 3
    assert emulator.request_count("POST", "/v1/predictions") == 4


async def test_model_and_deployment_creates_share_limit(client: httpx.AsyncClient) -> None:
    official = "/v1/models/meta/meta-llama-3-8b-instruct/predictions"
    await client.post(official, json={"input": {"prompt": "x"}})
    await client.post("/v1/deployments/acme/missing/predictions", json={"input": {}})
    await client.post("/v1/predictions", json=PREDICTION)

    throttled = await client.post(official, json={"input": {"prompt": "x"}})

    assert throttled.status_code == 429


async def test_other_requests_throttled(client: httpx.AsyncClient) -> None:
    statuses = [(await client.get("/v1/hardware")).status_code for _ in range(6)]
    creates_still_allowed = await client.post("/v1/predictions", json=PREDICTION)

    assert statuses == [200] * 5 + [429]
    assert creates_still_allowed.status_code == 202


async def test_window_rolls_in_real_time() -> None:
    limits = RateLimits(predictions=None, other=RateLimit(2, 0.3))
    emulator = Emulator(clock=ManualClock(START), rate_limits=limits)
    async with in_process_client(emulator) as client:
        first = [(await client.get("/v1/account")).status_code for _ in range(3)]
        assert isinstance(emulator.clock, ManualClock)
        emulator.clock.advance(3600)
        after_clock = (await client.get("/v1/account")).status_code
        time.sleep(0.35)
        after_real_time = (await client.get("/v1/account")).status_code

    assert first == [200, 200, 429]
    assert after_clock == 429
    assert after_real_time == 200


async def test_admin_routes_exempt(client: httpx.AsyncClient) -> None:
    statuses = [(await client.get("/_emulator/clock")).status_code for _ in range(10)]

    assert statuses == [200] * 10


async def test_rate_limits_off() -> None:
    emulator = Emulator(rate_limits=None)
    async with in_process_client(emulator) as client:
        responses = [await client.get("/v1/account") for _ in range(50)]

    assert {response.status_code for response in responses} == {200}
    assert "ratelimit-remaining" not in responses[-1].headers


def test_default_limits_are_published_values() -> None:
    limits = Emulator().rate_limits

    assert limits == RateLimits(predictions=RateLimit(600, 60.0), other=RateLimit(3000, 60.0))


def test_limiter_counts_only_accepted() -> None:
    now = [100.0]
    limiter = RateLimiter(RateLimits(other=RateLimit(2, 10)), monotonic=lambda: now[0])

    decisions = [limiter.check("GET", "/v1/account") for _ in range(4)]
    now[0] = 107.5
    later = limiter.check("GET", "/v1/account")
    now[0] = 110.0
    reopened = limiter.check("GET", "/v1/account")

    assert [decision.allowed for decision in decisions if decision] == [True, True, False, False]
    assert decisions[2] is not None
    assert decisions[2].reset_seconds == 10
    assert later is not None
    assert later.allowed is False
    assert later.reset_seconds == 3
    assert reopened is not None
    assert reopened.allowed is True


@pytest.mark.parametrize(
    ("method", "path", "bucket"),
    [
        ("POST", "/v1/predictions", "predictions"),
        ("POST", "/v1/models/a/b/predictions", "predictions"),
        ("POST", "/v1/deployments/a/b/predictions", "predictions"),
        ("GET", "/v1/predictions", "other"),
        ("POST", "/v1/predictions/abc/cancel", "other"),
        ("POST", "/v1/deployments", "other"),
    ],
)
def test_bucket_for_request(method: str, path: str, bucket: str) -> None:
    assert bucket_for(method, path) == bucket


def test_rate_limit_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="count"):
        RateLimit(0)
    with pytest.raises(ValueError, match="period"):
        RateLimit(5, 0)


def test_served_rate_limit_admin_route() -> None:
    emulator = Emulator(clock=ManualClock(START))
    with emulator.serve() as url, httpx.Client(base_url=url) as http:
        changed = http.post(
            "/_emulator/rate-limits",
            json={"predictions": None, "other": {"count": 1, "period": 5}},
        )
        allowed = http.get("/v1/account", headers=AUTH)
        throttled = http.get("/v1/account", headers=AUTH)
        invalid = http.post("/_emulator/rate-limits", json={"other": {"count": 0}})
        unknown = http.post("/_emulator/rate-limits", json={"files": None})
        current = http.get("/_emulator/rate-limits")

    assert changed.json() == {"predictions": None, "other": {"count": 1, "period": 5}}
    assert allowed.status_code == 200
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "5"
    assert invalid.status_code == 422
    assert unknown.status_code == 422
    assert current.json()["other"] == {"count": 1, "period": 5}
    assert emulator.rate_limits == RateLimits(predictions=None, other=RateLimit(1, 5))


# Error rates


async def statuses_with_error_rate(seed: int, rate: float, count: int) -> list[int]:
    emulator = Emulator(clock=ManualClock(START), rate_limits=None)
    emulator.faults.set_error_rate(503, rate, path="/v1/account", seed=seed)
    async with in_process_client(emulator) as client:
        return [(await client.get("/v1/account")).status_code for _ in range(count)]


async def test_error_rate_deterministic_with_seed() -> None:
    first = await statuses_with_error_rate(seed=7, rate=0.3, count=40)
    second = await statuses_with_error_rate(seed=7, rate=0.3, count=40)
    other_seed = await statuses_with_error_rate(seed=8, rate=0.3, count=40)

    assert first == second
    assert first != other_seed
    assert set(first) == {200, 503}
    assert 4 <= first.count(503) <= 24


async def test_error_rate_scope_and_removal() -> None:
    emulator = Emulator(rate_limits=None)
    emulator.faults.set_error_rate(500, 1.0, method="GET", path="/v1/hardware")
    async with in_process_client(emulator) as client:
        failed = await client.get("/v1/hardware")
        other_path = await client.get("/v1/account")
        emulator.faults.fail_next(429, path="/v1/hardware", retry_after="2")
        rule_first = await client.get("/v1/hardware")
        emulator.faults.set_error_rate(500, 0, method="GET", path="/v1/hardware")
        removed = await client.get("/v1/hardware")

    assert failed.status_code == 500
    assert "injected a 500" in failed.json()["detail"]
    assert other_path.status_code == 200
    assert rule_first.status_code == 429
    assert rule_first.headers["retry-after"] == "2"
    assert removed.status_code == 200
    assert emulator.faults.to_json()["error_rates"] == []


def test_error_rate_arguments_validated() -> None:
    emulator = Emulator()
    with pytest.raises(ValueError, match="rate"):
        emulator.faults.set_error_rate(503, 1.5)
    with pytest.raises(ValueError, match="400 to 599"):
        emulator.faults.set_error_rate(200, 0.5)
    with pytest.raises(TypeError, match="seed"):
        emulator.faults.set_error_rate(503, 0.5, seed="x")  # type: ignore[arg-type]


def test_served_error_rate_admin_route() -> None:
    emulator = Emulator(rate_limits=None)
    with emulator.serve() as url, httpx.Client(base_url=url) as http:
        added = http.post(
            "/_emulator/faults",
            json={"kind": "error_rate", "status": 502, "rate": 1, "path": "/v1/account", "seed": 3},
        )
        failed = http.get("/v1/account", headers=AUTH)
        bad = http.post("/_emulator/faults", json={"kind": "error_rate", "status": 502})
        cleared = http.delete("/_emulator/faults")
        recovered = http.get("/v1/account", headers=AUTH)

    assert added.json()["error_rates"] == [
        {
            "status": 502,
            "rate": 1.0,
            "method": None,
            "path": "/v1/account",
            "seed": 3,
            "retry_after": None,
        }
    ]
    assert failed.status_code == 502
    assert bad.status_code == 422
    assert cleared.status_code == 204
    assert recovered.status_code == 200


def test_drop_after_change_keeps_prediction() -> None:
    emulator = Emulator(clock=ManualClock(START))
    with emulator.serve() as url, httpx.Client(base_url=url, headers=AUTH) as http:
        emulator.faults.drop_next(method="POST", path="/v1/predictions", after_change=True)
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/v1/predictions", json=PREDICTION)
        listed = http.get("/v1/predictions").json()["results"]

    assert len(listed) == 1
    assert listed[0]["input"] == {"text": "x"}
    assert emulator.requests[0].dropped is True
    assert emulator.requests[0].status == 202
