"""Tracing: spans of OTel-instrumented frameworks reach the store with their rollout, others do not."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from boltrl import tracing
from boltrl.agent import LLM, rollout
from boltrl.runner import Runner
from boltrl.store.memory import MemoryStore
from boltrl.types import ROLLOUT_SPAN
from tests.runner.helpers import enqueue, fast_config, run_until_terminal

pytestmark = pytest.mark.anyio


def framework_call(name: str) -> None:
    """What an instrumented framework does: a span from the global provider, with an event."""
    with trace.get_tracer("some.framework").start_as_current_span(name) as span:
        span.add_event("token", {"n": 3})
        span.set_attribute("framework.tool", "calculator")


@rollout
async def framework_agent(task: Any, llm: LLM) -> float:
    framework_call("in-task")
    # A framework's own worker thread: contextvars are not copied, only the OTel context is passed.
    parent = otel_context.get_current()

    def worker() -> None:
        token = otel_context.attach(parent)
        try:
            framework_call("in-thread")
        finally:
            otel_context.detach(token)

    thread = threading.Thread(target=worker)
    thread.start()
    await asyncio.to_thread(thread.join)
    with trace.get_tracer("some.framework").start_as_current_span("failing") as span:
        try:
            raise KeyError("missing")
        except KeyError as e:
            span.record_exception(e)
            span.set_status(trace.Status(trace.StatusCode.ERROR, "tool failed"))
    return 1.0


async def test_framework_spans_are_tagged_through_threads() -> None:
    tracing.provider()
    # Ours is made the global provider (or joins an SDK one set before it): frameworks land here.
    assert isinstance(trace.get_tracer_provider(), TracerProvider)
    store = MemoryStore()
    [rid] = await enqueue(store, None)
    framework_call("outside-any-rollout")
    await run_until_terminal(Runner(store, framework_agent, config=fast_config()), store, [rid])
    spans = await store.get_spans(rid)
    by_name = {s.name: s for s in spans}
    assert [s.name for s in spans] == ["in-task", "in-thread", "failing", "boltrl.reward", ROLLOUT_SPAN]
    root = by_name[ROLLOUT_SPAN]
    thread_span = by_name["in-thread"]
    assert thread_span.trace_id == root.trace_id and thread_span.parent_id == root.span_id
    assert thread_span.attributes["framework.tool"] == "calculator"
    assert [(e.name, e.attributes) for e in thread_span.events] == [("token", {"n": 3})]
    failing = by_name["failing"]
    assert failing.status == "error" and failing.attributes["otel.status_description"] == "tool failed"
    assert failing.events[0].name == "exception"
    assert failing.events[0].attributes["exception.type"] == "KeyError"
    assert all(s.end is not None and s.end >= s.start for s in spans)


async def test_export_failures_are_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("BOLTRL_STRICT")

    class BrokenSpans(MemoryStore):
        async def add_spans(self, spans: Any) -> Any:
            raise RuntimeError("disk full")

    store = BrokenSpans()
    [rid] = await enqueue(store, {"reward": 1.0})
    from tests.runner import runner_agents as agents

    [r] = await run_until_terminal(Runner(store, agents.scored, config=fast_config()), store, [rid])
    assert r.status == "succeeded"  # telemetry never breaks the agent
    assert "could not store" in caplog.text and "disk full" in caplog.text


async def test_export_failures_raise_under_strict() -> None:
    class BrokenSpans(MemoryStore):
        async def add_spans(self, spans: Any) -> Any:
            raise RuntimeError("disk full")

    store = BrokenSpans()
    sink = tracing.Tracing(store)
    ctx = tracing.RolloutContext("ro-x", "at-x")
    sink.start_rollout(ctx)
    sink.end_rollout(ctx)
    with pytest.raises(RuntimeError, match="disk full"):
        await sink.flush()
    await sink.shutdown()
