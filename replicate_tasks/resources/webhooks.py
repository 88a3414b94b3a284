"""The account's default webhook signing secret."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..calls import Namespace, Request, model_parser, single
from ..models import WebhookSigningSecret

if TYPE_CHECKING:
    from ..client import Replicate

_secret = model_parser(WebhookSigningSecret)


class DefaultWebhook(Namespace):
    """The default webhook settings, which sign every webhook of the account."""

    def secret(self) -> WebhookSigningSecret:
        """Return the signing secret; its `key` is a SecretStr kept out of logs and reprs."""
        return self._run(single(Request("GET", "/v1/webhooks/default/secret", _secret)))

    async def async_secret(self) -> WebhookSigningSecret:
        return await self._async_run(single(Request("GET", "/v1/webhooks/default/secret", _secret)))


class Webhooks(Namespace):
    """Webhook settings of the account."""

    def __init__(self, client: Replicate) -> None:
        super().__init__(client)
        self.default = DefaultWebhook(client)
