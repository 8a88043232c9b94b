"""The server: `create_app(store, config)` builds the FastAPI app; `serve(config)` runs it with uvicorn.

Every error leaves in one shape, `{"error": {"message": ..., "type": ...}}`: a `BoltrlError` with its
`http_status`, a validation failure as 422 naming the field path (malformed JSON: 400), an unknown
route as 404. Bad input never reaches the store, so it never causes a 5xx or a partial write.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import inspect
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from boltrl.config import ServerConfig
from boltrl.errors import ERRORS_BY_STATUS, BoltrlError
from boltrl.inference.base import InferenceBackend
from boltrl.server.middleware import GuardMiddleware, error_body
from boltrl.server.routes import all_routers
from boltrl.store.base import Store

log = logging.getLogger("boltrl.server")

_MAX_LISTED_ERRORS = 5


def create_app(
    store: Store, config: ServerConfig | None = None, *, backend: InferenceBackend | None = None
) -> FastAPI:
    """The boltrl REST API and OTLP ingest over `store`, and with a `backend` the gateway in front of
    it. The app's lifespan runs the reaper and closes the store (and the backend) on shutdown."""
    config = config or ServerConfig()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(_reap_forever(store, config), name="boltrl-reaper")
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await store.close()
            if backend is not None:
                await backend.close()

    app = FastAPI(
        title="boltrl",
        version=_version(),
        summary="Rollouts, attempts, spans and resources of an RL trainer for AI agents.",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.config = config
    for router in all_routers(store, config, backend):
        app.include_router(router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness; needs no token."""
        return {"status": "ok"}

    app.add_exception_handler(BoltrlError, _boltrl_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(GuardMiddleware, token=config.token, max_body_bytes=config.max_body_bytes)
    return app


def _version() -> str:
    try:
        return importlib.metadata.version("boltrl")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


async def _reap_forever(store: Store, config: ServerConfig) -> None:
    while True:
        await asyncio.sleep(config.reap_interval_s)
        try:
            reaped = await store.reap(config.heartbeat_timeout_s)
        except Exception:  # the reaper must outlive a bad moment of the store
            log.exception("reaping lost attempts failed; trying again in %g s", config.reap_interval_s)
            continue
        for attempt in reaped:
            log.info("attempt %s of rollout %s is %s", attempt.id, attempt.rollout_id, attempt.status)


def _error(status: int, message: str, kind: str) -> Response:
    return Response(error_body(message, kind), status_code=status, media_type="application/json")


async def _boltrl_error(request: Request, exc: Exception) -> Response:
    return _error(getattr(exc, "http_status", 500), str(exc), type(exc).__name__)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if isinstance(exc.body, bytes):  # FastAPI parses JSON only when the Content-Type says JSON
        content_type = request.headers.get("content-type", "none")
        return _error(
            415,
            f"request body must be JSON: send Content-Type: application/json (got {content_type})",
            "InvalidInputError",
        )
    status, message = validation_message(exc.errors())
    return _error(status, message, "InvalidInputError")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    cls = ERRORS_BY_STATUS.get(exc.status_code)
    message = f"{exc.detail}: {request.method} {request.url.path}"
    response = _error(exc.status_code, message, cls.__name__ if cls else "HTTPError")
    response.headers.update(exc.headers or {})
    return response


def validation_message(errors: Sequence[Any]) -> tuple[int, str]:
    """(status, message) for FastAPI validation errors: every problem as `path: what is wrong`."""
    for e in errors:
        if e.get("type") == "json_invalid":
            where = e["loc"][1] if len(e["loc"]) > 1 else "?"
            reason = e.get("ctx", {}).get("error", "")
            return 400, f"request body is not valid JSON: {reason} at character {where}"
    parts = []
    for e in errors[:_MAX_LISTED_ERRORS]:
        loc = ".".join(str(x) for x in e.get("loc", ()))
        if loc == "body" and e.get("type") == "missing":
            parts.append("body: missing; send a JSON object (Content-Type: application/json)")
        else:
            parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    if len(errors) > _MAX_LISTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_LISTED_ERRORS} more")
    return 422, "; ".join(parts)


# ---------------------------------------------------------------- running it


def uvicorn_config(app: FastAPI, config: ServerConfig, **overrides: Any) -> uvicorn.Config:
    """uvicorn settings shared by `serve` and `boltrl.testing.live_server`."""
    settings: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "lifespan": "on",
        "access_log": False,  # a line per request costs more than the request; /metrics counts them
        "ws": "none",
        "server_header": False,
        "timeout_graceful_shutdown": 5,  # long polls are cut short rather than holding up a restart
        # Idle connections stay open longer than clients keep them (httpx: 5 s, boltrl's client:
        # KEEPALIVE_EXPIRY_S): with both at 5 s a heartbeat every 5 s raced the server's close and
        # failed with "Server disconnected without sending a response" under load.
        "timeout_keep_alive": 75,
        "log_level": "info",
    }
    settings.update(overrides)
    return uvicorn.Config(app, **settings)


async def open_store_async(db: str) -> Store:
    """`boltrl.store.open_store(db)`, awaited if the store needs to open inside the running loop."""
    from boltrl.store import open_store

    store: Any = open_store(db)
    if inspect.isawaitable(store):
        store = await store
    return store


def serve(config: ServerConfig) -> None:
    """Open the store, serve the API on `config.host:config.port` until SIGINT or SIGTERM, then finish
    in-flight requests (up to 5 s), stop the reaper and close the store."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvicorn picks uvloop only when it makes the loop itself; this loop is ours, so pick it here.
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(config))


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it where it builds; plain asyncio otherwise
        return None
    return uvloop.new_event_loop


async def _serve(config: ServerConfig) -> None:
    store = await open_store_async(config.db)
    backend = None
    if config.model:
        from boltrl.inference import open_backend

        log.info("loading %s with the %s backend", config.model, config.backend)
        backend = await asyncio.to_thread(
            open_backend,
            config.backend,
            config.model,
            upstream=config.upstream,
            api_key=config.upstream_api_key,
            device=config.device,
            max_batch_size=config.max_batch_size,
        )
    app = create_app(store, config, backend=backend)
    log.info(
        "boltrl server on http://%s:%d (store %s, %s)",
        config.host,
        config.port,
        _redact(config.db),
        "bearer token required" if config.token else "no auth",
    )
    await uvicorn.Server(uvicorn_config(app, config)).serve()


def _redact(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", url)
