"""Operator routes: counts by status, and an on-demand reap (the server also reaps on a timer)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from boltrl.errors import ConflictError
from boltrl.inference.base import InferenceBackend
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


class WeightsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096)
    """An HF checkpoint directory readable by the server (the trainer's `export_pretrained`)."""
    version: int = Field(ge=0)


class WeightsResponse(BaseModel):
    weights_version: int


def router(store: Store, backend: InferenceBackend | None = None) -> APIRouter:
    r = APIRouter(tags=["admin"])

    @r.post("/v1/admin/weights", response_model=WeightsResponse)
    async def load_weights(body: WeightsRequest) -> Response:
        """Serve new weights from a checkpoint directory (a trainer attached with `--server`)."""
        loader = getattr(backend, "load_checkpoint", None)
        if loader is None:
            raise ConflictError("this server has no backend that loads checkpoints (start it with --model)")
        await asyncio.to_thread(loader, body.path, body.version)
        assert backend is not None
        return json_response(WeightsResponse(weights_version=backend.weights_version))

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
