"""`PostgresStore`: the `Store` on a PostgreSQL database, shared by several servers on many hosts.

Semantics mirror `SQLiteStore` exactly (the conformance suite runs both). psycopg 3, async, through a
connection pool (psycopg_pool) opened in the event loop that first uses the store. Every write is one
transaction at READ COMMITTED; what makes it safe under concurrent writers in any number of processes:
- `claim` locks the oldest queued rollout with `FOR UPDATE SKIP LOCKED`: concurrent claimers each get a
  different row and never wait on one another.
- A span batch locks its rollouts' rows before it reads `next_span_seq`, so `seq` stays monotonic per
  rollout whoever writes. Locks are taken rollout row first, then its attempts, and several rollout
  rows in id order, so claims, finishes, cancels, span writes and reaps never deadlock one another.
- `wait` is woken at once by this object's writes and re-reads every `POLL_S` to see other servers'.
Left out on purpose: LISTEN/NOTIFY (a connection held per server, for a wake-up 0.2 s sooner), an ORM,
and migrations (schema 1 is the first; see `postgres_db.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from boltrl.errors import ConflictError, InvalidInputError, NotFoundError
from boltrl.store import postgres_db as pg
from boltrl.store.base import check_import, check_query, creatable, parse_cursor
from boltrl.store.postgres_db import Conn, fetch_all
from boltrl.store.postgres_ops import TERMINAL, Operations
from boltrl.types import (
    Attempt,
    Claim,
    Rollout,
    RolloutCreate,
    RolloutPage,
    Span,
    SpanCreate,
    attempt_outcome,
    check_finish_status,
    check_transition,
    new_id,
    now,
)

POLL_S = 0.2  # how often wait() re-reads, to see changes made by other servers on the database


class PostgresStore(Operations):
    """The `Store` on PostgreSQL: `PostgresStore("postgresql://user:pass@host:5432/db")`."""

    # ------------------------------------------------------------ rollouts

    async def enqueue(self, rollouts: list[RolloutCreate]) -> list[Rollout]:
        rows, ids = [], []
        for rc in rollouts:  # every value is checked before anything is written
            rid = rc.id or new_id("ro")
            fields = rc.model_dump(exclude={"id", "input", "metadata"})
            row = Rollout(id=rid, input=None, created_at=now(), **fields).model_dump()
            row["input"] = pg.dumps(rc.input, f"input of rollout {rid!r}")
            row["metadata"] = pg.dumps(rc.metadata, f"metadata of rollout {rid!r}")
            rows.append(row)
            ids.append(rid)
        if not rows:
            return []
        async with self._tx() as db:
            sql = pg.insert_sql("rollouts", rows[0], "ON CONFLICT (id) DO NOTHING")
            await db.cursor().executemany(sql, [tuple(r.values()) for r in rows])
            stored = await fetch_all(db, "SELECT * FROM rollouts WHERE id = ANY(%s)", (ids,))
        by_id = {row["id"]: pg.rollout(row) for row in stored}
        return [by_id[rid].model_copy(deep=True) for rid in ids]

    async def get_rollout(self, rollout_id: str) -> Rollout:
        async with self._tx() as db:
            return await self._rollout(db, rollout_id)

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
        where = ["position > %s" if order == "asc" else "position < %s"]
        params: list[Any] = [cursor, *(v for v in (status, group_id, mode) if v)]
        where += [f"{c} = %s" for c, v in (("status", status), ("group_id", group_id), ("mode", mode)) if v]
        direction = "" if order == "asc" else " DESC"
        rows = await self._read(
            f"SELECT * FROM rollouts WHERE {' AND '.join(where)} ORDER BY position{direction} LIMIT %s",
            [*params, limit + 1],
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = str(rows[-1]["position"]) if more else None
        return RolloutPage(rollouts=[pg.rollout(r) for r in rows], next_cursor=next_cursor)

    async def cancel(self, rollout_id: str) -> Rollout:
        async with self._tx() as db:
            r = await self._rollout(db, rollout_id, lock=True)
            check_transition(r.status, "cancelled")
            t = now()
            await db.execute(
                "UPDATE attempts SET status = 'failed', ended_at = %s, error = 'rollout cancelled'"
                " WHERE rollout_id = %s AND status = 'running'",
                (t, rollout_id),
            )
            await db.execute(
                "UPDATE rollouts SET status = 'cancelled', ended_at = %s WHERE id = %s", (t, rollout_id)
            )
            r = await self._rollout(db, rollout_id)
        self._notify()
        return r

    async def import_rollout(
        self, rollout: Rollout, attempts: list[Attempt], spans: list[SpanCreate]
    ) -> Rollout:
        async with self._tx() as db:
            # Two imports of one new rollout (two replays at once) take turns, so the second sees it.
            await db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (rollout.id,))
            exists = bool(
                await fetch_all(db, "SELECT 1 FROM rollouts WHERE id = %s FOR UPDATE", (rollout.id,))
            )
            known = None
            if exists:
                rows = await fetch_all(db, "SELECT id FROM attempts WHERE rollout_id = %s", (rollout.id,))
                known = {row["id"] for row in rows}
            check_import(rollout, attempts, spans, known)
            if not exists:
                taken = await fetch_all(
                    db, "SELECT id, rollout_id FROM attempts WHERE id = ANY(%s)", ([a.id for a in attempts],)
                )
                if taken:
                    row = taken[0]
                    raise InvalidInputError(
                        f"attempt {row['id']!r} exists already, in rollout {row['rollout_id']!r}"
                    )
                fields = rollout.model_dump()
                fields["input"] = pg.dumps(rollout.input, f"input of rollout {rollout.id!r}")
                fields["metadata"] = pg.dumps(rollout.metadata, f"metadata of rollout {rollout.id!r}")
                await db.execute(pg.insert_sql("rollouts", fields), tuple(fields.values()))
                rows = [a.model_dump() for a in sorted(attempts, key=lambda a: a.n)]
                if rows:
                    await db.cursor().executemany(
                        pg.insert_sql("attempts", rows[0]), [tuple(r.values()) for r in rows]
                    )
            if spans:
                await self._write_spans(db, [creatable(s) for s in spans])
            stored = await self._rollout(db, rollout.id)
        self._notify()
        return stored

    # ------------------------------------------------------------ attempts

    async def claim(self, worker_id: str) -> Claim | None:
        async with self._tx() as db:
            rows = await fetch_all(
                db,
                "SELECT * FROM rollouts WHERE status = 'queued'"
                " ORDER BY position LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            if not rows:
                return None
            r = pg.rollout(rows[0])
            check_transition(r.status, "running")
            res_rows = await fetch_all(db, "SELECT * FROM resources ORDER BY version DESC LIMIT 1")
            resources = pg.resources(res_rows[0]) if res_rows else None
            t = now()
            n, aid = r.attempt_count + 1, new_id("at")
            attempt = Attempt(id=aid, rollout_id=r.id, n=n, worker_id=worker_id, started_at=t, heartbeat_at=t)
            await db.execute(
                "UPDATE rollouts SET status = 'running', attempt_count = %s,"
                " started_at = COALESCE(started_at, %s), resources_version = %s WHERE id = %s",
                (attempt.n, t, resources.version if resources else None, r.id),
            )
            row = attempt.model_dump()
            await db.execute(pg.insert_sql("attempts", row), tuple(row.values()))
            r = await self._rollout(db, r.id)
        return Claim(rollout=r, attempt=attempt, resources=resources)

    async def heartbeat(self, attempt_id: str) -> Attempt:
        async with self._tx() as db:
            rows = await fetch_all(
                db,
                "UPDATE attempts SET heartbeat_at = %s WHERE id = %s AND status = 'running' RETURNING *",
                (now(), attempt_id),
            )
            if rows:
                return Attempt.model_validate(rows[0])
            a = await self._attempt(db, attempt_id)
        raise ConflictError(f"attempt {attempt_id!r} is {a.status}, not running: stop working on it")

    async def finish_attempt(self, attempt_id: str, status: str, error: str | None = None) -> Attempt:
        check_finish_status(status)
        async with self._tx() as db:
            a = await self._attempt(db, attempt_id)
            await self._rollout(db, a.rollout_id, lock=True)  # then read the attempt again, under the lock
            a = await self._attempt(db, attempt_id)
            if a.status != "running":
                raise ConflictError(f"attempt {attempt_id!r} is already {a.status}")
            a = await self._end_attempt(db, a, status, error)
        self._notify()
        return a

    async def _end_attempt(self, db: Conn, a: Attempt, status: str, error: str | None) -> Attempt:
        """End a running attempt whose rollout row this transaction has locked."""
        t = now()
        await db.execute(
            "UPDATE attempts SET status = %s, ended_at = %s, error = %s WHERE id = %s",
            (status, t, error, a.id),
        )
        r = await self._rollout(db, a.rollout_id)
        if r.status == "running":  # else cancelled meanwhile: the attempt ends, the rollout stays
            new_status = attempt_outcome(status, r.attempt_count, r.max_attempts)
            check_transition(r.status, new_status)
            ended_at = None if new_status == "queued" else t
            await db.execute(
                "UPDATE rollouts SET status = %s, ended_at = COALESCE(%s, ended_at) WHERE id = %s",
                (new_status, ended_at, r.id),
            )
        return await self._attempt(db, a.id)

    async def get_attempt(self, attempt_id: str) -> Attempt:
        async with self._tx() as db:
            return await self._attempt(db, attempt_id)

    async def list_attempts(self, rollout_id: str) -> list[Attempt]:
        async with self._tx() as db:
            await self._rollout(db, rollout_id)
            rows = await fetch_all(
                db, "SELECT * FROM attempts WHERE rollout_id = %s ORDER BY n", (rollout_id,)
            )
        return [Attempt.model_validate(row) for row in rows]

    async def reap(self, heartbeat_timeout_s: float) -> list[Attempt]:
        t, hb = now(), heartbeat_timeout_s
        sql = (
            "SELECT a.id, a.rollout_id, a.started_at, r.timeout_s FROM attempts a"
            " JOIN rollouts r ON r.id = a.rollout_id WHERE a.status = 'running'"
            " AND (%s - a.started_at > r.timeout_s + %s OR %s - a.heartbeat_at > %s)"
            " ORDER BY a.started_at, a.id"
        )
        due = await self._read(sql, (t, hb, t, hb))
        if not due:  # the usual case: nothing due, nothing locked
            return []
        reaped: list[Attempt] = []
        async with self._tx() as db:  # lock, then read again: a heartbeat may have come in between
            ids = sorted({row["rollout_id"] for row in due})
            await db.execute("SELECT 1 FROM rollouts WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (ids,))
            for row in await fetch_all(db, sql, (t, hb, t, hb)):
                a = await self._attempt(db, row["id"])
                if t - row["started_at"] > row["timeout_s"] + hb:
                    reaped.append(await self._end_attempt(db, a, "timed_out", "rollout timeout exceeded"))
                else:
                    reaped.append(await self._end_attempt(db, a, "lost", f"no heartbeat for {hb:g} s"))
        if reaped:
            self._notify()
        return reaped

    async def wait(self, rollout_ids: list[str], timeout_s: float) -> list[Rollout]:
        ids = list(dict.fromkeys(rollout_ids))
        known = {row["id"] for row in await self._read("SELECT id FROM rollouts WHERE id = ANY(%s)", (ids,))}
        for rid in rollout_ids:
            if rid not in known:
                raise NotFoundError(f"rollout {rid!r} not found")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        changed = asyncio.Event()
        self._waiters.add(changed)
        try:
            while True:
                changed.clear()  # before the read: a write after it sets the event again and is not missed
                rows = await self._read(
                    "SELECT * FROM rollouts WHERE id = ANY(%s) AND status = ANY(%s)", (ids, TERMINAL)
                )
                by_id = {row["id"]: pg.rollout(row) for row in rows}
                result = [by_id[rid].model_copy(deep=True) for rid in rollout_ids if rid in by_id]
                remaining = deadline - loop.time()
                if len(result) == len(rollout_ids) or remaining <= 0:
                    return result
                with contextlib.suppress(TimeoutError):  # woken by this object's writes, or polls
                    await asyncio.wait_for(changed.wait(), min(remaining, POLL_S))
        finally:
            self._waiters.discard(changed)

    def _notify(self) -> None:
        for changed in self._waiters:
            changed.set()

    # ------------------------------------------------------------ spans

    async def add_spans(self, spans: list[SpanCreate]) -> list[Span]:
        if not spans:
            return []
        async with self._tx() as db:
            return await self._write_spans(db, spans)

    async def _write_spans(self, db: Conn, spans: list[SpanCreate]) -> list[Span]:
        rollout_ids = sorted({s.rollout_id for s in spans})
        rows = await fetch_all(
            db,
            "SELECT id, next_span_seq FROM rollouts WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (rollout_ids,),
        )
        next_seq: dict[str, int] = {row["id"]: row["next_span_seq"] for row in rows}
        attempt_ids = list({s.attempt_id for s in spans if s.attempt_id})
        owners = await fetch_all(db, "SELECT id, rollout_id FROM attempts WHERE id = ANY(%s)", (attempt_ids,))
        owner_of = {row["id"]: row["rollout_id"] for row in owners}
        for s in spans:  # validate the whole batch before writing any of it
            if s.rollout_id not in next_seq:
                raise NotFoundError(f"rollout {s.rollout_id!r} not found")
            if s.attempt_id and s.attempt_id not in owner_of:
                raise NotFoundError(f"attempt {s.attempt_id!r} not found")
            owner = s.attempt_id and owner_of[s.attempt_id]
            if owner and owner != s.rollout_id:
                raise InvalidInputError(
                    f"attempt {s.attempt_id!r} belongs to rollout {owner!r}, not {s.rollout_id!r}"
                )
        stored = await fetch_all(
            db,
            "SELECT * FROM spans WHERE rollout_id = ANY(%s) AND span_id = ANY(%s)",
            (rollout_ids, list({s.span_id for s in spans})),
        )
        seen = {(row["rollout_id"], row["span_id"]): pg.span(row) for row in stored}
        out: list[Span] = []
        new: list[tuple[Any, ...]] = []
        for s in spans:
            key = (s.rollout_id, s.span_id)
            if key not in seen:  # a span already stored (or earlier in this batch) is kept
                seen[key] = Span(seq=next_seq[s.rollout_id], **s.model_dump())
                next_seq[s.rollout_id] += 1
                row = seen[key].model_dump()
                row["attributes"] = pg.dumps(row["attributes"], f"attributes of span {s.name!r}")
                row["events"] = pg.dumps(row["events"], f"events of span {s.name!r}")
                new.append(tuple(row.values()))
                columns = row
            out.append(seen[key])
        if new:
            await db.cursor().executemany(pg.insert_sql("spans", columns), new)
            await db.cursor().executemany(
                "UPDATE rollouts SET next_span_seq = %s WHERE id = %s", [(n, r) for r, n in next_seq.items()]
            )
        return out

    async def get_spans(self, rollout_id: str, *, attempt_id: str | None = None) -> list[Span]:
        sql, params = "SELECT * FROM spans WHERE rollout_id = %s", [rollout_id]
        if attempt_id is not None:
            sql, params = sql + " AND attempt_id = %s", [rollout_id, attempt_id]
        async with self._tx() as db:
            await self._rollout(db, rollout_id)
            return [pg.span(row) for row in await fetch_all(db, sql + " ORDER BY seq", params)]
