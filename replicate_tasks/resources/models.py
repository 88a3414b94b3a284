"""Models and their versions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..calls import Namespace, Request, model_parser, relative_path, single, split_ref
from ..models import Model, ModelVersion, Page

if TYPE_CHECKING:
    from ..client import Replicate

_model = model_parser(Model)
_version = model_parser(ModelVersion)
_version_page = model_parser(Page[ModelVersion])


class Models(Namespace):
    """Models and their versions."""

    def __init__(self, client: Replicate) -> None:
        super().__init__(client)
        self.versions = ModelVersions(client)

    def get(self, owner: str, name: str | None = None) -> Model:
        """Return a model; `owner` may also be `"owner/name"` with no `name`."""
        owner, name = split_ref(owner, name, "model")
        return self._run(single(Request("GET", f"/v1/models/{owner}/{name}", _model)))

    async def async_get(self, owner: str, name: str | None = None) -> Model:
        owner, name = split_ref(owner, name, "model")
        return await self._async_run(single(Request("GET", f"/v1/models/{owner}/{name}", _model)))


class ModelVersions(Namespace):
    """The versions of a model."""

    def get(self, model: str, version_id: str) -> ModelVersion:
        """Return one version of `model` (`"owner/name"`); NotFoundError if it does not exist."""
        return self._run(single(_get_version(model, version_id)))

    async def async_get(self, model: str, version_id: str) -> ModelVersion:
        return await self._async_run(single(_get_version(model, version_id)))

    def list(self, model: str, cursor: str | None = None) -> Page[ModelVersion]:
        """Return one page of the versions of `model`, newest first."""
        return self._run(single(_list_versions(model, cursor)))

    async def async_list(self, model: str, cursor: str | None = None) -> Page[ModelVersion]:
        return await self._async_run(single(_list_versions(model, cursor)))


def _get_version(model: str, version_id: str) -> Request[ModelVersion]:
    owner, name = split_ref(model, None, "model")
    if not version_id or "/" in version_id:
        raise ValueError(f"version id {version_id!r} is invalid; pass the 64-character id alone.")
    return Request("GET", f"/v1/models/{owner}/{name}/versions/{version_id}", _version)


def _list_versions(model: str, cursor: str | None) -> Request[Page[ModelVersion]]:
    owner, name = split_ref(model, None, "model")
    path = relative_path(cursor) if cursor else f"/v1/models/{owner}/{name}/versions"
    return Request("GET", path, _version_page)
