"""`POST /v1/rollouts/import`: write a recorded rollout as it is (what `boltrl replay` sends)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from boltrl.server.routes import json_response
from boltrl.store.base import Store
from boltrl.types import ImportRequest, Rollout


def router(store: Store) -> APIRouter:
    r = APIRouter(tags=["rollouts"])

    @r.post("/v1/rollouts/import", response_model=Rollout)
    async def import_rollout(body: ImportRequest) -> Response:
        """Write the rollout, its attempts and spans with their ids, statuses and times. A rollout that
        exists is kept as stored and gets only the spans it lacks (by `span_id`): safe to repeat."""
        return json_response(await store.import_rollout(body.rollout, body.attempts, body.spans))

    return r
