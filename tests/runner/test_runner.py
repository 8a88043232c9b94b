"""The runner in process against a MemoryStore: outcomes, spans, timeouts, heartbeats, hooks, stopping."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from boltrl.agent import LLM, current_rollout, rollout
from boltrl.errors import ServerUnavailableError
from boltrl.runner import RELEASED, Runner
from boltrl.store.memory import MemoryStore
from boltrl.types import (
    ATTEMPT_ID_ATTR,
    REWARD_NAME_ATTR,
    REWARD_SPAN,
    REWARD_VALUE_ATTR,
    ROLLOUT_ID_ATTR,
    ROLLOUT_SPAN,
    Reward,
)
from tests.runner import runner_agents as agents
from tests.runner.helpers import enqueue, fast_config, run_until_terminal

pytestmark = pytest.mark.anyio


async def test_async_agent_spans_and_rewards_in_order() -> None:
    store = MemoryStore()
    [rid] = await enqueue(store, {"reward": 0.8})
    [r] = await run_until_terminal(Runner(store, agents.scored, config=fast_config()), store, [rid])
    assert r.status == "succeeded"
    [attempt] = await store.list_attempts(rid)
    assert (attempt.status, attempt.worker_id) == ("succeeded", "test-worker")
    spans = await store.get_spans(rid)
    assert [s.name for s in spans] == ["step", REWARD_SPAN, REWARD_SPAN, ROLLOUT_SPAN]
    assert [s.seq for s in spans] == [0, 1, 2, 3]
    step, partial, final, root = spans
    assert step.attributes["index"] == 1 and step.attributes["tags"] == ["a", "b"]
    assert step.attributes["payload"] == '{"x": 1}'
    assert [Reward.from_span(s) for s in (partial, final)] == [
        Reward(value=0.25, name="partial"),
        Reward(value=0.8, name="final"),
    ]
    for s in spans:
        assert (s.rollout_id, s.attempt_id) == (rid, attempt.id)
        assert s.attributes[ROLLOUT_ID_ATTR] == rid and s.attributes[ATTEMPT_ID_ATTR] == attempt.id
        assert s.trace_id == root.trace_id and len(s.trace_id) == 32
    assert root.parent_id is None and root.attributes["boltrl.agent"] == "scored"
    assert {s.parent_id for s in (step, partial, final)} == {root.span_id}
    assert root.start <= step.start <= root.end  # type: ignore[operator]


async def test_sync_agent_runs_in_a_thread_with_its_rollout() -> None:
    store = MemoryStore()
    ids = await enqueue(store, {"reward": 0.3}, {"reward": 0.6})
    runner = Runner(store, agents.sync_scored, config=fast_config(n=2))
    rollouts = await run_until_terminal(runner, store, ids)
    assert [r.status for r in rollouts] == ["succeeded", "succeeded"]
    for rid, want in zip(ids, (0.3, 0.6), strict=True):
        spans = await store.get_spans(rid)
        assert [s.name for s in spans] == ["sync-step", REWARD_SPAN, ROLLOUT_SPAN]
        assert spans[1].attributes == {
            REWARD_VALUE_ATTR: want,
            REWARD_NAME_ATTR: "sync",
            ROLLOUT_ID_ATTR: rid,
            ATTEMPT_ID_ATTR: spans[1].attempt_id,
        }


async def test_plain_function_and_current_rollout() -> None:
    seen: list[Any] = []

    async def agent(task: Any, llm: LLM) -> float:
        seen.append((current_rollout(), llm.base_url))
        return 1

    store = MemoryStore()
    [rid] = await enqueue(store, "hi")
    await run_until_terminal(Runner(store, agent, config=fast_config(server="http://s")), store, [rid])
    [(ctx, base_url)] = seen
    [attempt] = await store.list_attempts(rid)
    assert (ctx.rollout_id, ctx.attempt_id, ctx.attempt_n, ctx.mode) == (rid, attempt.id, 1, "train")
    assert base_url == f"http://s/gw/{rid}/{attempt.id}/v1"
    assert current_rollout() is None


async def test_exceptions_fail_the_attempt_and_retry() -> None:
    store = MemoryStore()
    [rid] = await enqueue(store, {"n": 7}, max_attempts=2)
    [r] = await run_until_terminal(Runner(store, agents.failing, config=fast_config()), store, [rid])
    assert r.status == "failed" and r.attempt_count == 2
    attempts = await store.list_attempts(rid)
    assert [a.status for a in attempts] == ["failed", "failed"]
    for a in attempts:
        assert a.error is not None and a.error.endswith("ValueError: boom 7")
        assert "Traceback" in a.error or "agents.py" in a.error
    root = [s for s in await store.get_spans(rid) if s.name == ROLLOUT_SPAN]
    assert len(root) == 2 and all(s.attributes["boltrl.status"] == "failed" for s in root)


async def test_returning_something_else_fails_with_a_fix() -> None:
    @rollout
    async def chatty(task: Any, llm: LLM) -> Any:
        return {"answer": 4}

    store = MemoryStore()
    [rid] = await enqueue(store, 1, max_attempts=1)
    await run_until_terminal(Runner(store, chatty, config=fast_config()), store, [rid])
    [a] = await store.list_attempts(rid)
    assert a.status == "failed" and "return a finite float reward" in (a.error or "")


async def test_timeout() -> None:
    store = MemoryStore()
    [rid] = await enqueue(store, {"sleep": 30}, timeout_s=0.2, max_attempts=1)
    [r] = await run_until_terminal(Runner(store, agents.sleeper, config=fast_config()), store, [rid])
    assert r.status == "failed"
    [a] = await store.list_attempts(rid)
    assert a.status == "timed_out" and a.error == "rollout timed out after 0.2 s"


async def test_heartbeat_conflict_cancels_the_agent() -> None:
    started, events = asyncio.Event(), list[Any]()

    async def end(rollout: Any, attempt: Any, status: str, reward: float | None) -> None:
        events.append(("end", status, reward))

    @rollout(on_rollout_end=end)
    async def waiter(task: Any, llm: LLM) -> float:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        return 1.0

    store = MemoryStore()
    [rid] = await enqueue(store, None)
    runner = Runner(store, waiter, config=fast_config())
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), 5)
    await store.cancel(rid)
    for _ in range(100):
        if len(events) == 2:
            break
        await asyncio.sleep(0.02)
    runner.stop(grace_s=0)
    await asyncio.wait_for(task, 5)
    assert events == ["cancelled", ("end", "failed", None)]  # the attempt as the store ended it
    [a] = await store.list_attempts(rid)
    assert (a.status, a.error) == ("failed", "rollout cancelled")
    assert (await store.get_rollout(rid)).status == "cancelled"


async def test_hooks_are_called_around_each_attempt() -> None:
    calls: list[Any] = []
    agent = rollout(agents.plain)
    agent.on_rollout_start = lambda r, a: calls.append(("start", r.id, a.n))

    async def end(r: Any, a: Any, status: str, reward: float | None) -> None:
        calls.append(("end", r.id, a.n, status, reward))

    agent.on_rollout_end = end
    store = MemoryStore()
    [rid] = await enqueue(store, {})
    await run_until_terminal(Runner(store, agent, config=fast_config()), store, [rid])
    assert calls == [("start", rid, 1), ("end", rid, 1, "succeeded", 0.75)]


async def test_failing_start_hook_fails_the_attempt() -> None:
    def start(r: Any, a: Any) -> None:
        raise RuntimeError("no sandbox")

    store = MemoryStore()
    [rid] = await enqueue(store, {}, max_attempts=1)
    await run_until_terminal(
        Runner(store, rollout(on_rollout_start=start)(agents.plain), config=fast_config()), store, [rid]
    )
    [a] = await store.list_attempts(rid)
    assert a.status == "failed" and "RuntimeError: no sandbox" in (a.error or "")


async def test_max_rollouts_stops_the_runner() -> None:
    store = MemoryStore()
    await enqueue(store, *({"reward": 1} for _ in range(5)))
    runner = Runner(store, agents.scored, config=fast_config(n=2, max_rollouts=3))
    await asyncio.wait_for(runner.run(), 10)
    assert runner.completed == 3
    counts = await store.count_rollouts()
    assert (counts["succeeded"], counts["queued"]) == (3, 2)


async def test_stop_releases_in_flight_attempts() -> None:
    store = MemoryStore()
    ids = await enqueue(store, {"sleep": 30}, {"sleep": 30})
    runner = Runner(store, agents.sleeper, config=fast_config(n=2))
    task = asyncio.create_task(runner.run())
    while (await store.count_rollouts())["running"] < 2:
        await asyncio.sleep(0.02)
    runner.stop(grace_s=0.1)
    await asyncio.wait_for(task, 5)
    for rid in ids:
        assert (await store.get_rollout(rid)).status == "queued"  # requeued: attempts remain
        [a] = await store.list_attempts(rid)
        assert (a.status, a.error) == ("failed", RELEASED)


async def test_stop_lets_short_rollouts_finish_within_grace() -> None:
    store = MemoryStore()
    [rid] = await enqueue(store, {"sleep": 0.3})
    runner = Runner(store, agents.sleeper, config=fast_config())
    task = asyncio.create_task(runner.run())
    while (await store.count_rollouts())["running"] < 1:
        await asyncio.sleep(0.02)
    runner.stop(grace_s=5)
    await asyncio.wait_for(task, 5)
    assert (await store.get_rollout(rid)).status == "succeeded"
    assert [s.name for s in await store.get_spans(rid)] == [REWARD_SPAN, REWARD_SPAN, ROLLOUT_SPAN]


class FlakyStore(MemoryStore):
    """A store whose server is away for the first `outage` calls of each kind."""

    def __init__(self, outage: int) -> None:
        super().__init__()
        self.outage = outage
        self.failures: dict[str, int] = {}

    def _maybe_fail(self, what: str) -> None:
        n = self.failures.get(what, 0)
        if n < self.outage:
            self.failures[what] = n + 1
            raise ServerUnavailableError(f"{what}: server away")

    async def claim(self, worker_id: str) -> Any:
        self._maybe_fail("claim")
        return await super().claim(worker_id)

    async def heartbeat(self, attempt_id: str) -> Any:
        self._maybe_fail("heartbeat")
        return await super().heartbeat(attempt_id)

    async def finish_attempt(self, attempt_id: str, status: str, error: str | None = None) -> Any:
        self._maybe_fail("finish")
        return await super().finish_attempt(attempt_id, status, error)

    async def add_spans(self, spans: Any) -> Any:
        self._maybe_fail("spans")
        return await super().add_spans(spans)


async def test_runner_rides_out_an_unavailable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("boltrl.tracing.StoreExporter.retry_delay_s", 0.05)
    store = FlakyStore(outage=2)
    ids = await enqueue(store, {"sleep": 0.2}, {"sleep": 0.2})
    rollouts = await run_until_terminal(Runner(store, agents.scored, config=fast_config()), store, ids)
    assert [r.status for r in rollouts] == ["succeeded", "succeeded"]
    assert store.failures == {"claim": 2, "heartbeat": 2, "finish": 2, "spans": 2}
    for rid in ids:
        rewards = [Reward.from_span(s) for s in await store.get_spans(rid) if s.name == REWARD_SPAN]
        assert [r.name for r in rewards] == ["partial", "final"]


async def test_runner_needs_one_agent_or_command() -> None:
    with pytest.raises(ValueError, match="agent"):
        Runner(MemoryStore())
    with pytest.raises(ValueError, match="not both"):
        Runner(MemoryStore(), agents.scored, command="true")


async def test_non_finite_reward_fails_the_attempt() -> None:
    @rollout
    async def nan(task: Any, llm: LLM) -> float:
        return float("nan")

    store = MemoryStore()
    [rid] = await enqueue(store, 1, max_attempts=1)
    await run_until_terminal(Runner(store, nan, config=fast_config()), store, [rid])
    [a] = await store.list_attempts(rid)
    assert a.status == "failed" and "returned nan" in (a.error or "")
