"""An emulator of the Replicate HTTP API, for tests and for trying flows offline.

`Emulator` holds one account's deployments, a catalog of real public models,
a clock and injectable faults. It serves the `/v1` API in process through
`Emulator.transport()`, or on a local port through `Emulator.serve()`:

    emulator = Emulator(clock=ManualClock())
    async with httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://emulator.test"
    ) as client:
        response = await client.get("/v1/hardware", headers={"Authorization": "Bearer x"})

Admin routes under `/_emulator/` script a served emulator (see `admin`).
"""

from .clock import Clock, ManualClock, SystemClock
from .core import Emulator, run
from .faults import Faults
from .recording import RecordedRequest
from .state import DELETE_IDLE_SECONDS

__all__ = [
    "DELETE_IDLE_SECONDS",
    "Clock",
    "Emulator",
    "Faults",
    "ManualClock",
    "RecordedRequest",
    "SystemClock",
    "run",
]
