"""The boltrl server: the store behind a REST API and OTLP/HTTP trace ingest (`create_app`, `serve`).

Imported lazily, so that `boltrl.server.auth` (which runners use to derive attempt tokens) does not
bring FastAPI and uvicorn with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boltrl.server.app import create_app, serve


def __getattr__(name: str) -> Any:
    if name in ("create_app", "serve"):
        from boltrl.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'boltrl.server' has no attribute {name!r}")


__all__ = ["create_app", "serve"]
