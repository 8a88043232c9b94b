"""The `Store` contract: every store kind in `conftest.STORE_KINDS` must pass every test here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from boltrl.errors import ConflictError, InvalidInputError, NotFoundError
from boltrl.store import Store
from boltrl.types import (
    ROLLOUT_STATUSES,
    Claim,
    Reward,
    RolloutCreate,
    SpanCreate,
    SpanEvent,
    reward_span,
)

pytestmark = pytest.mark.anyio


def rc(**kw: object) -> RolloutCreate:
    return RolloutCreate.model_validate({"input": {"q": "2+2"}, **kw})


async def claim(store: Store, worker_id: str = "w1") -> Claim:
    c = await store.claim(worker_id)
    assert c is not None, "expected a queued rollout to claim"
    return c


async def test_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)


# ---------------------------------------------------------------- enqueue, get, list


async def test_enqueue_generates_ids_and_keeps_fields(store: Store) -> None:
    inp = {"question": "x", "nested": [1, 2.5, None, {"a": True}]}
    a, b = await store.enqueue(
        [
            rc(input=inp, group_id="g1", mode="val", max_attempts=2, timeout_s=9.0, metadata={"k": [1]}),
            rc(),
        ]
    )
    assert a.id and b.id and a.id != b.id
    assert (a.status, a.attempt_count, a.resources_version, a.started_at, a.ended_at) == (
        "queued",
        0,
        None,
        None,
        None,
    )
    assert (a.input, a.group_id, a.mode, a.max_attempts, a.timeout_s, a.metadata) == (
        inp,
        "g1",
        "val",
        2,
        9.0,
        {"k": [1]},
    )
    assert a.created_at == pytest.approx(time.time(), abs=5)
    assert await store.get_rollout(a.id) == a
    assert (await store.get_rollout(b.id)).mode == "train"


async def test_enqueue_with_caller_id_is_idempotent(store: Store) -> None:
    [first] = await store.enqueue([rc(id="task-1.a", input=1)])
    assert first.id == "task-1.a"
    again = await store.enqueue([rc(id="task-1.a", input=2), rc(id="task-2")])
    assert again[0] == first  # the stored rollout, unchanged, not the new input
    await claim(store)
    [after_claim] = await store.enqueue([rc(id="task-1.a", input=3)])
    assert after_claim.status == "running" and after_claim.input == 1
    counts = await store.count_rollouts()
    assert counts["queued"] + counts["running"] == 2


async def test_enqueue_returns_what_a_read_returns_and_a_repeated_id_in_one_batch_is_one_rollout(
    store: Store,
) -> None:
    out = await store.enqueue(
        [
            rc(id="same", input={"n": 1}),
            rc(input=[1, "a"], metadata={"m": {"x": None}}),
            rc(id="same", input=2),
        ]
    )
    assert out[0] == out[2] and out[0].input == {"n": 1}
    for r in out:
        assert await store.get_rollout(r.id) == r
    assert sum((await store.count_rollouts()).values()) == 2


async def test_unknown_ids_raise_not_found(store: Store) -> None:
    [r] = await store.enqueue([rc()])
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get_rollout("nope"),
        lambda: store.cancel("nope"),
        lambda: store.heartbeat("nope"),
        lambda: store.finish_attempt("nope", "succeeded"),
        lambda: store.get_attempt("nope"),
        lambda: store.list_attempts("nope"),
        lambda: store.wait([r.id, "nope"], 0),
        lambda: store.add_spans([SpanCreate(rollout_id="nope", name="s")]),
        lambda: store.get_spans("nope"),
        lambda: store.get_resources(1),
    ]
    for call in calls:
        with pytest.raises(NotFoundError):
            await call()


async def test_list_filters(store: Store) -> None:
    await store.enqueue(
        [
            rc(id="a", group_id="g1"),
            rc(id="b", group_id="g1", mode="val"),
            rc(id="c", group_id="g2"),
            rc(id="d"),
        ]
    )
    await claim(store)  # a is running

    async def ids(**kw: object) -> list[str]:
        page = await store.list_rollouts(**kw)  # type: ignore[arg-type]
        return [r.id for r in page.rollouts]

    assert await ids() == ["a", "b", "c", "d"]
    assert await ids(status="queued") == ["b", "c", "d"]
    assert await ids(status="running") == ["a"]
    assert await ids(group_id="g1") == ["a", "b"]
    assert await ids(group_id="g1", status="queued") == ["b"]
    assert await ids(mode="val") == ["b"]
    assert await ids(mode="train", group_id="g2") == ["c"]
    assert await ids(group_id="none") == []
    assert await ids(status="succeeded") == []


@pytest.mark.parametrize("limit", [1, 7, 25, 100])
async def test_list_paginates_without_gaps_or_duplicates(store: Store, limit: int) -> None:
    made = await store.enqueue([rc(group_id="even" if i % 2 == 0 else "odd") for i in range(25)])
    for group, expected in ((None, made), ("even", made[::2])):
        seen, after, pages = [], None, 0
        while True:
            page = await store.list_rollouts(group_id=group, limit=limit, after=after)
            assert len(page.rollouts) <= limit
            seen += [r.id for r in page.rollouts]
            pages += 1
            if page.next_cursor is None:
                break
            assert len(page.rollouts) == limit
            after = page.next_cursor
        assert seen == [r.id for r in expected]
        assert pages == max(1, -(-len(expected) // limit))  # no empty last page


async def test_list_rejects_bad_queries(store: Store) -> None:
    await store.enqueue([rc()])
    for kw in ({"after": "not-a-cursor"}, {"status": "done"}, {"mode": "prod"}, {"limit": 0}):
        with pytest.raises(InvalidInputError):
            await store.list_rollouts(**kw)


async def test_count_rollouts_has_every_status(store: Store) -> None:
    assert await store.count_rollouts() == dict.fromkeys(ROLLOUT_STATUSES, 0)
    await store.enqueue([rc(max_attempts=1) for _ in range(5)])
    c1, c2, c3 = await claim(store), await claim(store), await claim(store)
    await store.finish_attempt(c1.attempt.id, "succeeded")
    await store.finish_attempt(c2.attempt.id, "failed")
    [queued] = (await store.list_rollouts(status="queued", limit=1)).rollouts
    await store.cancel(queued.id)
    assert c3.rollout.status == "running"
    assert await store.count_rollouts() == {
        "queued": 1,
        "running": 1,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 1,
    }


# ---------------------------------------------------------------- cancel


async def test_cancel_queued(store: Store) -> None:
    [r] = await store.enqueue([rc()])
    cancelled = await store.cancel(r.id)
    assert cancelled.status == "cancelled" and cancelled.ended_at is not None
    assert await store.get_rollout(r.id) == cancelled
    assert await store.claim("w1") is None


async def test_cancel_running_ends_its_attempt(store: Store) -> None:
    await store.enqueue([rc()])
    c = await claim(store)
    assert (await store.cancel(c.rollout.id)).status == "cancelled"
    attempt = await store.get_attempt(c.attempt.id)
    assert attempt.status != "running" and attempt.ended_at is not None
    with pytest.raises(ConflictError):
        await store.heartbeat(c.attempt.id)  # tells the worker to stop
    with pytest.raises(ConflictError):
        await store.finish_attempt(c.attempt.id, "succeeded")
    assert (await store.get_rollout(c.rollout.id)).status == "cancelled"


async def test_cancel_terminal_is_a_conflict(store: Store) -> None:
    [a, _] = await store.enqueue([rc(), rc()])
    await store.cancel(a.id)
    with pytest.raises(ConflictError):
        await store.cancel(a.id)
    c = await claim(store)
    await store.finish_attempt(c.attempt.id, "succeeded")
    with pytest.raises(ConflictError):
        await store.cancel(c.rollout.id)


# ---------------------------------------------------------------- claim


async def test_claim_is_fifo_and_opens_an_attempt(store: Store) -> None:
    made = await store.enqueue([rc(id=f"r{i}") for i in range(3)])
    claims = [await claim(store, f"w{i}") for i in range(3)]
    assert [c.rollout.id for c in claims] == [r.id for r in made]
    c = claims[0]
    assert (c.rollout.status, c.rollout.attempt_count) == ("running", 1)
    assert c.rollout.started_at is not None
    assert (c.attempt.rollout_id, c.attempt.n, c.attempt.worker_id, c.attempt.status) == (
        "r0",
        1,
        "w0",
        "running",
    )
    assert c.attempt.heartbeat_at == c.attempt.started_at
    assert await store.get_attempt(c.attempt.id) == c.attempt
    assert await store.list_attempts("r0") == [c.attempt]
    assert await store.get_rollout("r0") == c.rollout
    assert await store.claim("w9") is None


async def test_claim_empty_queue_returns_none(store: Store) -> None:
    assert await store.claim("w1") is None


async def test_claim_returns_latest_resources(store: Store) -> None:
    await store.enqueue([rc(), rc()])
    first = await claim(store)
    assert first.resources is None and first.rollout.resources_version is None
    await store.put_resources({"llm": {"base_url": "http://a"}})
    v2 = await store.put_resources({"llm": {"base_url": "http://b"}, "prompt": "hi"})
    second = await claim(store)
    assert second.resources == v2
    assert second.rollout.resources_version == 2
    assert (await store.get_rollout(second.rollout.id)).resources_version == 2


async def test_retry_is_claimed_first_as_attempt_two(store: Store) -> None:
    await store.enqueue([rc(id="old"), rc(id="new")])
    c1 = await claim(store)
    await store.finish_attempt(c1.attempt.id, "failed", "boom")
    c2 = await claim(store)  # a requeued rollout keeps its place at the head of the queue
    assert (c2.rollout.id, c2.attempt.n, c2.rollout.attempt_count) == ("old", 2, 2)
    assert c2.rollout.started_at == c1.rollout.started_at
    assert [a.n for a in await store.list_attempts("old")] == [1, 2]


async def test_concurrent_claimers_never_share_a_rollout(store: Store) -> None:
    made = await store.enqueue([rc() for _ in range(200)])

    async def claimer(worker_id: str) -> list[str]:
        got = []
        while (c := await store.claim(worker_id)) is not None:
            got.append(c.rollout.id)
            await asyncio.sleep(0)
        return got

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(20)))
    claimed = [rid for got in results for rid in got]
    assert sorted(claimed) == sorted(r.id for r in made)  # each exactly once
    assert (await store.count_rollouts())["running"] == 200


# ---------------------------------------------------------------- heartbeat and finish


async def test_heartbeat_updates_heartbeat_at(store: Store) -> None:
    await store.enqueue([rc()])
    c = await claim(store)
    await asyncio.sleep(0.01)
    beat = await store.heartbeat(c.attempt.id)
    assert beat.heartbeat_at > c.attempt.heartbeat_at and beat.status == "running"
    assert (await store.get_attempt(c.attempt.id)).heartbeat_at == beat.heartbeat_at
    await store.finish_attempt(c.attempt.id, "succeeded")
    with pytest.raises(ConflictError):
        await store.heartbeat(c.attempt.id)


async def test_finish_succeeded(store: Store) -> None:
    await store.enqueue([rc()])
    c = await claim(store)
    a = await store.finish_attempt(c.attempt.id, "succeeded")
    assert (a.status, a.error) == ("succeeded", None) and a.ended_at is not None
    r = await store.get_rollout(c.rollout.id)
    assert (r.status, r.attempt_count) == ("succeeded", 1) and r.ended_at is not None
    with pytest.raises(ConflictError):
        await store.finish_attempt(c.attempt.id, "succeeded")
    with pytest.raises(ConflictError):
        await store.finish_attempt(c.attempt.id, "failed")


@pytest.mark.parametrize("status", ["failed", "timed_out"])
async def test_finish_retries_until_max_attempts(store: Store, status: str) -> None:
    [r] = await store.enqueue([rc(max_attempts=3)])
    for n in (1, 2, 3):
        c = await claim(store)
        assert (c.rollout.id, c.attempt.n) == (r.id, n)
        a = await store.finish_attempt(c.attempt.id, status, error=f"try {n}")
        assert (a.status, a.error) == (status, f"try {n}")
        after = await store.get_rollout(r.id)
        assert after.status == ("queued" if n < 3 else "failed")
        assert (after.ended_at is None) == (n < 3)
    assert await store.claim("w1") is None
    attempts = await store.list_attempts(r.id)
    assert [(a.n, a.status) for a in attempts] == [(1, status), (2, status), (3, status)]


async def test_finish_rejects_bad_status(store: Store) -> None:
    await store.enqueue([rc()])
    c = await claim(store)
    for bad in ("lost", "running", "ok", ""):
        with pytest.raises(InvalidInputError):
            await store.finish_attempt(c.attempt.id, bad)
    assert (await store.get_attempt(c.attempt.id)).status == "running"


# ---------------------------------------------------------------- reap


async def test_reap_requeues_then_fails_on_missed_heartbeats(store: Store) -> None:
    [r] = await store.enqueue([rc(max_attempts=2)])
    c1 = await claim(store)
    assert await store.reap(heartbeat_timeout_s=10) == []
    await asyncio.sleep(0.1)
    [lost] = await store.reap(heartbeat_timeout_s=0.05)
    assert (lost.id, lost.status) == (c1.attempt.id, "lost") and lost.ended_at is not None
    assert lost.error and "heartbeat" in lost.error
    assert (await store.get_rollout(r.id)).status == "queued"
    with pytest.raises(ConflictError):
        await store.heartbeat(c1.attempt.id)
    c2 = await claim(store)
    await asyncio.sleep(0.1)
    assert [a.id for a in await store.reap(heartbeat_timeout_s=0.05)] == [c2.attempt.id]
    assert (await store.get_rollout(r.id)).status == "failed"
    assert await store.reap(heartbeat_timeout_s=0.05) == []


async def test_reap_spares_attempts_that_heartbeat(store: Store) -> None:
    await store.enqueue([rc()])
    c = await claim(store)
    for _ in range(3):  # 0.24 s in all: past the timeout, had it not heartbeat
        await asyncio.sleep(0.08)
        await store.heartbeat(c.attempt.id)
        assert await store.reap(heartbeat_timeout_s=0.2) == []
    assert (await store.get_attempt(c.attempt.id)).status == "running"


async def test_reap_times_out_rollouts_past_their_timeout(store: Store) -> None:
    [r] = await store.enqueue([rc(timeout_s=0.05, max_attempts=1)])
    c = await claim(store)
    await asyncio.sleep(0.2)
    await store.heartbeat(c.attempt.id)  # alive, but over its time
    [a] = await store.reap(heartbeat_timeout_s=0.1)
    assert (a.id, a.status) == (c.attempt.id, "timed_out")
    assert (await store.get_rollout(r.id)).status == "failed"


# ---------------------------------------------------------------- wait


async def test_wait_returns_at_once_when_all_terminal(store: Store) -> None:
    [a, b] = await store.enqueue([rc(), rc()])
    c = await claim(store)
    await store.finish_attempt(c.attempt.id, "succeeded")
    await store.cancel(b.id)
    t0 = time.monotonic()
    done = await store.wait([b.id, a.id], timeout_s=10)
    assert time.monotonic() - t0 < 1
    assert [(r.id, r.status) for r in done] == [(b.id, "cancelled"), (a.id, "succeeded")]


async def test_wait_returns_partial_at_timeout(store: Store) -> None:
    [a, b] = await store.enqueue([rc(), rc()])
    await store.cancel(a.id)
    assert [r.id for r in await store.wait([a.id, b.id], timeout_s=0)] == [a.id]
    t0 = time.monotonic()
    done = await store.wait([a.id, b.id], timeout_s=0.3)
    assert 0.25 <= time.monotonic() - t0 < 2
    assert [r.id for r in done] == [a.id]


async def test_wait_wakes_when_another_task_finishes(store: Store) -> None:
    [a, b] = await store.enqueue([rc(), rc()])
    c = await claim(store)

    async def finish_later() -> None:
        await asyncio.sleep(0.05)
        await store.finish_attempt(c.attempt.id, "succeeded")
        await asyncio.sleep(0.05)
        await store.cancel(b.id)

    t0 = time.monotonic()
    done, _ = await asyncio.gather(store.wait([a.id, b.id], timeout_s=10), finish_later())
    assert time.monotonic() - t0 < 2
    assert {(r.id, r.status) for r in done} == {(a.id, "succeeded"), (b.id, "cancelled")}


# ---------------------------------------------------------------- spans


async def test_spans_get_seq_per_rollout_in_order_across_batches(store: Store) -> None:
    [a, b] = await store.enqueue([rc(), rc()])
    first = await store.add_spans(
        [
            SpanCreate(rollout_id=a.id, name="a0"),
            SpanCreate(rollout_id=b.id, name="b0"),
            SpanCreate(rollout_id=a.id, name="a1"),
        ]
    )
    assert [(s.rollout_id, s.seq) for s in first] == [(a.id, 0), (b.id, 0), (a.id, 1)]
    second = await store.add_spans([SpanCreate(rollout_id=a.id, name=f"a{i}") for i in (2, 3)])
    assert [s.seq for s in second] == [2, 3]
    spans = await store.get_spans(a.id)
    assert [(s.seq, s.name) for s in spans] == [(0, "a0"), (1, "a1"), (2, "a2"), (3, "a3")]
    assert [s.name for s in await store.get_spans(b.id)] == ["b0"]
    assert spans[1:2] + spans[3:] == [first[2], second[1]]


async def test_get_spans_filters_by_attempt(store: Store) -> None:
    [r] = await store.enqueue([rc()])
    c1 = await claim(store)
    await store.add_spans([SpanCreate(rollout_id=r.id, attempt_id=c1.attempt.id, name="one")])
    await store.finish_attempt(c1.attempt.id, "failed")
    c2 = await claim(store)
    await store.add_spans(
        [
            SpanCreate(rollout_id=r.id, attempt_id=c2.attempt.id, name="two"),
            SpanCreate(rollout_id=r.id, name="no-attempt"),
        ]
    )
    assert [s.name for s in await store.get_spans(r.id)] == ["one", "two", "no-attempt"]
    assert [s.name for s in await store.get_spans(r.id, attempt_id=c2.attempt.id)] == ["two"]
    assert [s.seq for s in await store.get_spans(r.id, attempt_id=c1.attempt.id)] == [0]


async def test_add_spans_is_all_or_nothing(store: Store) -> None:
    [a, b] = await store.enqueue([rc(), rc()])
    c = await claim(store)  # attempt of a
    ok = SpanCreate(rollout_id=b.id, name="ok")
    bad_batches: list[tuple[type[Exception], SpanCreate]] = [
        (NotFoundError, SpanCreate(rollout_id="nope", name="x")),
        (NotFoundError, SpanCreate(rollout_id=b.id, attempt_id="nope", name="x")),
        (InvalidInputError, SpanCreate(rollout_id=b.id, attempt_id=c.attempt.id, name="x")),  # a's attempt
    ]
    for error, bad in bad_batches:
        with pytest.raises(error):
            await store.add_spans([ok, bad])
    assert await store.get_spans(a.id) == [] and await store.get_spans(b.id) == []
    [s] = await store.add_spans([SpanCreate(rollout_id=b.id, name="ok")])
    assert s.seq == 0  # no seq was used up by the failed batches
    assert await store.add_spans([]) == []


async def test_span_fields_round_trip(store: Store) -> None:
    [r] = await store.enqueue([rc()])
    c = await claim(store)
    span = SpanCreate(
        rollout_id=r.id,
        attempt_id=c.attempt.id,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        parent_id="00f067aa0ba902b7",
        name="boltrl.model_call",
        start=1700000000.25,
        end=1700000001.5,
        attributes={"prompt_ids": [1, 2, 3], "logprobs": [-0.5, -1.25], "nested": {"a": None, "b": "ü"}},
        events=[SpanEvent(name="token", time=1700000000.5, attributes={"i": 1})],
        status="error",
    )
    [added] = await store.add_spans([span])
    assert added.model_dump() == {**span.model_dump(), "seq": 0}
    [read] = await store.get_spans(r.id)
    assert read == added
    [reward] = await store.add_spans([reward_span(r.id, c.attempt.id, 0.75, name="exact")])
    [_, read_reward] = await store.get_spans(r.id)
    assert Reward.from_span(read_reward) == Reward(value=0.75, name="exact") == Reward.from_span(reward)


async def test_spans_may_arrive_after_the_rollout_ends(store: Store) -> None:
    [r] = await store.enqueue([rc()])
    c = await claim(store)
    await store.finish_attempt(c.attempt.id, "succeeded")
    [s] = await store.add_spans([SpanCreate(rollout_id=r.id, attempt_id=c.attempt.id, name="late")])
    assert s.seq == 0


# ---------------------------------------------------------------- resources


async def test_resources_are_versioned(store: Store) -> None:
    assert await store.get_resources() is None
    v1 = await store.put_resources({"llm": {"base_url": "http://x/v1", "model": "m"}, "prompt": "p"})
    v2 = await store.put_resources({"prompt": "q"})
    assert (v1.version, v2.version) == (1, 2)
    assert v1.resources == {"llm": {"base_url": "http://x/v1", "model": "m"}, "prompt": "p"}
    assert await store.get_resources() == v2
    assert await store.get_resources(1) == v1
    assert await store.get_resources(2) == v2
    for missing in (0, 3, -1):
        with pytest.raises(NotFoundError):
            await store.get_resources(missing)


@pytest.mark.anyio
async def test_span_with_a_known_span_id_is_stored_once(store: Store) -> None:
    await store.enqueue([RolloutCreate(id="dup", input=1)])
    first = await store.add_spans([SpanCreate(rollout_id="dup", span_id="s1", name="a")])
    again = await store.add_spans(
        [
            SpanCreate(rollout_id="dup", span_id="s2", name="b"),
            SpanCreate(rollout_id="dup", span_id="s1", name="a-retry"),
            SpanCreate(rollout_id="dup", span_id="s2", name="b-again"),
        ]
    )
    assert [(s.span_id, s.seq, s.name) for s in again] == [("s2", 1, "b"), ("s1", 0, "a"), ("s2", 1, "b")]
    assert first[0].seq == 0
    stored = await store.get_spans("dup")
    assert [(s.span_id, s.seq) for s in stored] == [("s1", 0), ("s2", 1)]
