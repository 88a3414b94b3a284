"""Time and memory of webhook validation, against the official `replicate` client's.

Both validators check the same signed deliveries in the same process: a
prediction-sized body (about 1 KB) and a 1 MiB body. Each case runs the
validator `number` times per repeat, and the best of `repeat` repeats is kept,
so the figures reflect the code, not the machine's other load. Reported as
ratios, ours divided by the official client's: below 1 means ours is faster
or smaller.

Both run with the timestamp check on (tolerance 300 s), because that is our
default and the safe way to call the official one. Ours also parses the body
into a Prediction and records the webhook-id against replays, which the
official validator does not do: the comparison counts that work against us.

Run with `make bench`.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
import timeit
import tracemalloc
from collections.abc import Callable
from importlib.metadata import version

from replicate.webhook import Webhooks, WebhookSigningSecret

from replicate_tasks import webhooks

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def prediction_body(extra: int = 0) -> str:
    prediction = {
        "id": "ufawqhfynnddngldkgtslldrkq",
        "version": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
        "created_at": "2022-04-26T22:13:06.224088Z",
        "status": "succeeded",
        "input": {"text": "Alice"},
        "output": "hello Alice" + "x" * extra,
        "error": None,
        "logs": "",
        "metrics": {"predict_time": 0.1},
    }
    return json.dumps(prediction)


def cases() -> dict[str, str]:
    small = prediction_body(800)
    large = prediction_body(1024 * 1024 - len(prediction_body()))
    return {"1 KB prediction": small, "1 MiB prediction": large}


def ours(body: str) -> Callable[[], object]:
    headers = webhooks.sign_headers(SECRET, body)

    def run() -> object:
        # A fresh replay store each call, so the same delivery is never a replay.
        return webhooks.validate(
            headers=headers, body=body, secret=SECRET, replay_store=webhooks.MemoryReplayStore()
        )

    return run


def ours_verify_only(body: str) -> Callable[[], object]:
    headers = webhooks.sign_headers(SECRET, body)

    def run() -> object:
        return webhooks.verify(headers=headers, body=body, secret=SECRET)

    return run


def official(body: str) -> Callable[[], object]:
    headers = webhooks.sign_headers(SECRET, body)
    secret = WebhookSigningSecret(key=SECRET)

    def run() -> object:
        return Webhooks.validate(headers=headers, body=body, secret=secret, tolerance=300)

    return run


def best_seconds(function: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number


def peak_bytes(function: Callable[[], object]) -> int:
    function()  # warm caches and imports outside the measurement
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    print(
        f"Python {platform.python_version()}, replicate {version('replicate')}, "
        f"{platform.machine()}, {time.strftime('%Y-%m-%d')}"
    )
    print(
        f"{'case':<18} {'ours µs':>9} {'verify µs':>10} {'official µs':>12} {'ratio':>6} "
        f"{'verify ratio':>13} {'ours KiB':>9} {'official KiB':>13} {'memory ratio':>13}"
    )
    ratios = []
    for name, body in cases().items():
        number = 2000 if len(body) < 10_000 else 40
        ours_time = best_seconds(ours(body), number, repeat=5)
        verify_time = best_seconds(ours_verify_only(body), number, repeat=5)
        official_time = best_seconds(official(body), number, repeat=5)
        ours_peak = peak_bytes(ours(body))
        official_peak = peak_bytes(official(body))
        ratios.append(ours_time / official_time)
        print(
            f"{name:<18} {ours_time * 1e6:>9.1f} {verify_time * 1e6:>10.1f} "
            f"{official_time * 1e6:>12.1f} {ours_time / official_time:>6.2f} "
            f"{verify_time / official_time:>13.2f} {ours_peak / 1024:>9.1f} "
            f"{official_peak / 1024:>13.1f} {ours_peak / official_peak:>13.2f}"
        )
    print(f"median time ratio: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
