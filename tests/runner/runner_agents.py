"""Small agents for the runner tests, importable as `tests.runner.runner_agents:NAME` by runner
subprocesses."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from boltrl.agent import LLM, emit_event, emit_reward, rollout


@rollout
async def scored(task: dict[str, Any], llm: LLM) -> float:
    """Emits an event and a partial reward, returns the final one."""
    emit_event("step", index=1, note="thinking", tags=["a", "b"], payload={"x": 1})
    emit_reward(0.25, name="partial")
    await asyncio.sleep(float(task.get("sleep", 0)))
    return float(task.get("reward", 1.0))


@rollout(name="sync-scored")
def sync_scored(task: dict[str, Any], llm: LLM) -> None:
    """A plain function: runs in a thread and still sees its rollout."""
    emit_event("sync-step", thread=True)
    time.sleep(float(task.get("sleep", 0)))
    emit_reward(float(task.get("reward", 0.5)), name="sync")


@rollout
async def failing(task: dict[str, Any], llm: LLM) -> float:
    raise ValueError(f"boom {task.get('n', 0)}")


@rollout
async def sleeper(task: dict[str, Any], llm: LLM) -> float:
    await asyncio.sleep(float(task.get("sleep", 30)))
    emit_reward(1.0, name="slept")
    return 1.0


@rollout
async def hang_first(task: dict[str, Any], llm: LLM) -> float:
    """Hangs on the first attempt (marker file absent), succeeds on the next: for kill -9 tests."""
    marker = task["marker"]
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        await asyncio.sleep(60)
    emit_reward(0.9, name="second-try")
    return 1.0


def plain(task: dict[str, Any], llm: LLM) -> float:
    """Not decorated: the runner wraps it."""
    return 0.75


def task_only(task: dict[str, Any]) -> float:
    """Takes no llm argument."""
    return float(task["reward"])


not_callable = 42
