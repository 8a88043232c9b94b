"""Agents for the fault tests, importable as `tests.faults.fault_agents:NAME` by runner subprocesses."""

from __future__ import annotations

import asyncio
from typing import Any

from boltrl.agent import LLM, emit_reward, rollout


@rollout
async def work(task: dict[str, Any], llm: LLM) -> float:
    """Takes `sleep` seconds (long enough to be killed in the middle), emits a partial reward."""
    emit_reward(0.5, name="partial")
    await asyncio.sleep(float(task.get("sleep", 0.2)))
    return float(task.get("reward", 1.0))
