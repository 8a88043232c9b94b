"""`MemoryStore`: the reference `Store`, in process memory (tests, notebooks, throwaway runs).

Nothing survives the process; use `SQLiteStore` for anything you want to keep. One asyncio event
loop owns it; every method runs to completion without awaiting in between, which makes claims atomic.
"""

from __future__ import annotations

import asyncio
import copy
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
    worker_sort_key,
)
from boltrl.types import (
    ROLLOUT_STATUSES,
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


class MemoryStore:
    def __init__(self) -> None:
        self._rollouts: dict[str, Rollout] = {}  # insertion order is queue order
        self._order: dict[str, int] = {}
        self._attempts: dict[str, Attempt] = {}
        self._attempts_by_rollout: dict[str, list[str]] = {}
        self._spans: dict[str, list[Span]] = {}
        self._span_ids: dict[str, dict[str, int]] = {}  # rollout -> span_id -> seq
        self._resources: list[Resources] = []
        self._runs: dict[str, dict[int, dict[str, Any]]] = {}  # run -> step -> row
        self._run_times: dict[str, tuple[float, float]] = {}  # run -> (created_at, updated_at)
        self._changed: asyncio.Condition | None = None
        self._changed_loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ rollouts

    async def enqueue(self, rollouts: list[RolloutCreate]) -> list[Rollout]:
        out: list[Rollout] = []
        for rc in rollouts:
            rid = rc.id or new_id("ro")
            if rid in self._rollouts:
                out.append(self._rollouts[rid].model_copy(deep=True))
                continue
            r = Rollout(
                id=rid,
                input=copy.deepcopy(rc.input),
                group_id=rc.group_id,
                mode=rc.mode,
                max_attempts=rc.max_attempts,
                timeout_s=rc.timeout_s,
                created_at=now(),
                metadata=copy.deepcopy(rc.metadata),
            )
            self._order[rid] = len(self._order)
            self._rollouts[rid] = r
            self._attempts_by_rollout[rid] = []
            self._spans[rid] = []
            out.append(r.model_copy(deep=True))
        return out

    def _rollout(self, rollout_id: str) -> Rollout:
        try:
            return self._rollouts[rollout_id]
        except KeyError:
            raise NotFoundError(f"rollout {rollout_id!r} not found") from None

    def _attempt(self, attempt_id: str) -> Attempt:
        try:
            return self._attempts[attempt_id]
        except KeyError:
            raise NotFoundError(f"attempt {attempt_id!r} not found") from None

    async def get_rollout(self, rollout_id: str) -> Rollout:
        return self._rollout(rollout_id).model_copy(deep=True)

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
        start = parse_cursor(after, order)
        items: list[Rollout] = []
        last = -1
        rollouts = self._rollouts.items() if order == "asc" else reversed(self._rollouts.items())
        for rid, r in rollouts:
            pos = self._order[rid]
            if (pos <= start) if order == "asc" else (pos >= start):
                continue
            if (status and r.status != status) or (group_id and r.group_id != group_id):
                continue
            if mode and r.mode != mode:
                continue
            if len(items) == limit:
                return RolloutPage(rollouts=items, next_cursor=str(last))
            items.append(r.model_copy(deep=True))
            last = pos
        return RolloutPage(rollouts=items, next_cursor=None)

    async def cancel(self, rollout_id: str) -> Rollout:
        r = self._rollout(rollout_id)
        check_transition(r.status, "cancelled")
        t = now()
        for aid in self._attempts_by_rollout[rollout_id]:
            a = self._attempts[aid]
            if a.status == "running":
                a.status, a.ended_at, a.error = "failed", t, "rollout cancelled"
        r.status, r.ended_at = "cancelled", t
        await self._notify()
        return r.model_copy(deep=True)

    async def count_rollouts(self) -> dict[str, int]:
        counts = dict.fromkeys(ROLLOUT_STATUSES, 0)
        for r in self._rollouts.values():
            counts[r.status] += 1
        return counts

    async def count_finished(self, since: float) -> dict[str, int]:
        counts = finished_counts()
        for r in self._rollouts.values():
            if r.is_terminal and r.ended_at is not None and r.ended_at >= since:
                counts[r.status] += 1
        return counts

    async def import_rollout(
        self, rollout: Rollout, attempts: list[Attempt], spans: list[SpanCreate]
    ) -> Rollout:
        stored = self._attempts_by_rollout.get(rollout.id)
        check_import(rollout, attempts, spans, None if stored is None else set(stored))
        if rollout.id not in self._rollouts:
            for a in attempts:
                if a.id in self._attempts:
                    raise InvalidInputError(
                        f"attempt {a.id!r} exists already, in rollout {self._attempts[a.id].rollout_id!r}"
                    )
            self._order[rollout.id] = len(self._order)
            self._rollouts[rollout.id] = Rollout.model_validate(rollout.model_dump())
            self._attempts_by_rollout[rollout.id] = []
            self._spans[rollout.id] = []
            for a in sorted(attempts, key=lambda a: a.n):
                self._attempts[a.id] = a.model_copy()
                self._attempts_by_rollout[rollout.id].append(a.id)
        if spans:
            await self.add_spans([creatable(s) for s in spans])
        await self._notify()
        return await self.get_rollout(rollout.id)

    # ------------------------------------------------------------ attempts

    async def claim(self, worker_id: str) -> Claim | None:
        for r in self._rollouts.values():
            if r.status != "queued":
                continue
            check_transition(r.status, "running")
            t = now()
            r.attempt_count += 1
            attempt = Attempt(
                id=new_id("at"),
                rollout_id=r.id,
                n=r.attempt_count,
                worker_id=worker_id,
                started_at=t,
                heartbeat_at=t,
            )
            resources = self._resources[-1] if self._resources else None
            r.status = "running"
            r.started_at = r.started_at or t
            r.resources_version = resources.version if resources else None
            self._attempts[attempt.id] = attempt
            self._attempts_by_rollout[r.id].append(attempt.id)
            return Claim(
                rollout=r.model_copy(deep=True),
                attempt=attempt.model_copy(),
                resources=resources.model_copy(deep=True) if resources else None,
            )
        return None

    async def heartbeat(self, attempt_id: str) -> Attempt:
        a = self._attempt(attempt_id)
        if a.status != "running":
            raise ConflictError(f"attempt {attempt_id!r} is {a.status}, not running: stop working on it")
        a.heartbeat_at = now()
        return a.model_copy()

    async def finish_attempt(self, attempt_id: str, status: str, error: str | None = None) -> Attempt:
        check_finish_status(status)
        a = self._attempt(attempt_id)
        if a.status != "running":
            raise ConflictError(f"attempt {attempt_id!r} is already {a.status}")
        self._end_attempt(a, status, error)
        await self._notify()
        return a.model_copy()

    def _end_attempt(self, a: Attempt, status: str, error: str | None) -> None:
        r = self._rollouts[a.rollout_id]
        a.status, a.ended_at, a.error = status, now(), error  # type: ignore[assignment]
        new_status = attempt_outcome(status, r.attempt_count, r.max_attempts)
        if r.status != "running":  # cancelled meanwhile: the attempt ends, the rollout stays
            return
        check_transition(r.status, new_status)
        r.status = new_status  # type: ignore[assignment]
        if new_status != "queued":
            r.ended_at = a.ended_at

    async def get_attempt(self, attempt_id: str) -> Attempt:
        return self._attempt(attempt_id).model_copy()

    async def list_attempts(self, rollout_id: str) -> list[Attempt]:
        self._rollout(rollout_id)
        return [self._attempts[aid].model_copy() for aid in self._attempts_by_rollout[rollout_id]]

    async def reap(self, heartbeat_timeout_s: float) -> list[Attempt]:
        t = now()
        reaped: list[Attempt] = []
        for a in list(self._attempts.values()):
            if a.status != "running":
                continue
            r = self._rollouts[a.rollout_id]
            if t - a.started_at > r.timeout_s + heartbeat_timeout_s:
                self._end_attempt(a, "timed_out", "rollout timeout exceeded")
            elif t - a.heartbeat_at > heartbeat_timeout_s:
                self._end_attempt(a, "lost", f"no heartbeat for {heartbeat_timeout_s:g} s")
            else:
                continue
            reaped.append(a.model_copy())
        if reaped:
            await self._notify()
        return reaped

    async def wait(self, rollout_ids: list[str], timeout_s: float) -> list[Rollout]:
        for rid in rollout_ids:
            self._rollout(rid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        def done() -> list[Rollout]:
            return [self._rollouts[rid] for rid in rollout_ids if self._rollouts[rid].is_terminal]

        changed = self._condition()
        async with changed:
            while len(done()) < len(rollout_ids):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    break
        return [r.model_copy(deep=True) for r in done()]

    def _condition(self) -> asyncio.Condition:
        # Made inside the running loop, and again if a later loop uses the store (asyncio.run twice):
        # a Condition is bound to the first loop that waits on it.
        loop = asyncio.get_running_loop()
        if self._changed is None or self._changed_loop is not loop:
            self._changed, self._changed_loop = asyncio.Condition(), loop
        return self._changed

    async def _notify(self) -> None:
        await notify(self._changed, self._changed_loop)

    # ------------------------------------------------------------ spans

    async def add_spans(self, spans: list[SpanCreate]) -> list[Span]:
        for s in spans:  # validate all before writing any: no partial batches
            self._rollout(s.rollout_id)
            if s.attempt_id is not None:
                a = self._attempt(s.attempt_id)
                if a.rollout_id != s.rollout_id:
                    raise InvalidInputError(
                        f"attempt {s.attempt_id!r} belongs to rollout {a.rollout_id!r}, not {s.rollout_id!r}"
                    )
        out: list[Span] = []
        for s in spans:
            ids = self._span_ids.setdefault(s.rollout_id, {})
            if s.span_id not in ids:  # a retried span keeps its first copy and seq
                stored = self._spans[s.rollout_id]
                ids[s.span_id] = len(stored)
                stored.append(Span(seq=len(stored), **s.model_dump()))
            out.append(self._spans[s.rollout_id][ids[s.span_id]].model_copy(deep=True))
        return out

    async def get_spans(self, rollout_id: str, *, attempt_id: str | None = None) -> list[Span]:
        self._rollout(rollout_id)
        return [
            s.model_copy(deep=True)
            for s in self._spans[rollout_id]
            if attempt_id is None or s.attempt_id == attempt_id
        ]

    # ------------------------------------------------------------ workers and runs

    async def list_workers(self) -> list[Worker]:
        workers: dict[str, Worker] = {}
        for a in self._attempts.values():
            w = workers.get(a.worker_id)
            if w is None:
                w = workers[a.worker_id] = Worker(id=a.worker_id, first_seen=a.started_at, last_heartbeat=0.0)
            setattr(w, a.status, getattr(w, a.status) + 1)
            w.first_seen = min(w.first_seen, a.started_at)
            w.last_heartbeat = max(w.last_heartbeat, a.heartbeat_at)
        return sorted(workers.values(), key=worker_sort_key)

    async def add_run_metrics(self, run_id: str, rows: list[dict[str, Any]]) -> Run:
        clean = check_metric_rows(rows)
        t = now()
        stored = self._runs.setdefault(run_id, {})
        for row in clean:
            stored[row["step"]] = copy.deepcopy(row)
        created = self._run_times.get(run_id, (t, t))[0]
        self._run_times[run_id] = (created, t)
        return self._run(run_id)

    def _run(self, run_id: str) -> Run:
        rows = self._runs[run_id]
        last = max(rows)
        created, updated = self._run_times[run_id]
        return Run(
            id=run_id,
            steps=len(rows),
            last_step=last,
            last=copy.deepcopy(rows[last]),
            created_at=created,
            updated_at=updated,
        )

    async def get_run_metrics(self, run_id: str) -> list[dict[str, Any]]:
        if run_id not in self._runs:
            raise NotFoundError(f"run {run_id!r} not found: it has posted no metrics")
        rows = self._runs[run_id]
        return [copy.deepcopy(rows[step]) for step in sorted(rows)]

    async def list_runs(self) -> list[Run]:
        runs = [self._run(run_id) for run_id in self._runs]
        return sorted(runs, key=lambda r: (-r.updated_at, r.id))

    # ------------------------------------------------------------ resources

    async def get_resources(self, version: int | None = None) -> Resources | None:
        if version is None:
            return self._resources[-1].model_copy(deep=True) if self._resources else None
        if not 1 <= version <= len(self._resources):
            raise NotFoundError(f"resources version {version} not found")
        return self._resources[version - 1].model_copy(deep=True)

    async def put_resources(self, resources: dict[str, Any]) -> Resources:
        version = len(self._resources) + 1
        res = Resources(version=version, resources=copy.deepcopy(resources), created_at=now())
        self._resources.append(res)
        return res.model_copy(deep=True)

    async def close(self) -> None:
        return None
