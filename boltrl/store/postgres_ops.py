"""The `PostgresStore` operations other than the queue: counts, workers, training runs, resources."""

from __future__ import annotations

import json
from typing import Any

from boltrl.errors import InvalidInputError, NotFoundError
from boltrl.store import postgres_db as pg
from boltrl.store.base import check_metric_rows, finished_counts
from boltrl.store.postgres_db import Conn, fetch_all
from boltrl.types import ROLLOUT_STATUSES, TERMINAL_STATUSES, Resources, Run, Worker, now

TERMINAL = sorted(TERMINAL_STATUSES)
ENDED = ("succeeded", "failed", "timed_out", "lost")


class Operations(pg.Database):
    """Counts, workers, runs and resources: reads, and writes that touch no rollout."""

    async def count_rollouts(self) -> dict[str, int]:
        counts = dict.fromkeys(ROLLOUT_STATUSES, 0)
        for row in await self._read("SELECT status, COUNT(*) AS n FROM rollouts GROUP BY status"):
            counts[row["status"]] = row["n"]
        return counts

    async def count_finished(self, since: float) -> dict[str, int]:
        counts = finished_counts()
        sql = "SELECT status, COUNT(*) AS n FROM rollouts WHERE ended_at >= %s AND status = ANY(%s)"
        for row in await self._read(sql + " GROUP BY status", (since, TERMINAL)):
            counts[row["status"]] = row["n"]
        return counts

    # ------------------------------------------------------------ workers and runs

    async def list_workers(self) -> list[Worker]:
        counts = ", ".join(f"COUNT(*) FILTER (WHERE status = '{s}') AS {s}" for s in ("running", *ENDED))
        rows = await self._read(
            "SELECT worker_id AS id, MIN(started_at) AS first_seen, MAX(heartbeat_at) AS last_heartbeat, "
            + counts
            + " FROM attempts GROUP BY worker_id ORDER BY last_heartbeat DESC, worker_id"
        )
        return [Worker.model_validate(row) for row in rows]

    async def add_run_metrics(self, run_id: str, rows: list[dict[str, Any]]) -> Run:
        clean = check_metric_rows(rows)
        values = [
            (run_id, r["step"], pg.dumps(r, f"metrics of run {run_id!r} step {r['step']}")) for r in clean
        ]
        t = now()
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO runs (id, steps, last_step, created_at, updated_at) VALUES (%s, 0, 0, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                (run_id, t, t),
            )
            await db.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (run_id,))
            await db.cursor().executemany(
                "INSERT INTO run_metrics (run_id, step, row) VALUES (%s, %s, %s)"
                " ON CONFLICT (run_id, step) DO UPDATE SET row = EXCLUDED.row",
                values,
            )
            await db.execute(
                "UPDATE runs SET updated_at = %s,"
                " steps = (SELECT COUNT(*) FROM run_metrics WHERE run_id = runs.id),"
                " last_step = (SELECT COALESCE(MAX(step), 0) FROM run_metrics WHERE run_id = runs.id)"
                " WHERE id = %s",
                (t, run_id),
            )
            runs = await self._runs(db, "WHERE runs.id = %s", (run_id,))
        if not runs:
            raise InvalidInputError(f"rows: run {run_id!r} needs at least one metric row")
        return runs[0]

    async def _runs(self, db: Conn, where: str = "", params: tuple[Any, ...] = ()) -> list[Run]:
        rows = await fetch_all(
            db,
            "SELECT runs.*, m.row AS last FROM runs JOIN run_metrics m ON m.run_id = runs.id"
            f" AND m.step = runs.last_step {where} ORDER BY runs.updated_at DESC, runs.id",
            params,
        )
        return [Run.model_validate({**row, "last": json.loads(row["last"])}) for row in rows]

    async def get_run_metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read("SELECT row FROM run_metrics WHERE run_id = %s ORDER BY step", (run_id,))
        if not rows:
            raise NotFoundError(f"run {run_id!r} not found: it has posted no metrics")
        return [json.loads(row["row"]) for row in rows]

    async def list_runs(self) -> list[Run]:
        async with self._tx() as db:
            return await self._runs(db)

    # ------------------------------------------------------------ resources

    async def get_resources(self, version: int | None = None) -> Resources | None:
        if version is None:
            rows = await self._read("SELECT * FROM resources ORDER BY version DESC LIMIT 1")
            return pg.resources(rows[0]) if rows else None
        rows = await self._read("SELECT * FROM resources WHERE version = %s", (version,))
        if not rows:
            raise NotFoundError(f"resources version {version} not found")
        return pg.resources(rows[0])

    async def put_resources(self, resources: dict[str, Any]) -> Resources:
        text = pg.dumps(resources, "resources")
        async with self._tx() as db:
            # Versions are MAX + 1: one publisher at a time; claims (plain reads) are not held up.
            await db.execute("LOCK TABLE resources IN SHARE ROW EXCLUSIVE MODE")
            rows = await fetch_all(
                db,
                "INSERT INTO resources (version, resources, created_at)"
                " SELECT COALESCE(MAX(version), 0) + 1, %s, %s FROM resources RETURNING *",
                (text, now()),
            )
        return pg.resources(rows[0])

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
