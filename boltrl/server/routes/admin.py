"""Operator routes: counts by status, and an on-demand reap (the server also reaps on a timer)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from boltrl.server.routes import json_response
from boltrl.store.base import Store
from boltrl.types import Attempt


class ReapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    heartbeat_timeout_s: float = Field(ge=0, le=7 * 24 * 3600)


class ReapResponse(BaseModel):
    attempts: list[Attempt]


class Stats(BaseModel):
    rollouts: dict[str, int]
    """Number of rollouts by status, every status present."""


def router(store: Store) -> APIRouter:
    r = APIRouter(tags=["admin"])

    @r.get("/v1/stats", response_model=Stats)
    async def stats() -> Response:
        return json_response(Stats.model_construct(rollouts=await store.count_rollouts()))

    @r.post("/v1/admin/reap", response_model=ReapResponse)
    async def reap(body: ReapRequest) -> Response:
        """Mark lost and timed-out attempts now, with the given heartbeat timeout; returns them."""
        return json_response(
            ReapResponse.model_construct(attempts=await store.reap(body.heartbeat_timeout_s))
        )

    return r
