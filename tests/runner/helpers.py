"""Helpers for the runner tests: fast timings, running a runner to completion, runner subprocesses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from boltrl.config import RunnerConfig
from boltrl.runner import Runner
from boltrl.store.base import Store
from boltrl.types import Rollout, RolloutCreate

REPO = Path(__file__).resolve().parents[2]


def fast_config(**overrides: Any) -> RunnerConfig:
    values: dict[str, Any] = dict(
        poll_interval_s=0.02, heartbeat_interval_s=0.05, shutdown_grace_s=0.5, worker_id="test-worker"
    )
    values.update(overrides)
    return RunnerConfig(**values)


async def enqueue(store: Store, *inputs: Any, **fields: Any) -> list[str]:
    rollouts = await store.enqueue([RolloutCreate(input=i, **fields) for i in inputs])
    return [r.id for r in rollouts]


async def run_until_terminal(
    runner: Runner, store: Store, ids: list[str], timeout_s: float = 15.0
) -> list[Rollout]:
    """Run `runner` until every rollout of `ids` is terminal, then stop it and wait for it to exit."""
    task = asyncio.create_task(runner.run())
    try:
        done = await store.wait(ids, timeout_s)
    finally:
        runner.stop(grace_s=0)
        await asyncio.wait_for(task, 10)
    assert len(done) == len(ids), f"only {len(done)} of {len(ids)} rollouts ended"
    return [await store.get_rollout(i) for i in ids]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for boltrl subprocesses: the repo importable, strict telemetry, fast timings."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(
        BOLTRL_STRICT="1",
        BOLTRL_POLL_INTERVAL_S="0.05",
        BOLTRL_HEARTBEAT_INTERVAL_S="0.2",
        BOLTRL_SHUTDOWN_GRACE_S="0.5",
    )
    env.update(extra)
    return env


def start_runner(server: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`python -m boltrl runner --server SERVER ARGS...` from the repository root."""
    return subprocess.Popen(
        [sys.executable, "-m", "boltrl", "runner", "--server", server, *args],
        cwd=REPO,
        env=env or subprocess_env(),
    )
