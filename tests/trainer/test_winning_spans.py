"""Training and validation read only the succeeded attempt's spans: a lost attempt's runner may write
calls and rewards after its rollout was requeued, and they must not count."""

from __future__ import annotations

import asyncio

import pytest

from boltrl.adapters import rewards
from boltrl.store.memory import MemoryStore
from boltrl.training.trainer import winning_spans
from boltrl.types import RolloutCreate, reward_span

pytestmark = pytest.mark.anyio


async def test_a_lost_attempts_late_reward_is_not_read() -> None:
    store = MemoryStore()
    [r] = await store.enqueue([RolloutCreate(input={"q": 1}, max_attempts=2)])
    first = await store.claim("slow")
    assert first is not None
    await asyncio.sleep(0.05)
    [lost] = await store.reap(heartbeat_timeout_s=0.01)
    assert lost.id == first.attempt.id and lost.status == "lost"
    second = await store.claim("fast")
    assert second is not None
    await store.add_spans([reward_span(r.id, second.attempt.id, 0.25)])
    await store.finish_attempt(second.attempt.id, "succeeded")
    # the slow runner wakes up and reports its reward after the rollout has succeeded
    await store.add_spans([reward_span(r.id, first.attempt.id, 1.0)])

    rollout = await store.get_rollout(r.id)
    assert rollout.status == "succeeded"
    assert len(await store.get_spans(r.id)) == 2
    spans = await winning_spans(store, rollout)
    assert [s.attempt_id for s in spans] == [second.attempt.id]
    assert [x.value for x in rewards(spans)] == [0.25]


async def test_a_rollout_that_did_not_succeed_has_no_winning_spans() -> None:
    store = MemoryStore()
    [r] = await store.enqueue([RolloutCreate(input={"q": 1}, max_attempts=1)])
    c = await store.claim("w")
    assert c is not None
    await store.add_spans([reward_span(r.id, c.attempt.id, 1.0)])
    await store.finish_attempt(c.attempt.id, "failed", "boom")
    assert await winning_spans(store, await store.get_rollout(r.id)) == []
