"""Operator views derived from attempts: workers, and rollouts finished since a time (throughput)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from boltrl.server.routes import json_response
from boltrl.store.base import Store
from boltrl.types import FinishedCounts, WorkerList


def router(store: Store) -> APIRouter:
    r = APIRouter(tags=["operations"])

    @r.get("/v1/workers", response_model=WorkerList)
    async def list_workers() -> Response:
        """Every worker that ever claimed: attempts by status, first seen, last heartbeat."""
        return json_response(WorkerList.model_construct(workers=await store.list_workers()))

    @r.get("/v1/stats/finished", response_model=FinishedCounts)
    async def finished(since: Annotated[float, Query(description="Unix seconds.")]) -> Response:
        """Rollouts that ended at or after `since`, by terminal status."""
        counts = await store.count_finished(since)
        return json_response(FinishedCounts.model_construct(since=since, rollouts=counts))

    return r
