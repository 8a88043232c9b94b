"""Training-run routes: the trainer posts a row of metrics per step; the dashboard draws the curves."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from boltrl.server.routes import json_response
from boltrl.store.base import Store
from boltrl.types import Id, Run, RunList, RunMetrics, RunMetricsRequest


def router(store: Store) -> APIRouter:
    r = APIRouter(tags=["runs"])

    @r.post("/v1/runs/{run_id}/metrics", response_model=Run)
    async def add_metrics(run_id: Id, body: RunMetricsRequest) -> Response:
        """Store rows `{"step": int, "<namespace>/<name>": value, ...}`; a step posted again replaces
        its row, so a retry or a resumed run is harmless."""
        return json_response(await store.add_run_metrics(run_id, body.rows))

    @r.get("/v1/runs", response_model=RunList)
    async def list_runs() -> Response:
        """Every run that posted metrics, the most recently updated first, each with its latest row."""
        return json_response(RunList.model_construct(runs=await store.list_runs()))

    @r.get("/v1/runs/{run_id}/metrics", response_model=RunMetrics)
    async def get_metrics(run_id: str) -> Response:
        """A run's rows in step order."""
        rows = await store.get_run_metrics(run_id)
        return json_response(RunMetrics.model_construct(run_id=run_id, rows=rows))

    return r
