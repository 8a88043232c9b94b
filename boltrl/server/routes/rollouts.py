"""Rollout routes: enqueue, query, read, cancel, claim, and the long-poll wait."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from boltrl.server.routes import json_response
from boltrl.store.base import Store
from boltrl.types import (
    Claim,
    ClaimRequest,
    EnqueueRequest,
    EnqueueResponse,
    Mode,
    Rollout,
    RolloutPage,
    RolloutStatus,
    RolloutWithAttempts,
    WaitRequest,
    WaitResponse,
)


def router(store: Store, on_claim: Callable[[Claim], Claim] | None = None) -> APIRouter:
    """`on_claim` rewrites a claim before it is sent (the gateway points its `llm` at the attempt)."""
    r = APIRouter(tags=["rollouts"])

    @r.post("/v1/rollouts", response_model=EnqueueResponse)
    async def enqueue(body: EnqueueRequest) -> Response:
        """Enqueue a batch of rollouts. A caller-supplied id that exists returns the stored rollout."""
        return json_response(EnqueueResponse.model_construct(rollouts=await store.enqueue(body.rollouts)))

    @r.get("/v1/rollouts", response_model=RolloutPage)
    async def list_rollouts(
        status: RolloutStatus | None = None,
        group_id: str | None = None,
        mode: Mode | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[str | None, Query(description="The previous page's next_cursor.")] = None,
        order: Annotated[Literal["asc", "desc"], Query(description="desc: newest first.")] = "asc",
    ) -> Response:
        """Query rollouts in queue order (`order=desc`: newest first); `after`: the last next_cursor."""
        page = await store.list_rollouts(
            status=status, group_id=group_id, mode=mode, limit=limit, after=after, order=order
        )
        return json_response(page)

    @r.post("/v1/rollouts/claim", response_model=Claim, responses={204: {"description": "Nothing queued."}})
    async def claim(body: ClaimRequest) -> Response:
        """Atomically take the oldest queued rollout, open its next attempt, get current resources."""
        claimed = await store.claim(body.worker_id)
        if claimed is None:
            return Response(status_code=204)
        return json_response(on_claim(claimed) if on_claim else claimed)

    @r.post("/v1/rollouts/wait", response_model=WaitResponse)
    async def wait(body: WaitRequest) -> Response:
        """Long poll: return as soon as every rollout is terminal, or at `timeout_s` with those that are."""
        done = await store.wait(body.ids, body.timeout_s)
        return json_response(WaitResponse.model_construct(rollouts=done))

    @r.get("/v1/rollouts/{rollout_id}", response_model=RolloutWithAttempts)
    async def get_rollout(rollout_id: str) -> Response:
        """One rollout with all of its attempts."""
        rollout = await store.get_rollout(rollout_id)
        attempts = await store.list_attempts(rollout_id)
        return json_response(RolloutWithAttempts.model_construct(**dict(rollout), attempts=attempts))

    @r.post("/v1/rollouts/{rollout_id}/cancel", response_model=Rollout)
    async def cancel(rollout_id: str) -> Response:
        """Cancel a queued or running rollout (its running attempt ends; the worker's heartbeat gets 409)."""
        return json_response(await store.cancel(rollout_id))

    return r
