"""The boltrl server: the store behind a REST API and OTLP/HTTP trace ingest (`create_app`, `serve`)."""

from __future__ import annotations

from boltrl.server.app import create_app, serve

__all__ = ["create_app", "serve"]
