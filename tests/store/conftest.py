"""The `store` fixture: every conformance test runs once per kind in `STORE_KINDS`.

A new kind is one entry in `STORE_KINDS` and one branch in `make_store`. The `postgres` kind needs a
PostgreSQL server: `BOLTRL_TEST_POSTGRES_URL` (`make test` starts a throwaway one with
`.ci/postgres.sh`); each test gets a new empty schema in it, dropped afterwards. Without one it skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from boltrl.store import MemoryStore, SQLiteStore, Store
from boltrl.store.client import StoreClient
from boltrl.testing import live_server

STORE_KINDS = ["memory", "sqlite", "http", "postgres"]
POSTGRES_ENV = "BOLTRL_TEST_POSTGRES_URL"


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """The URL of a new empty schema in the test PostgreSQL (its `search_path`), dropped on exit; the
    test skips when there is no test PostgreSQL."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"no test PostgreSQL: set {POSTGRES_ENV} (make test starts one with .ci/postgres.sh)")
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'boltrl[scale]'")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@asynccontextmanager
async def make_store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh, empty store of `kind`, closed on exit."""
    store: Store
    if kind == "memory":
        store = MemoryStore()
    elif kind == "sqlite":
        store = SQLiteStore(str(tmp_path / "boltrl.db"))
    elif kind == "postgres":
        from boltrl.store.postgres import PostgresStore

        with fresh_postgres() as url:
            store = PostgresStore(url)
            try:
                yield store
            finally:
                await store.close()
        return
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
