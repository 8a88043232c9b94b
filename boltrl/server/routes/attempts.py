"""Attempt routes: read, heartbeat, finish."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from boltrl.server.routes import json_response
from boltrl.store.base import Store
from boltrl.types import Attempt, FinishRequest


class AttemptList(BaseModel):
    attempts: list[Attempt]


def router(store: Store) -> APIRouter:
    r = APIRouter(tags=["attempts"])

    @r.get("/v1/attempts/{attempt_id}", response_model=Attempt)
    async def get_attempt(attempt_id: str) -> Response:
        return json_response(await store.get_attempt(attempt_id))

    @r.get("/v1/rollouts/{rollout_id}/attempts", response_model=AttemptList)
    async def list_attempts(rollout_id: str) -> Response:
        """The attempts of a rollout, oldest first."""
        return json_response(AttemptList.model_construct(attempts=await store.list_attempts(rollout_id)))

    @r.post("/v1/attempts/{attempt_id}/heartbeat", response_model=Attempt)
    async def heartbeat(attempt_id: str) -> Response:
        """Keep a running attempt alive. 409 when it is no longer running: its worker should stop."""
        return json_response(await store.heartbeat(attempt_id))

    @r.post("/v1/attempts/{attempt_id}/finish", response_model=Attempt)
    async def finish(attempt_id: str, body: FinishRequest) -> Response:
        """End a running attempt; the rollout succeeds, is requeued, or fails (409 if not running)."""
        return json_response(await store.finish_attempt(attempt_id, body.status, body.error))

    return r
