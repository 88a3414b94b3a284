"""Deployments: create, read, change and delete."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..calls import (
    Call,
    Namespace,
    Request,
    async_iterate_pages,
    iterate_pages,
    may_have_taken_effect,
    model_parser,
    no_content,
    relative_path,
    single,
    split_ref,
)
from ..errors import ConflictError, NotFoundError, ReplicateError
from ..models import Account, Deployment, Page
from ..retry import Repeat
from .accounts import _account
from .predictions import DeploymentPredictions

if TYPE_CHECKING:
    from ..client import Replicate


_deployment = model_parser(Deployment)
_deployment_page = model_parser(Page[Deployment])
# Calls


def _get_deployment(owner: str, name: str) -> Request[Deployment]:
    return Request("GET", f"/v1/deployments/{owner}/{name}", _deployment)


def _create_deployment(body: dict[str, Any]) -> Call[Deployment]:
    post = Request("POST", "/v1/deployments", _deployment, json=body, repeat=Repeat.UNSENT)
    try:
        created: Deployment = yield post
        return created
    except ReplicateError as error:
        if not may_have_taken_effect(error):
            raise
        failure = error

    # The POST may have created the deployment before its response was lost:
    # look for it instead of repeating a request that would then fail with 409.
    account: Account = yield Request("GET", "/v1/account", _account)
    try:
        existing: Deployment = yield _get_deployment(account.username, body["name"])
    except NotFoundError:
        created = yield post
        return created
    if _release_matches(existing, body):
        return existing
    raise ConflictError(
        409,
        title="Conflict",
        detail=(
            f"deployment {existing.ref} exists with other settings after a create request "
            f"whose response was lost ({failure}); inspect it before retrying."
        ),
    )


def _release_matches(deployment: Deployment, body: Mapping[str, Any]) -> bool:
    release = deployment.current_release
    if release is None:
        return False
    configuration = release.configuration
    return bool(
        release.model == body["model"]
        and release.version == body["version"]
        and configuration.hardware == body["hardware"]
        and configuration.min_instances == body["min_instances"]
        and configuration.max_instances == body["max_instances"]
    )


def _delete_deployment(owner: str, name: str) -> Call[None]:
    delete = Request("DELETE", f"/v1/deployments/{owner}/{name}", no_content, repeat=Repeat.UNSENT)
    try:
        yield delete
        return
    except ReplicateError as error:
        if not may_have_taken_effect(error):
            raise

    # The DELETE may have succeeded before its response was lost: a 404 now means it did.
    try:
        yield _get_deployment(owner, name)
    except NotFoundError:
        return
    yield delete


class Deployments(Namespace):
    """Create, read, change and delete deployments, and run predictions on them."""

    def __init__(self, client: Replicate) -> None:
        super().__init__(client)
        self.predictions = DeploymentPredictions(client)

    def get(self, owner: str, name: str | None = None) -> Deployment:
        """Return one deployment; `owner` may also be `"owner/name"` with no `name`."""
        return self._run(single(_get_deployment(*split_ref(owner, name, "deployment"))))

    async def async_get(self, owner: str, name: str | None = None) -> Deployment:
        return await self._async_run(single(_get_deployment(*split_ref(owner, name, "deployment"))))

    def list(self, cursor: str | None = None) -> Page[Deployment]:
        """Return one page of deployments, newest first; pass `page.next` as `cursor`."""
        return self._run(single(_list_deployments(cursor)))

    async def async_list(self, cursor: str | None = None) -> Page[Deployment]:
        return await self._async_run(single(_list_deployments(cursor)))

    def pages(self) -> Iterator[Page[Deployment]]:
        """Iterate over every page, following `next` until the last."""
        return iterate_pages(self.list)

    def async_pages(self) -> AsyncIterator[Page[Deployment]]:
        return async_iterate_pages(self.async_list)

    def list_all(self) -> builtins.list[Deployment]:
        """Return every deployment of the account, from all pages."""
        return [deployment for page in self.pages() for deployment in page.results]

    async def async_list_all(self) -> builtins.list[Deployment]:
        return [deployment async for page in self.async_pages() for deployment in page.results]

    def create(
        self,
        name: str,
        model: str,
        version: str,
        *,
        hardware: str,
        min_instances: int,
        max_instances: int,
    ) -> Deployment:
        """Create a deployment owned by the token's account.

        If the response is lost after the request was sent, the client checks
        with a GET whether the deployment was created instead of sending the
        request again.
        """
        body = _create_body(name, model, version, hardware, min_instances, max_instances)
        return self._run(_create_deployment(body))

    async def async_create(
        self,
        name: str,
        model: str,
        version: str,
        *,
        hardware: str,
        min_instances: int,
        max_instances: int,
    ) -> Deployment:
        body = _create_body(name, model, version, hardware, min_instances, max_instances)
        return await self._async_run(_create_deployment(body))

    def update(
        self,
        owner: str,
        name: str,
        *,
        version: str | None = None,
        hardware: str | None = None,
        min_instances: int | None = None,
        max_instances: int | None = None,
    ) -> Deployment:
        """Change a deployment; every update makes a new release, even one that changes nothing."""
        body = _update_body(version, hardware, min_instances, max_instances)
        return self._run(single(_update_deployment(owner, name, body)))

    async def async_update(
        self,
        owner: str,
        name: str,
        *,
        version: str | None = None,
        hardware: str | None = None,
        min_instances: int | None = None,
        max_instances: int | None = None,
    ) -> Deployment:
        body = _update_body(version, hardware, min_instances, max_instances)
        return await self._async_run(single(_update_deployment(owner, name, body)))

    def delete(self, owner: str, name: str | None = None) -> None:
        """Delete a deployment.

        Replicate deletes only deployments that have been offline (minimum
        instances 0) and unused for 15 minutes, and returns 409 before that.
        """
        self._run(_delete_deployment(*split_ref(owner, name, "deployment")))

    async def async_delete(self, owner: str, name: str | None = None) -> None:
        await self._async_run(_delete_deployment(*split_ref(owner, name, "deployment")))


def _list_deployments(cursor: str | None) -> Request[Page[Deployment]]:
    path = relative_path(cursor) if cursor else "/v1/deployments"
    return Request("GET", path, _deployment_page)


def _update_deployment(owner: str, name: str, body: dict[str, Any]) -> Request[Deployment]:
    owner, name = split_ref(owner, name, "deployment")
    return Request("PATCH", f"/v1/deployments/{owner}/{name}", _deployment, json=body)


def _create_body(
    name: str,
    model: str,
    version: str,
    hardware: str,
    min_instances: int,
    max_instances: int,
) -> dict[str, Any]:
    if "/" in name:
        # Like the official client, accept "owner/name": the owner is always the token's account.
        name = name.partition("/")[2]
    return {
        "name": name,
        "model": model,
        "version": version,
        "hardware": hardware,
        "min_instances": min_instances,
        "max_instances": max_instances,
    }


def _update_body(
    version: str | None,
    hardware: str | None,
    min_instances: int | None,
    max_instances: int | None,
) -> dict[str, Any]:
    fields = {
        "version": version,
        "hardware": hardware,
        "min_instances": min_instances,
        "max_instances": max_instances,
    }
    body = {key: value for key, value in fields.items() if value is not None}
    if not body:
        raise ValueError(
            "update() needs at least one of version, hardware, min_instances or max_instances; "
            "an empty update would still make a new release."
        )
    return body
