"""One router per resource. Each `router(store)` closes over the store: no per-request dependency."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from boltrl.config import ServerConfig
from boltrl.inference.base import InferenceBackend
from boltrl.store.base import Store
from boltrl.types import Claim

JSON_MEDIA_TYPE = "application/json"


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """Serialize a model straight to JSON bytes (pydantic-core), skipping FastAPI's re-validation."""
    return Response(
        model.__pydantic_serializer__.to_json(model), status_code=status_code, media_type=JSON_MEDIA_TYPE
    )


def all_routers(
    store: Store, config: ServerConfig, backend: InferenceBackend | None = None
) -> list[APIRouter]:
    from boltrl.server.metrics import CountingStore, ServerMetrics
    from boltrl.server.routes import (
        admin,
        attempts,
        dashboard,
        imports,
        metrics,
        resources,
        rollouts,
        runs,
        spans,
        workers,
    )
    from boltrl.server.routes import otlp as traces

    counters = ServerMetrics()
    store = cast(Store, CountingStore(store, counters))  # counts spans ingested, whichever route
    on_claim: Callable[[Claim], Claim] | None = None
    extra: list[APIRouter] = []
    if backend is not None:
        from boltrl.server import gateway

        def on_claim(claim: Claim) -> Claim:
            return gateway.with_gateway_llm(claim, config, backend)

        extra.append(gateway.router(store, backend, on_calls=counters.observe_calls))
    return [
        *extra,
        rollouts.router(store, on_claim),
        attempts.router(store),
        spans.router(store),
        traces.router(store, config),
        resources.router(store),
        admin.router(store, backend),
        imports.router(store),
        runs.router(store),
        workers.router(store),
        metrics.router(store, counters),
        dashboard.router(),
    ]
