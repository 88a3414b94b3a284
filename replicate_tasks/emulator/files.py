"""Output files of predictions, served by the emulator under `/_emulator/files/`.

Each file is a small PNG drawn from the prediction's input, so the same input
always gives the same bytes. Like the admin routes, file URLs need no token,
because clients download outputs without the API's Authorization header.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .clock import Clock
from .lifecycle import PredictionRecord, snapshot
from .outputs import FileRef, png_bytes, png_data_uri
from .predictions import PredictionStore
from .problems import ProblemError

FILES_PREFIX = "/_emulator/files"


def file_url(record: PredictionRecord, file: FileRef) -> str:
    """Return the absolute URL of an output file, on the base URL the prediction was created at."""
    return f"{record.base_url}{FILES_PREFIX}/{record.id}/{file.name}"


def file_data_uri(record: PredictionRecord, file: FileRef) -> str:
    """Return an output file as a data URI, as synchronous (`Prefer: wait`) responses may."""
    return png_data_uri(file.seed)


class FileRoutes:
    """The handler of `GET /_emulator/files/{prediction_id}/{name}`."""

    def __init__(self, predictions: PredictionStore, clock: Clock) -> None:
        self.predictions = predictions
        self.clock = clock

    async def get_file(self, request: Request) -> Response:
        """Return an output file of a succeeded prediction as `image/png`."""
        prediction_id = str(request.path_params["prediction_id"])
        name = str(request.path_params["name"])
        record = self.predictions.find(prediction_id)
        if record is None:
            raise ProblemError(404, f"Prediction {prediction_id} was not found.")

        if snapshot(record, self.clock.now()).status != "succeeded":
            raise ProblemError(
                404,
                f"Prediction {prediction_id} has not succeeded, so it has no output "
                f"file {name}. Wait until its status is succeeded.",
            )
        for file in record.output.files():
            if file.name == name:
                return Response(png_bytes(file.seed), media_type="image/png")
        raise ProblemError(404, f"Prediction {prediction_id} has no output file {name}.")
