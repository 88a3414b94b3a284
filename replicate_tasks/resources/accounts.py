"""The token's account and the hardware catalog."""

from __future__ import annotations

import builtins

from ..calls import Namespace, Request, model_parser, single
from ..models import Account, Hardware

_account = model_parser(Account)
_hardware_list = model_parser(list[Hardware])


class Accounts(Namespace):
    """The account that owns the API token."""

    def current(self) -> Account:
        return self._run(single(Request("GET", "/v1/account", _account)))

    async def async_current(self) -> Account:
        return await self._async_run(single(Request("GET", "/v1/account", _account)))


class HardwareList(Namespace):
    """The hardware SKUs that deployments can use."""

    def list(self) -> builtins.list[Hardware]:
        return self._run(single(Request("GET", "/v1/hardware", _hardware_list)))

    async def async_list(self) -> builtins.list[Hardware]:
        return await self._async_run(single(Request("GET", "/v1/hardware", _hardware_list)))
