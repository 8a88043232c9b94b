"""The `Store` contract for operations (every kind in `conftest.STORE_KINDS`): newest-first listing,
throughput, workers, run metrics, and importing recorded rollouts."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

import pytest

from boltrl.errors import InvalidInputError, NotFoundError
from boltrl.store import SQLiteStore, Store
from boltrl.types import Attempt, Rollout, RolloutCreate, Span, SpanCreate, reward_span

pytestmark = pytest.mark.anyio


def rc(**kw: object) -> RolloutCreate:
    return RolloutCreate.model_validate({"input": {"q": "2+2"}, **kw})


async def finished(store: Store, worker: str, status: str = "succeeded") -> Attempt:
    claim = await store.claim(worker)
    assert claim is not None
    return await store.finish_attempt(claim.attempt.id, status)


# ---------------------------------------------------------------- newest first, throughput


@pytest.mark.parametrize("limit", [1, 3, 10])
async def test_list_newest_first_paginates(store: Store, limit: int) -> None:
    made = await store.enqueue([rc(group_id="even" if i % 2 == 0 else "odd") for i in range(7)])
    for group, expected in ((None, made[::-1]), ("even", made[::2][::-1])):
        seen, after = [], None
        while True:
            page = await store.list_rollouts(group_id=group, limit=limit, after=after, order="desc")
            seen += [r.id for r in page.rollouts]
            if page.next_cursor is None:
                break
            after = page.next_cursor
        assert seen == [r.id for r in expected]
    with pytest.raises(InvalidInputError):
        await store.list_rollouts(order="sideways")


async def test_count_finished_since(store: Store) -> None:
    await store.enqueue([rc(max_attempts=1) for _ in range(4)])
    before = time.time() - 1
    assert await store.count_finished(before) == {"cancelled": 0, "failed": 0, "succeeded": 0}
    await finished(store, "w1")
    await finished(store, "w1", "failed")
    [queued, *_] = (await store.list_rollouts(status="queued")).rollouts
    await store.cancel(queued.id)
    assert await store.count_finished(before) == {"cancelled": 1, "failed": 1, "succeeded": 1}
    assert await store.count_finished(time.time() + 60) == {"cancelled": 0, "failed": 0, "succeeded": 0}


# ---------------------------------------------------------------- workers


async def test_list_workers_from_attempts(store: Store) -> None:
    assert await store.list_workers() == []
    await store.enqueue([rc(max_attempts=1) for _ in range(5)])
    await finished(store, "w1")
    await finished(store, "w1", "failed")
    await finished(store, "w2", "timed_out")
    running = await store.claim("w2")
    assert running is not None
    time.sleep(0.01)
    await store.heartbeat(running.attempt.id)
    [w2, w1] = await store.list_workers()  # w2 was heard from last
    assert (w1.id, w1.running, w1.succeeded, w1.failed, w1.timed_out, w1.lost) == ("w1", 0, 1, 1, 0, 0)
    assert (w2.id, w2.running, w2.succeeded, w2.timed_out) == ("w2", 1, 0, 1)
    assert w2.last_heartbeat == (await store.get_attempt(running.attempt.id)).heartbeat_at
    assert w1.first_seen <= w1.last_heartbeat


# ---------------------------------------------------------------- run metrics


async def test_run_metrics_round_trip_and_replace(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.get_run_metrics("run-1")
    run = await store.add_run_metrics(
        "run-1",
        [{"step": 1, "rollout/reward_mean": 0.5, "note": "x"}, {"step": 0, "rollout/reward_mean": 0.1}],
    )
    assert (run.id, run.steps, run.last_step, run.last["rollout/reward_mean"]) == ("run-1", 2, 1, 0.5)
    again = await store.add_run_metrics("run-1", [{"step": 1, "rollout/reward_mean": 0.7, "train/loss": 2.0}])
    assert (again.steps, again.last) == (2, {"step": 1, "rollout/reward_mean": 0.7, "train/loss": 2.0})
    assert again.created_at == run.created_at and again.updated_at >= run.updated_at
    assert await store.get_run_metrics("run-1") == [
        {"step": 0, "rollout/reward_mean": 0.1},
        {"step": 1, "rollout/reward_mean": 0.7, "train/loss": 2.0},
    ]
    time.sleep(0.01)
    await store.add_run_metrics("run-2", [{"step": 0, "val/reward_mean": 1}])
    assert [r.id for r in await store.list_runs()] == ["run-2", "run-1"]  # most recently updated first


async def test_run_metrics_are_checked(store: Store) -> None:
    for rows in ([{"loss": 1.0}], [{"step": -1}], [{"step": "3"}], [{"step": True}], [{"step": 1.5}]):
        with pytest.raises(InvalidInputError, match="step"):
            await store.add_run_metrics("bad", rows)
    assert await store.list_runs() == []
    run = await store.add_run_metrics("run", [{"step": 2.0, "train/kl": math.nan, "x": math.inf}])
    assert run.last == {"step": 2, "train/kl": None, "x": None}  # JSON has no NaN


# ---------------------------------------------------------------- import


async def recorded(store: Store) -> tuple[Rollout, list[Attempt], list[Span]]:
    """A finished rollout with a failed then a succeeded attempt, and spans of both."""
    [r] = await store.enqueue([rc(id="rec-1", group_id="g", mode="val", metadata={"k": 1})])
    first = await store.claim("w1")
    assert first is not None
    await store.add_spans([SpanCreate(rollout_id=r.id, attempt_id=first.attempt.id, name="try")])
    await store.finish_attempt(first.attempt.id, "failed", "boom")
    second = await store.claim("w2")
    assert second is not None
    await store.add_spans(
        [
            SpanCreate(rollout_id=r.id, attempt_id=second.attempt.id, name="boltrl.model_call"),
            reward_span(r.id, second.attempt.id, 1.0),
        ]
    )
    await store.finish_attempt(second.attempt.id, "succeeded")
    return await store.get_rollout(r.id), await store.list_attempts(r.id), await store.get_spans(r.id)


async def test_import_rollout_writes_it_as_recorded(store: Store, tmp_path: Path) -> None:
    source = SQLiteStore(str(tmp_path / "source.db"))
    try:
        rollout, attempts, spans = await recorded(source)
    finally:
        await source.close()
    await store.enqueue([rc(id="already-here")])
    stored = await store.import_rollout(rollout, attempts, spans)
    assert stored == rollout and stored.status == "succeeded" and stored.attempt_count == 2
    assert await store.get_rollout("rec-1") == rollout
    assert await store.list_attempts("rec-1") == attempts
    assert await store.get_spans("rec-1") == spans  # same ids, same seq
    assert await store.count_rollouts() == {
        "queued": 1,
        "running": 0,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert (await store.claim("w9")).rollout.id == "already-here"  # type: ignore[union-attr]

    # Again: nothing changes. With one more span: only that one is added, after the others.
    assert await store.import_rollout(rollout, attempts, spans) == rollout
    extra = SpanCreate(rollout_id="rec-1", attempt_id=attempts[1].id, name="late")
    await store.import_rollout(rollout, attempts, [*spans, extra])
    after = await store.get_spans("rec-1")
    assert after[:3] == spans and [(s.seq, s.name) for s in after[3:]] == [(3, "late")]
    assert (await store.get_rollout("rec-1")).status == "succeeded"


async def test_import_rollout_checks_before_writing(store: Store) -> None:
    t = time.time()
    rollout = Rollout(id="imp", input=1, status="failed", attempt_count=1, created_at=t, ended_at=t)
    attempt = Attempt(
        id="imp-a1", rollout_id="imp", n=1, worker_id="w", status="failed", started_at=t, heartbeat_at=t
    )
    stranger = attempt.model_copy(update={"rollout_id": "other"})
    bad_span = SpanCreate(rollout_id="imp", attempt_id="not-an-attempt", name="s")
    for attempts, spans in (
        ([stranger], []),
        ([attempt], [bad_span]),
        ([attempt], [SpanCreate(rollout_id="x", name="s")]),
    ):
        with pytest.raises(InvalidInputError):
            await store.import_rollout(rollout, attempts, spans)
        with pytest.raises(NotFoundError):
            await store.get_rollout("imp")  # nothing written
    stored = await store.import_rollout(
        rollout, [attempt], [SpanCreate(rollout_id="imp", attempt_id="imp-a1", name="s")]
    )
    assert stored.status == "failed" and (await store.wait(["imp"], 0)) == [stored]
    [w] = await store.list_workers()
    assert (w.id, w.failed) == ("w", 1)


async def test_sqlite_schema_1_file_is_migrated(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    store = SQLiteStore(path)
    await store.enqueue([rc(id="kept")])
    await store.close()
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE run_metrics; DROP TABLE runs; DROP INDEX rollouts_ended; PRAGMA user_version = 1;"
    )
    db.close()
    store = SQLiteStore(path)
    try:
        assert (await store.get_rollout("kept")).id == "kept"
        assert (await store.add_run_metrics("r", [{"step": 0, "a": 1}])).steps == 1
    finally:
        await store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
