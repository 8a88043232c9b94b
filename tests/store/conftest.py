"""The `store` fixture: every conformance test runs once per kind in `STORE_KINDS`.

A new kind (an HTTP `StoreClient` in front of a live server, PostgreSQL) is one entry in
`STORE_KINDS` and one branch in `make_store`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from boltrl.store import MemoryStore, SQLiteStore, Store
from boltrl.store.client import StoreClient
from boltrl.testing import live_server

STORE_KINDS = ["memory", "sqlite", "http"]


@asynccontextmanager
async def make_store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh, empty store of `kind`, closed on exit."""
    store: Store
    if kind == "memory":
        store = MemoryStore()
    elif kind == "sqlite":
        store = SQLiteStore(str(tmp_path / "boltrl.db"))
    elif kind == "http":  # the HTTP client in front of a real server on loopback, on SQLite
        with live_server(lambda: SQLiteStore(str(tmp_path / "boltrl.db"))) as server:
            async with StoreClient(server.url) as client:
                yield client
        return
    else:
        raise ValueError(f"unknown store kind {kind!r}")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with make_store(request.param, tmp_path) as s:
        yield s
