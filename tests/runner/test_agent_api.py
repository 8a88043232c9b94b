"""The agent API on its own: the decorator, the LLM resource, telemetry outside a rollout, loading."""

from __future__ import annotations

import asyncio
import logging

import pytest

from boltrl.agent import LLM, RolloutAgent, emit_event, emit_reward, report_reward_from_env, rollout
from boltrl.errors import BoltrlError, InvalidInputError
from boltrl.runner import load_agent
from boltrl.types import Attempt, Claim, Resources, Rollout
from tests.runner import runner_agents as agents


def test_decorator_keeps_functions_callable() -> None:
    assert isinstance(agents.scored, RolloutAgent)
    assert agents.scored.name == "scored"
    assert agents.sync_scored.name == "sync-scored"
    assert agents.scored.__doc__ and "partial" in agents.scored.__doc__

    @rollout
    def double(task: dict[str, int], llm: LLM) -> float:
        return task["x"] * 2.0

    @rollout
    async def triple(task: dict[str, int], llm: LLM) -> float:
        return task["x"] * 3.0

    llm = LLM(base_url="http://x/v1")
    assert double({"x": 2}, llm) == 4.0  # a unit test of the user's agent: a plain call
    assert asyncio.run(triple({"x": 2}, llm)) == 6.0
    assert asyncio.run(double.run({"x": 1}, llm)) == 2.0
    assert asyncio.run(triple.run({"x": 1}, llm)) == 3.0
    assert asyncio.run(RolloutAgent(agents.task_only).run({"reward": 0.5}, llm)) == 0.5


def test_decorator_hooks() -> None:
    def start(rollout: Rollout, attempt: Attempt) -> None: ...

    @rollout(name="calc", on_rollout_start=start)
    async def calc(task: object, llm: LLM) -> None: ...

    assert calc.name == "calc"
    assert calc.on_rollout_start is start
    assert calc.on_rollout_end is None
    calc.on_rollout_end = start
    assert calc.on_rollout_end is start
    with pytest.raises(InvalidInputError):
        RolloutAgent(42)  # type: ignore[arg-type]


def test_emit_outside_rollout_raises_under_strict() -> None:
    with pytest.raises(BoltrlError, match="outside a rollout"):
        emit_reward(1.0)
    with pytest.raises(BoltrlError, match="outside a rollout"):
        emit_event("step")


def test_emit_outside_rollout_only_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("BOLTRL_STRICT")
    with caplog.at_level(logging.WARNING):
        emit_reward(1.0)
        emit_event("step", a=1)
    assert "emit_reward() called outside a rollout" in caplog.text
    assert "emit_event() called outside a rollout" in caplog.text


def _claim(resources: dict[str, object] | None) -> Claim:
    t = 1.0
    return Claim(
        rollout=Rollout(id="ro-1", input={}, created_at=t),
        attempt=Attempt(id="at-1", rollout_id="ro-1", n=1, worker_id="w", started_at=t, heartbeat_at=t),
        resources=Resources(version=1, resources=resources, created_at=t) if resources is not None else None,
    )


def test_llm_for_attempt() -> None:
    llm = LLM.for_attempt(_claim(None), "http://srv:4747/")
    assert llm.base_url == "http://srv:4747/gw/ro-1/at-1/v1"
    assert llm.model == "default"
    llm = LLM.for_attempt(_claim({"prompt": "hi"}), "http://srv")
    assert llm.base_url == "http://srv/gw/ro-1/at-1/v1"
    spec = {"base_url": "{server}/gw/{rollout_id}/{attempt_id}/v1", "model": "smol", "sampling": {"t": 1}}
    llm = LLM.for_attempt(_claim({"llm": spec}), "http://srv")
    assert (llm.base_url, llm.model, llm.sampling) == ("http://srv/gw/ro-1/at-1/v1", "smol", {"t": 1})
    llm = LLM.for_attempt(_claim({"llm": {"base_url": "https://api.example/v1", "api_key": "k"}}), "x")
    assert (llm.base_url, llm.api_key) == ("https://api.example/v1", "k")


def test_report_reward_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BOLTRL_SERVER", "BOLTRL_ROLLOUT_ID", "BOLTRL_ATTEMPT_ID", "BOLTRL_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InvalidInputError, match="BOLTRL_SERVER is not set"):
        report_reward_from_env(1.0)
    monkeypatch.setenv("BOLTRL_SERVER", "http://127.0.0.1:9")
    monkeypatch.setenv("BOLTRL_ROLLOUT_ID", "ro-1")
    with pytest.raises(InvalidInputError, match="BOLTRL_ATTEMPT_ID is not set"):
        report_reward_from_env(1.0)


def test_load_agent() -> None:
    assert load_agent("tests.runner.runner_agents:scored") is agents.scored
    plain = load_agent("tests.runner.runner_agents:plain")
    assert isinstance(plain, RolloutAgent) and plain.name == "plain"
    with pytest.raises(InvalidInputError, match="module:function"):
        load_agent("tests.runner.runner_agents")
    with pytest.raises(InvalidInputError, match="not found"):
        load_agent("tests.runner.nope:agent")
    with pytest.raises(InvalidInputError, match="no attribute 'missing'"):
        load_agent("tests.runner.runner_agents:missing")
    with pytest.raises(InvalidInputError, match="not a function"):
        load_agent("tests.runner.runner_agents:not_callable")
