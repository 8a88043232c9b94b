"""`GET /metrics`: Prometheus text exposition (see `boltrl.server.metrics`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from boltrl.server.metrics import ServerMetrics, render
from boltrl.store.base import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def router(store: Store, metrics: ServerMetrics) -> APIRouter:
    r = APIRouter(tags=["metrics"])

    @r.get("/metrics", response_class=Response)
    async def scrape() -> Response:
        """Rollouts, attempts, queue, workers, gateway latency and tokens, spans, trainer metrics."""
        return Response(await render(store, metrics), media_type=CONTENT_TYPE)

    return r
