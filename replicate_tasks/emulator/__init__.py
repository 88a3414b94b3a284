"""An emulator of the Replicate HTTP API, for tests and for trying flows offline.

`Emulator` holds one account's deployments, a catalog of real public models,
a clock and injectable faults. It serves the `/v1` API in process through
`Emulator.transport()`, or on a local port through `Emulator.serve()`:

    emulator = Emulator(clock=ManualClock())
    async with httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://emulator.test"
    ) as client:
        response = await client.get("/v1/hardware", headers={"Authorization": "Bearer x"})

It also runs predictions on a simulated timeline (cold boots, processing time,
failures), sends signed webhooks for them and applies Replicate's rate limits.
Admin routes under `/_emulator/` script a served emulator (see `admin`).
"""

from .clock import Clock, ManualClock, ScaledClock, SystemClock
from .core import Emulator, run
from .faults import Faults
from .ratelimit import RateLimit, RateLimits
from .recording import RecordedRequest
from .settings import Settings
from .state import DELETE_IDLE_SECONDS
from .webhooks import Delivery, DeliveryAttempt, WebhookOptions

__all__ = [
    "DELETE_IDLE_SECONDS",
    "Clock",
    "Delivery",
    "DeliveryAttempt",
    "Emulator",
    "Faults",
    "ManualClock",
    "RateLimit",
    "RateLimits",
    "RecordedRequest",
    "ScaledClock",
    "Settings",
    "SystemClock",
    "WebhookOptions",
    "run",
]
