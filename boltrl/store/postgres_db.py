"""The PostgreSQL store's database: its tables, how a database gets them, the connection pool and
transactions, and how rows become records.

Kept apart from `postgres.py` (the queue) and `postgres_ops.py` (the rest) so those read as operations.
The columns are the SQLite store's in PostgreSQL types: times are Unix seconds in `DOUBLE PRECISION`,
JSON is `TEXT` holding exactly what was sent (JSONB would reorder keys and drop duplicates).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from boltrl.errors import InvalidInputError, MissingDependencyError, NotFoundError, ServerUnavailableError
from boltrl.types import Attempt, Resources, Rollout, Span

try:
    import psycopg
    from psycopg.rows import DictRow, dict_row
    from psycopg_pool import AsyncConnectionPool
except ImportError as e:  # the `scale` extra
    raise MissingDependencyError(e.name or "psycopg", "scale") from None

Conn = psycopg.AsyncConnection[DictRow]
POOL_MAX = 10  # connections per store; PostgreSQL's default max_connections (100) fits several servers

SCHEMA_VERSION = 1
SETUP_LOCK = 0x626F6C74  # pg_advisory_xact_lock key: servers starting together create tables once

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- queue order, and the pagination cursor
    id TEXT NOT NULL UNIQUE, input TEXT NOT NULL, group_id TEXT, mode TEXT NOT NULL,
    status TEXT NOT NULL, attempt_count INTEGER NOT NULL, max_attempts INTEGER NOT NULL,
    timeout_s DOUBLE PRECISION NOT NULL, resources_version INTEGER, created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION, ended_at DOUBLE PRECISION, metadata TEXT NOT NULL,
    next_span_seq INTEGER NOT NULL DEFAULT 0  -- the seq the rollout's next span gets
);
CREATE INDEX IF NOT EXISTS rollouts_queued ON rollouts (position) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS rollouts_status ON rollouts (status, position);
CREATE INDEX IF NOT EXISTS rollouts_group ON rollouts (group_id, status);
CREATE INDEX IF NOT EXISTS rollouts_ended ON rollouts (ended_at);
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT PRIMARY KEY, rollout_id TEXT NOT NULL REFERENCES rollouts (id), n INTEGER NOT NULL,
    worker_id TEXT NOT NULL, status TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL, ended_at DOUBLE PRECISION, error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_rollout ON attempts (rollout_id, n);
CREATE INDEX IF NOT EXISTS attempts_running ON attempts (started_at) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS spans (
    rollout_id TEXT NOT NULL REFERENCES rollouts (id), seq INTEGER NOT NULL,
    attempt_id TEXT REFERENCES attempts (id), trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    parent_id TEXT, name TEXT NOT NULL, start DOUBLE PRECISION NOT NULL, "end" DOUBLE PRECISION,
    attributes TEXT NOT NULL, events TEXT NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (rollout_id, seq),
    UNIQUE (rollout_id, span_id)  -- retries never duplicate
);
CREATE TABLE IF NOT EXISTS resources (
    version INTEGER PRIMARY KEY, resources TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, steps INTEGER NOT NULL, last_step INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS run_metrics (
    run_id TEXT NOT NULL REFERENCES runs (id), step INTEGER NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
"""


def conninfo(url: str) -> str:
    """The libpq URL for a `--db` value: SQLAlchemy's `postgresql+psycopg://` loses its driver part."""
    return re.sub(r"^postgres(ql)?\+[a-z0-9_]+://", "postgresql://", url.strip())


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^/:@]*):[^/@]*@", r"//\1:***@", url)


def setup(url: str) -> None:
    """Create the tables (once, whoever comes first) or check that the database's schema is ours.

    Synchronous on purpose: it runs once when the store is opened, so a wrong URL or a database
    written by a newer boltrl fails `boltrl serve` at start, not its first request.
    """
    try:
        with (
            psycopg.connect(conninfo(url), autocommit=True, connect_timeout=10) as conn,
            conn.transaction(),
        ):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS boltrl_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM boltrl_schema").fetchone()
            version = row[0] if row and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                raise InvalidInputError(
                    f"{redact(url)} has store schema {version}, newer than this boltrl's "
                    f"{SCHEMA_VERSION}: upgrade boltrl"
                )
            if version < SCHEMA_VERSION:
                conn.execute(SCHEMA)
                conn.execute("DELETE FROM boltrl_schema")
                conn.execute("INSERT INTO boltrl_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
    except psycopg.OperationalError as e:
        raise ServerUnavailableError(f"cannot reach PostgreSQL at {redact(url)}: {e}".strip()) from None


def dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{what} must be JSON-serialisable: {e}") from None


def rollout(row: dict[str, Any]) -> Rollout:
    return Rollout.model_validate(
        {**row, "input": json.loads(row["input"]), "metadata": json.loads(row["metadata"])}
    )


def span(row: dict[str, Any]) -> Span:
    d = {**row, "attributes": json.loads(row["attributes"]), "events": json.loads(row["events"])}
    return Span.model_validate(d)


def resources(row: dict[str, Any]) -> Resources:
    return Resources.model_validate({**row, "resources": json.loads(row["resources"])})


def insert_sql(table: str, row: dict[str, Any], suffix: str = "") -> str:
    """An INSERT for rows shaped like `row`, whose keys are the model's field names (the columns)."""
    columns = ", ".join(f'"{c}"' for c in row)
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(row))}) {suffix}"


class Database:
    """A lazily opened pool on one database, and the reads every store operation shares."""

    def __init__(self, url: str, *, pool_max: int = POOL_MAX) -> None:
        setup(url)  # fails here, at open, on a bad URL or a newer schema
        self.url = url
        self._pool_max = pool_max
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening = asyncio.Lock()
        self._waiters: set[asyncio.Event] = set()  # one per wait() call; this object's writes set them

    async def _open(self) -> AsyncConnectionPool[Conn]:
        loop = asyncio.get_running_loop()
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    pool = AsyncConnectionPool(
                        conninfo(self.url),
                        connection_class=Conn,
                        kwargs={"autocommit": True, "row_factory": dict_row},
                        min_size=1,
                        max_size=self._pool_max,
                        open=False,
                        name="boltrl",
                    )
                    await pool.open(wait=True, timeout=30)
                    self._pool, self._loop = pool, loop
        elif self._loop is not loop:
            raise RuntimeError("a PostgresStore serves the event loop that first used it: open one per loop")
        assert self._pool is not None
        return self._pool

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Conn]:
        """One transaction on a pooled connection; bad text (a NUL byte) is the caller's error."""
        pool = await self._open()
        try:
            async with pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.DataError as e:
            raise InvalidInputError(f"a value PostgreSQL cannot store: {e}") from None

    async def _read(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[DictRow]:
        async with self._tx() as db:
            return await fetch_all(db, sql, params)

    async def _rollout(self, db: Conn, rollout_id: str, *, lock: bool = False) -> Rollout:
        sql = "SELECT * FROM rollouts WHERE id = %s" + (" FOR UPDATE" if lock else "")
        rows = await fetch_all(db, sql, (rollout_id,))
        if not rows:
            raise NotFoundError(f"rollout {rollout_id!r} not found")
        return rollout(rows[0])

    async def _attempt(self, db: Conn, attempt_id: str) -> Attempt:
        rows = await fetch_all(db, "SELECT * FROM attempts WHERE id = %s", (attempt_id,))
        if not rows:
            raise NotFoundError(f"attempt {attempt_id!r} not found")
        return Attempt.model_validate(rows[0])


async def fetch_all(db: Conn, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[DictRow]:
    cur = await db.execute(sql, params)
    return await cur.fetchall()
