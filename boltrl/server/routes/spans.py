"""Span routes: add a batch (boltrl JSON), read a rollout's spans in `seq` order."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from boltrl.server import auth
from boltrl.server.routes import json_response
from boltrl.store.base import Store
from boltrl.types import SpansRequest, SpansResponse


def router(store: Store) -> APIRouter:
    r = APIRouter(tags=["spans"])

    @r.post("/v1/spans", response_model=SpansResponse)
    async def add_spans(body: SpansRequest, request: Request) -> Response:
        """Add spans; each gets the next `seq` of its rollout. The whole batch is stored or none of it.
        An attempt's token may add only spans of its own rollout and attempt (else 403)."""
        scope = getattr(request.state, auth.STATE_KEY, None)
        auth.check_spans(scope, {(s.rollout_id, s.attempt_id) for s in body.spans})
        return json_response(SpansResponse.model_construct(spans=await store.add_spans(body.spans)))

    @r.get("/v1/rollouts/{rollout_id}/spans", response_model=SpansResponse)
    async def get_spans(rollout_id: str, attempt_id: str | None = None) -> Response:
        """A rollout's spans in `seq` order, optionally those of one attempt only."""
        spans = await store.get_spans(rollout_id, attempt_id=attempt_id)
        return json_response(SpansResponse.model_construct(spans=spans))

    return r
