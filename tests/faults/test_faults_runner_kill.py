"""kill -9 of runner processes in the middle of 300 rollouts: replacements finish the work, and every
rollout ends succeeded by exactly one attempt, with the killed ones recorded as lost."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from boltrl.store.client import StoreClient
from boltrl.testing import free_port, spawn_server, wait_healthy
from tests.faults.helpers import audit, count, enqueue_many, kill9, start_runner, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

N = 300


async def test_kill_9_of_runners_mid_run_loses_nothing(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short heartbeat timeout, so the attempts of killed runners are found lost within seconds.
    monkeypatch.setenv("BOLTRL_HEARTBEAT_TIMEOUT_S", "5")
    monkeypatch.setenv("BOLTRL_REAP_INTERVAL_S", "0.2")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = spawn_server(tmp_path / "boltrl.db", port, log_path=tmp_path / "server.log")
    processes.append(server)
    wait_healthy(url, 30, server)
    async with StoreClient(url) as store:
        ids = await enqueue_many(store, N, "r", sleep=0.3)
        runners = {name: start_runner(url, name, n=8) for name in ("a", "b", "c")}
        processes.extend(runners.values())

        async def succeeded_at_least(n: int) -> bool:
            return await count(store, "succeeded") >= n

        await wait_until(lambda: succeeded_at_least(40), 60, "40 rollouts succeeded")
        for name in ("a", "b"):  # two of three, each with 8 rollouts in flight
            kill9(runners.pop(name))
        for name in ("d", "e"):
            runners[name] = start_runner(url, name, n=8)
            processes.append(runners[name])
        await wait_until(lambda: succeeded_at_least(150), 60, "150 rollouts succeeded")
        for name in ("c", "d"):  # one original and one replacement
            kill9(runners.pop(name))
        runners["f"] = start_runner(url, "f", n=16)
        processes.append(runners["f"])

        done = await store.wait(ids, 60)
        assert len(done) == N
        statuses = await audit(store, ids)
        assert statuses["succeeded"] == N
        lost_by: set[str] = set()
        for rid in ids:
            for a in await store.list_attempts(rid):
                if a.status == "lost":
                    lost_by.add(a.worker_id)
                    assert "heartbeat" in (a.error or "")
        assert {"a", "b", "c", "d"} <= lost_by  # each killed runner had attempts in flight
        assert all(p.poll() is None for p in runners.values())  # the survivors are still working
