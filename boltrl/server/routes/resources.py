"""Resource routes: read the latest or one version, publish a new version."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from boltrl.errors import NotFoundError
from boltrl.server.routes import json_response
from boltrl.store.base import Store
from boltrl.types import Resources, ResourcesUpdate


def router(store: Store) -> APIRouter:
    r = APIRouter(tags=["resources"])

    @r.get("/v1/resources", response_model=Resources)
    async def latest() -> Response:
        """The latest version (404 until one is published)."""
        resources = await store.get_resources()
        if resources is None:
            raise NotFoundError("no resources published yet: PUT /v1/resources first")
        return json_response(resources)

    @r.get("/v1/resources/{version}", response_model=Resources)
    async def by_version(version: int) -> Response:
        resources = await store.get_resources(version)
        if resources is None:  # a store may answer None rather than raise
            raise NotFoundError(f"resources version {version} not found")
        return json_response(resources)

    @r.put("/v1/resources", response_model=Resources)
    async def publish(body: ResourcesUpdate) -> Response:
        """Publish a new version; rollouts claimed from now on get it."""
        return json_response(await store.put_resources(body.resources))

    return r
