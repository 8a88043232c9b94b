"""Helpers for the fault tests: runner and server subprocesses, waiting, and the end-state audit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from boltrl.store.client import StoreClient
from boltrl.types import REWARD_NAME_ATTR, REWARD_SPAN, Reward, RolloutCreate

REPO = Path(__file__).resolve().parents[2]


def runner_env(**extra: str) -> dict[str, str]:
    """Environment for `boltrl runner` subprocesses: the repo importable, strict telemetry, fast timings."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(
        BOLTRL_STRICT="1",
        BOLTRL_POLL_INTERVAL_S="0.05",
        BOLTRL_HEARTBEAT_INTERVAL_S="0.2",
        BOLTRL_SHUTDOWN_GRACE_S="0.5",
        BOLTRL_RETRY_FOR_S="120",
    )
    env.update(extra)
    return env


def start_runner(server: str, worker_id: str, n: int, agent: str = "tests.faults.fault_agents:work") -> Any:
    """`python -m boltrl runner` with `n` slots, its output to /dev/null (tests read the store)."""
    cmd = [sys.executable, "-m", "boltrl", "runner", "--server", server, "--agent", agent]
    cmd += ["-n", str(n), "--worker-id", worker_id]
    return subprocess.Popen(
        cmd, cwd=REPO, env=runner_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout_s:g} s")
        await asyncio.sleep(0.1)


async def count(store: StoreClient, status: str) -> int:
    return (await store.count_rollouts())[status]


async def enqueue_many(store: StoreClient, n: int, prefix: str, **task: Any) -> list[str]:
    rollouts = [
        RolloutCreate(id=f"{prefix}{i:04d}", input={"i": i, **task}, max_attempts=6) for i in range(n)
    ]
    return [r.id for r in await store.enqueue(rollouts)]


async def audit(store: StoreClient, ids: list[str]) -> dict[str, int]:
    """Check the end state of a run that faults hit: every rollout succeeded, by exactly one succeeded
    attempt, every attempt terminal, and that attempt's final reward recorded once. Returns the
    attempt statuses counted over all rollouts."""
    statuses: dict[str, int] = {}
    for rid in ids:
        rollout = await store.get_rollout(rid)
        attempts = await store.list_attempts(rid)
        assert rollout.status == "succeeded", (rid, rollout.status, attempts)
        assert rollout.attempt_count == len(attempts) >= 1
        [winner] = [a for a in attempts if a.status == "succeeded"]
        assert winner.n == len(attempts), attempts  # nothing ran after the one that succeeded
        for a in attempts:
            statuses[a.status] = statuses.get(a.status, 0) + 1
            assert a.status in ("succeeded", "lost", "failed"), a
        finals = [
            (s.attempt_id, Reward.from_span(s))
            for s in await store.get_spans(rid)
            if s.name == REWARD_SPAN and s.attributes.get(REWARD_NAME_ATTR) == "final"
        ]
        # The winner's final reward, once. A lost attempt may have one too: its runner was slow to
        # heartbeat but alive, and stored its spans after the server had given up on it.
        assert [r for a, r in finals if a == winner.id] == [Reward(value=1.0, name="final")], (rid, finals)
        losers = {a.id for a in attempts if a.status != "succeeded"}
        assert all(a == winner.id or a in losers for a, _ in finals), (rid, finals)
    return statuses
