"""The Prefect credentials block for Replicate.

Save the API token (and the webhook signing secret) once on the Prefect
server, and the tasks and flows read them from there instead of the
environment:

```python
from replicate_tasks.credentials import ReplicateCredentials

ReplicateCredentials(api_token="r8_...", webhook_secret="whsec_...").save("production")
```

Then set `REPLICATE_TASKS_CREDENTIALS=production` where the flows run (a work
pool's environment, say). Block fields are `SecretStr`, so the Prefect UI, the
API and reprs show them masked, and no secret is ever a task or flow
parameter: only the block's name travels.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from .client import Replicate

__all__ = ["CREDENTIALS_ENVIRONMENT_VARIABLE", "ReplicateCredentials", "client_from_environment"]

CREDENTIALS_ENVIRONMENT_VARIABLE = "REPLICATE_TASKS_CREDENTIALS"


class ReplicateCredentials(CredentialsBlock):
    """Credentials of a Replicate account: the API token and the webhook signing secret."""

    _block_type_name = "Replicate Credentials"
    _block_type_slug = "replicate-credentials"

    api_token: SecretStr = Field(description="A Replicate API token (r8_...).")
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="The account's webhook signing secret (whsec_...), to verify webhooks.",
    )
    base_url: str | None = Field(
        default=None,
        description="The API's address without /v1; https://api.replicate.com by default.",
    )

    def get_client(self, *args: Any, **kwargs: Any) -> Replicate:
        """Return a client that authenticates with this block's token."""
        return Replicate(
            api_token=self.api_token.get_secret_value(), base_url=self.base_url, **kwargs
        )


def client_from_environment(
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> Replicate:
    """Return a client from the block named in `REPLICATE_TASKS_CREDENTIALS`, or the environment.

    Without that variable, the client reads `REPLICATE_API_TOKEN` and
    `REPLICATE_BASE_URL` as usual.
    """
    name = os.environ.get(CREDENTIALS_ENVIRONMENT_VARIABLE)
    if not name:
        return Replicate(logger=logger)
    credentials = ReplicateCredentials.load(name)
    assert isinstance(credentials, ReplicateCredentials)
    return credentials.get_client(logger=logger)
