"""`SQLiteStore`: the default `Store`, one SQLite file that survives restarts and kill -9.

Semantics mirror `MemoryStore` exactly (the conformance suite runs both). One connection, used
synchronously inside the async methods: a statement takes microseconds, less than a thread hop would.
Every write is one `BEGIN IMMEDIATE` transaction, so several processes (several servers, a CLI) on
the same file still claim atomically. WAL with synchronous=NORMAL makes every acknowledged write
survive a crash of the process; a power cut may lose the last few (use a server-grade database then).
Left out on purpose: a thread pool and an ORM. Schema 2 only added tables and indexes, so every
statement of `SCHEMA` is `IF NOT EXISTS` and running it again migrates a schema-1 file in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from boltrl.errors import ConflictError, InvalidInputError, NotFoundError
from boltrl.store.base import (
    check_import,
    check_metric_rows,
    check_query,
    creatable,
    finished_counts,
    notify,
    parse_cursor,
)
from boltrl.types import (
    ROLLOUT_STATUSES,
    TERMINAL_STATUSES,
    Attempt,
    Claim,
    Resources,
    Rollout,
    RolloutCreate,
    RolloutPage,
    Run,
    Span,
    SpanCreate,
    Worker,
    attempt_outcome,
    check_finish_status,
    check_transition,
    new_id,
    now,
)

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 10_000
POLL_S = 0.2  # how often wait() re-reads, to see changes made by other processes on the file

TERMINAL = ", ".join(f"'{s}'" for s in sorted(TERMINAL_STATUSES))  # an SQL list of constants
SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    position INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order, and the pagination cursor
    id TEXT NOT NULL UNIQUE, input TEXT NOT NULL, group_id TEXT, mode TEXT NOT NULL,
    status TEXT NOT NULL, attempt_count INTEGER NOT NULL, max_attempts INTEGER NOT NULL,
    timeout_s REAL NOT NULL, resources_version INTEGER, created_at REAL NOT NULL,
    started_at REAL, ended_at REAL, metadata TEXT NOT NULL,
    next_span_seq INTEGER NOT NULL DEFAULT 0  -- the seq the rollout's next span gets
);
CREATE INDEX IF NOT EXISTS rollouts_claim ON rollouts (status, position);
CREATE INDEX IF NOT EXISTS rollouts_group ON rollouts (group_id, status);
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT PRIMARY KEY, rollout_id TEXT NOT NULL REFERENCES rollouts (id), n INTEGER NOT NULL,
    worker_id TEXT NOT NULL, status TEXT NOT NULL, started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL, ended_at REAL, error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_rollout ON attempts (rollout_id, n);
CREATE INDEX IF NOT EXISTS attempts_status ON attempts (status);
CREATE TABLE IF NOT EXISTS spans (
    rollout_id TEXT NOT NULL REFERENCES rollouts (id), seq INTEGER NOT NULL,
    attempt_id TEXT REFERENCES attempts (id), trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    parent_id TEXT, name TEXT NOT NULL, start REAL NOT NULL, "end" REAL,
    attributes TEXT NOT NULL, events TEXT NOT NULL, status TEXT NOT NULL,  -- JSON: attributes, events
    PRIMARY KEY (rollout_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_ids ON spans (rollout_id, span_id);  -- retries never duplicate
CREATE TABLE IF NOT EXISTS resources (
    version INTEGER PRIMARY KEY, resources TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rollouts_ended ON rollouts (ended_at);  -- schema 2 from here
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, steps INTEGER NOT NULL, last_step INTEGER NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS run_metrics (
    run_id TEXT NOT NULL REFERENCES runs (id), step INTEGER NOT NULL, row TEXT NOT NULL,  -- row: JSON
    PRIMARY KEY (run_id, step)
);
"""


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{what} must be JSON-serialisable: {e}") from None


def _rollout(row: sqlite3.Row) -> Rollout:
    d = dict(row)
    d["input"], d["metadata"] = json.loads(d["input"]), json.loads(d["metadata"])
    return Rollout.model_validate(d)


def _span(row: sqlite3.Row) -> Span:
    d = dict(row)
    d["attributes"], d["events"] = json.loads(d["attributes"]), json.loads(d["events"])
    return Span.model_validate(d)


def _resources(row: sqlite3.Row | dict[str, Any]) -> Resources:
    return Resources.model_validate({**dict(row), "resources": json.loads(row["resources"])})


def _insert(db: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows whose keys are the model's field names, which are the column names."""
    columns = ", ".join(f'"{c}"' for c in rows[0])
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(rows[0]))})"
    db.executemany(sql, [tuple(r.values()) for r in rows])


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()  # one transaction at a time on the one connection
        self._changed: asyncio.Condition | None = None
        self._changed_loop: asyncio.AbstractEventLoop | None = None
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise

    def _setup(self) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        with self._write():
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise InvalidInputError(
                    f"{self.path} has store schema {version}, newer than this boltrl's {SCHEMA_VERSION}: "
                    "upgrade boltrl"
                )
            if version < SCHEMA_VERSION:  # 0: a new file; 1: adds schema 2's tables and indexes
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the file's write lock first, so other processes
        cannot read-then-write the same queued row in between."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _get_rollout_row(self, db: sqlite3.Connection, rollout_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"rollout {rollout_id!r} not found")
        return row

    def _get_rollout(self, db: sqlite3.Connection, rollout_id: str) -> Rollout:
        return _rollout(self._get_rollout_row(db, rollout_id))

    def _get_attempt(self, db: sqlite3.Connection, attempt_id: str) -> Attempt:
        row = db.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"attempt {attempt_id!r} not found")
        return Attempt.model_validate(dict(row))

    # ------------------------------------------------------------ rollouts

    async def enqueue(self, rollouts: list[RolloutCreate]) -> list[Rollout]:
        """One transaction: the caller ids already stored are read in one query per 500, the new
        rollouts are inserted with one `executemany` and returned without being read back."""
        ids = [rc.id or new_id("ro") for rc in rollouts]
        t = now()
        with self._write() as db:
            known: dict[str, Rollout] = {}
            given = list({rid for rc, rid in zip(rollouts, ids, strict=True) if rc.id})
            for i in range(0, len(given), 500):
                chunk = given[i : i + 500]
                marks = ", ".join("?" * len(chunk))
                for row in db.execute(f"SELECT * FROM rollouts WHERE id IN ({marks})", chunk):
                    known[row["id"]] = _rollout(row)
            rows: list[dict[str, Any]] = []
            out: list[Rollout] = []
            for rc, rid in zip(rollouts, ids, strict=True):
                if rid not in known:  # new, or the first of a batch that repeats an id
                    fields = rc.model_dump(exclude={"id", "input", "metadata"})
                    row = Rollout(id=rid, input=None, created_at=t, **fields).model_dump()
                    row["input"] = _dumps(rc.input, f"input of rollout {rid!r}")
                    row["metadata"] = _dumps(rc.metadata, f"metadata of rollout {rid!r}")
                    rows.append(row)
                    # as a read would return it: input and metadata through JSON
                    stored = dict(row, input=json.loads(row["input"]), metadata=json.loads(row["metadata"]))
                    known[rid] = Rollout.model_construct(**stored)
                out.append(known[rid])
            if rows:
                _insert(db, "rollouts", rows)
        return out

    async def get_rollout(self, rollout_id: str) -> Rollout:
        with self._lock:
            return self._get_rollout(self._db, rollout_id)

    async def list_rollouts(
        self,
        *,
        status: str | None = None,
        group_id: str | None = None,
        mode: str | None = None,
        limit: int = 100,
        after: str | None = None,
        order: str = "asc",
    ) -> RolloutPage:
        check_query(status, mode, limit, order)
        cursor = parse_cursor(after, order)
        where = ["position > ?" if order == "asc" else "position < ?"]
        params = [cursor, *(v for v in (status, group_id, mode) if v)]
        where += [f"{c} = ?" for c, v in (("status", status), ("group_id", group_id), ("mode", mode)) if v]
        direction = "" if order == "asc" else " DESC"
        rows = self._read(
            f"SELECT * FROM rollouts WHERE {' AND '.join(where)} ORDER BY position{direction} LIMIT ?",
            (*params, limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = str(rows[-1]["position"]) if more else None
        return RolloutPage(rollouts=[_rollout(r) for r in rows], next_cursor=next_cursor)

    async def cancel(self, rollout_id: str) -> Rollout:
        with self._write() as db:
            r = self._get_rollout(db, rollout_id)
            check_transition(r.status, "cancelled")
            t = now()
            db.execute(
                "UPDATE attempts SET status = 'failed', ended_at = ?, error = 'rollout cancelled'"
                " WHERE rollout_id = ? AND status = 'running'",
                (t, rollout_id),
            )
            db.execute("UPDATE rollouts SET status = 'cancelled', ended_at = ? WHERE id = ?", (t, rollout_id))
            r = self._get_rollout(db, rollout_id)
        await self._notify()
        return r

    async def count_rollouts(self) -> dict[str, int]:
        counts = dict.fromkeys(ROLLOUT_STATUSES, 0)
        for row in self._read("SELECT status, COUNT(*) AS n FROM rollouts GROUP BY status"):
            counts[row["status"]] = row["n"]
        return counts

    async def count_finished(self, since: float) -> dict[str, int]:
        counts = finished_counts()
        sql = f"SELECT status, COUNT(*) AS n FROM rollouts WHERE ended_at >= ? AND status IN ({TERMINAL})"
        for row in self._read(sql + " GROUP BY status", (since,)):
            counts[row["status"]] = row["n"]
        return counts

    async def import_rollout(
        self, rollout: Rollout, attempts: list[Attempt], spans: list[SpanCreate]
    ) -> Rollout:
        with self._write() as db:
            exists = db.execute("SELECT 1 FROM rollouts WHERE id = ?", (rollout.id,)).fetchone() is not None
            known = None
            if exists:
                rows = db.execute("SELECT id FROM attempts WHERE rollout_id = ?", (rollout.id,))
                known = {row["id"] for row in rows}
            check_import(rollout, attempts, spans, known)
            if not exists:
                for a in attempts:
                    row = db.execute("SELECT rollout_id FROM attempts WHERE id = ?", (a.id,)).fetchone()
                    if row is not None:
                        raise InvalidInputError(f"attempt {a.id!r} exists already, in rollout {row[0]!r}")
                fields = rollout.model_dump()
                fields["input"] = _dumps(rollout.input, f"input of rollout {rollout.id!r}")
                fields["metadata"] = _dumps(rollout.metadata, f"metadata of rollout {rollout.id!r}")
                _insert(db, "rollouts", [fields])
                if attempts:
                    _insert(db, "attempts", [a.model_dump() for a in sorted(attempts, key=lambda a: a.n)])
            if spans:
                self._write_spans(db, [creatable(s) for s in spans])
            stored = self._get_rollout(db, rollout.id)
        await self._notify()
        return stored

    # ------------------------------------------------------------ attempts

    async def claim(self, worker_id: str) -> Claim | None:
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM rollouts WHERE status = 'queued' ORDER BY position LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            r = _rollout(row)
            check_transition(r.status, "running")
            res_row = db.execute("SELECT * FROM resources ORDER BY version DESC LIMIT 1").fetchone()
            resources = _resources(res_row) if res_row else None
            t = now()
            n, aid = r.attempt_count + 1, new_id("at")
            attempt = Attempt(id=aid, rollout_id=r.id, n=n, worker_id=worker_id, started_at=t, heartbeat_at=t)
            db.execute(
                "UPDATE rollouts SET status = 'running', attempt_count = ?,"
                " started_at = COALESCE(started_at, ?), resources_version = ? WHERE id = ?",
                (attempt.n, t, resources.version if resources else None, r.id),
            )
            _insert(db, "attempts", [attempt.model_dump()])
            r = self._get_rollout(db, r.id)
        return Claim(rollout=r, attempt=attempt, resources=resources)

    async def heartbeat(self, attempt_id: str) -> Attempt:
        with self._write() as db:
            a = self._get_attempt(db, attempt_id)
            if a.status != "running":
                raise ConflictError(f"attempt {attempt_id!r} is {a.status}, not running: stop working on it")
            a.heartbeat_at = now()
            db.execute("UPDATE attempts SET heartbeat_at = ? WHERE id = ?", (a.heartbeat_at, attempt_id))
        return a

    async def finish_attempt(self, attempt_id: str, status: str, error: str | None = None) -> Attempt:
        check_finish_status(status)
        with self._write() as db:
            a = self._get_attempt(db, attempt_id)
            if a.status != "running":
                raise ConflictError(f"attempt {attempt_id!r} is already {a.status}")
            a = self._end_attempt(db, a, status, error)
        await self._notify()
        return a

    def _end_attempt(self, db: sqlite3.Connection, a: Attempt, status: str, error: str | None) -> Attempt:
        t = now()
        db.execute(
            "UPDATE attempts SET status = ?, ended_at = ?, error = ? WHERE id = ?", (status, t, error, a.id)
        )
        r = self._get_rollout(db, a.rollout_id)
        if r.status == "running":  # else cancelled meanwhile: the attempt ends, the rollout stays
            new_status = attempt_outcome(status, r.attempt_count, r.max_attempts)
            check_transition(r.status, new_status)
            ended_at = None if new_status == "queued" else t
            db.execute(
                "UPDATE rollouts SET status = ?, ended_at = COALESCE(?, ended_at) WHERE id = ?",
                (new_status, ended_at, r.id),
            )
        return self._get_attempt(db, a.id)

    async def get_attempt(self, attempt_id: str) -> Attempt:
        with self._lock:
            return self._get_attempt(self._db, attempt_id)

    async def list_attempts(self, rollout_id: str) -> list[Attempt]:
        with self._lock:
            self._get_rollout(self._db, rollout_id)
            rows = self._db.execute("SELECT * FROM attempts WHERE rollout_id = ? ORDER BY n", (rollout_id,))
            return [Attempt.model_validate(dict(row)) for row in rows]

    async def reap(self, heartbeat_timeout_s: float) -> list[Attempt]:
        t, hb = now(), heartbeat_timeout_s
        sql = (
            "SELECT a.id, a.started_at, r.timeout_s FROM attempts a JOIN rollouts r ON r.id = a.rollout_id"
            " WHERE a.status = 'running' AND (? - a.started_at > r.timeout_s + ? OR ? - a.heartbeat_at > ?)"
            " ORDER BY a.rowid"
        )
        if not self._read(sql, (t, hb, t, hb)):  # the usual case: nothing due, no write lock taken
            return []
        reaped: list[Attempt] = []
        with self._write() as db:  # read again under the lock: a heartbeat may have come in between
            for row in db.execute(sql, (t, hb, t, hb)).fetchall():
                a = self._get_attempt(db, row["id"])
                if t - row["started_at"] > row["timeout_s"] + hb:
                    reaped.append(self._end_attempt(db, a, "timed_out", "rollout timeout exceeded"))
                else:
                    reaped.append(self._end_attempt(db, a, "lost", f"no heartbeat for {hb:g} s"))
        if reaped:
            await self._notify()
        return reaped

    async def wait(self, rollout_ids: list[str], timeout_s: float) -> list[Rollout]:
        ids = json.dumps(list(dict.fromkeys(rollout_ids)))
        sql = "SELECT * FROM rollouts WHERE id IN (SELECT value FROM json_each(?))"
        known = {row["id"] for row in self._read(sql, (ids,))}
        for rid in rollout_ids:
            if rid not in known:
                raise NotFoundError(f"rollout {rid!r} not found")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        def done() -> list[Rollout]:
            rows = self._read(f"{sql} AND status IN ({TERMINAL})", (ids,))
            by_id = {row["id"]: _rollout(row) for row in rows}
            return [by_id[rid].model_copy(deep=True) for rid in rollout_ids if rid in by_id]

        changed = self._condition()
        async with changed:  # read under the lock, so a notify between read and wait is not missed
            while len(result := done()) < len(rollout_ids):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                # Woken by this object's writes; the timeout catches other processes' writes.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(remaining, POLL_S))
        return result

    def _condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()  # made in (and bound to) the loop that waits, see MemoryStore
        if self._changed is None or self._changed_loop is not loop:
            self._changed, self._changed_loop = asyncio.Condition(), loop
        return self._changed

    async def _notify(self) -> None:
        await notify(self._changed, self._changed_loop)

    # ------------------------------------------------------------ spans

    async def add_spans(self, spans: list[SpanCreate]) -> list[Span]:
        with self._write() as db:
            return self._write_spans(db, spans)

    def _write_spans(self, db: sqlite3.Connection, spans: list[SpanCreate]) -> list[Span]:
        """Validate the whole batch, then write it. One owner lookup per distinct attempt and one
        duplicate lookup per rollout (per 500 span ids), one `executemany`; spans are built from the
        already-validated request models, not validated twice."""
        next_seq: dict[str, int] = {}
        owners: dict[str, str] = {}
        for s in spans:  # validate the whole batch before writing any of it
            if s.rollout_id not in next_seq:
                next_seq[s.rollout_id] = self._get_rollout_row(db, s.rollout_id)["next_span_seq"]
            if s.attempt_id and s.attempt_id not in owners:
                row = db.execute("SELECT rollout_id FROM attempts WHERE id = ?", (s.attempt_id,)).fetchone()
                if row is None:
                    raise NotFoundError(f"attempt {s.attempt_id!r} not found")
                owners[s.attempt_id] = row["rollout_id"]
            owner = s.attempt_id and owners[s.attempt_id]
            if owner and owner != s.rollout_id:
                raise InvalidInputError(
                    f"attempt {s.attempt_id!r} belongs to rollout {owner!r}, not {s.rollout_id!r}"
                )
        seen: dict[tuple[str, str], Span] = {}  # a span already stored (or earlier in this batch) is kept
        by_rollout: dict[str, set[str]] = {}
        for s in spans:
            by_rollout.setdefault(s.rollout_id, set()).add(s.span_id)
        for rollout_id, span_ids in by_rollout.items():
            ids = sorted(span_ids)
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT * FROM spans WHERE rollout_id = ? AND span_id IN ({marks})"
                for row in db.execute(sql, (rollout_id, *chunk)):
                    seen[(rollout_id, row["span_id"])] = _span(row)
        out: list[Span] = []
        rows: list[dict[str, Any]] = []
        for s in spans:
            key = (s.rollout_id, s.span_id)
            if key not in seen:
                seq = next_seq[s.rollout_id]
                next_seq[s.rollout_id] = seq + 1
                seen[key] = Span.model_construct(**dict(s), seq=seq)
                row = s.model_dump()
                row["seq"] = seq
                row["attributes"] = _dumps(row["attributes"], f"attributes of span {s.name!r}")
                row["events"] = _dumps(row["events"], f"events of span {s.name!r}")
                rows.append(row)
            out.append(seen[key])
        if rows:
            _insert(db, "spans", rows)
        db.executemany(
            "UPDATE rollouts SET next_span_seq = ? WHERE id = ?", [(n, r) for r, n in next_seq.items()]
        )
        return out

    async def get_spans(self, rollout_id: str, *, attempt_id: str | None = None) -> list[Span]:
        with self._lock:
            self._get_rollout(self._db, rollout_id)
            sql = "SELECT * FROM spans WHERE rollout_id = ?"
            params: tuple[Any, ...] = (rollout_id,)
            if attempt_id is not None:
                sql, params = sql + " AND attempt_id = ?", (rollout_id, attempt_id)
            return [_span(row) for row in self._db.execute(sql + " ORDER BY seq", params)]

    # ------------------------------------------------------------ workers and runs

    async def list_workers(self) -> list[Worker]:
        rows = self._read(
            "SELECT worker_id AS id, MIN(started_at) AS first_seen, MAX(heartbeat_at) AS last_heartbeat,"
            + ", ".join(
                f" SUM(status = '{s}') AS {s}"
                for s in ("running", "succeeded", "failed", "timed_out", "lost")
            )
            + " FROM attempts GROUP BY worker_id ORDER BY last_heartbeat DESC, worker_id"
        )
        return [Worker.model_validate(dict(row)) for row in rows]

    async def add_run_metrics(self, run_id: str, rows: list[dict[str, Any]]) -> Run:
        clean = check_metric_rows(rows)
        values = [
            (run_id, row["step"], _dumps(row, f"metrics of run {run_id!r} step {row['step']}"))
            for row in clean
        ]
        t = now()
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (id, steps, last_step, created_at, updated_at) VALUES (?, 0, 0, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (run_id, t, t),
            )
            db.executemany("INSERT OR REPLACE INTO run_metrics (run_id, step, row) VALUES (?, ?, ?)", values)
            db.execute(
                "UPDATE runs SET updated_at = ?,"
                " steps = (SELECT COUNT(*) FROM run_metrics WHERE run_id = runs.id),"
                " last_step = (SELECT MAX(step) FROM run_metrics WHERE run_id = runs.id) WHERE id = ?",
                (t, run_id),
            )
            return self._runs(db, "WHERE runs.id = ?", (run_id,))[0]

    def _runs(self, db: sqlite3.Connection, where: str = "", params: tuple[Any, ...] = ()) -> list[Run]:
        rows = db.execute(
            "SELECT runs.*, m.row AS last FROM runs JOIN run_metrics m ON m.run_id = runs.id"
            f" AND m.step = runs.last_step {where} ORDER BY runs.updated_at DESC, runs.id",
            params,
        )
        return [Run.model_validate({**dict(row), "last": json.loads(row["last"])}) for row in rows]

    async def get_run_metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._read("SELECT row FROM run_metrics WHERE run_id = ? ORDER BY step", (run_id,))
        if not rows:
            raise NotFoundError(f"run {run_id!r} not found: it has posted no metrics")
        return [json.loads(row["row"]) for row in rows]

    async def list_runs(self) -> list[Run]:
        with self._lock:
            return self._runs(self._db)

    # ------------------------------------------------------------ resources

    async def get_resources(self, version: int | None = None) -> Resources | None:
        if version is None:
            rows = self._read("SELECT * FROM resources ORDER BY version DESC LIMIT 1")
            return _resources(rows[0]) if rows else None
        rows = self._read("SELECT * FROM resources WHERE version = ?", (version,))
        if not rows:
            raise NotFoundError(f"resources version {version} not found")
        return _resources(rows[0])

    async def put_resources(self, resources: dict[str, Any]) -> Resources:
        row = {"resources": _dumps(resources, "resources"), "created_at": now()}
        with self._write() as db:
            row["version"] = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM resources").fetchone()[0]
            _insert(db, "resources", [row])
        return _resources(row)

    async def close(self) -> None:
        with self._lock:
            self._db.close()
