"""kill -9 of the server (a `boltrl serve` process on a SQLite file) in the middle of 300 rollouts,
twice, restarted on the same database and port: nothing acknowledged is lost, and the runners and the
trainer's `StoreClient` (blocked in a long poll across both crashes) carry on by themselves."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from boltrl.config import ClientConfig
from boltrl.store.client import StoreClient
from boltrl.testing import free_port, spawn_server, wait_healthy
from tests.faults.helpers import audit, enqueue_many, kill9, start_runner, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

N = 300


async def _acknowledged(store: StoreClient) -> dict[str, Any]:
    """What the server has confirmed so far: the succeeded rollouts, their attempts and spans."""
    page = await store.list_rollouts(status="succeeded", limit=1000)
    return {r.id: (r, await store.list_attempts(r.id), await store.get_spans(r.id)) for r in page.rollouts}


async def test_kill_9_of_the_server_mid_run_loses_nothing(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    db, port = tmp_path / "boltrl.db", free_port()
    url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen[bytes]:
        proc = spawn_server(db, port, log_path=tmp_path / "server.log")
        processes.append(proc)
        return proc

    server = start()
    wait_healthy(url, 30, server)
    async with (
        StoreClient(url, config=ClientConfig(retry_for_s=120)) as trainer,
        StoreClient(url, config=ClientConfig(retry_for_s=120)) as probe,
    ):
        ids = await enqueue_many(trainer, N, "r", sleep=0.05)
        runners = [start_runner(url, name, n=8) for name in ("a", "b", "c")]
        processes.extend(runners)
        # The trainer waits for the whole batch in one call that outlives both crashes.
        waiting = asyncio.create_task(trainer.wait(ids, 240))

        snapshots = []
        for threshold in (60, 180):

            async def reached(n: int = threshold) -> bool:
                return (await probe.count_rollouts())["succeeded"] >= n

            await wait_until(reached, 60, f"{threshold} rollouts succeeded")
            snapshots.append(await _acknowledged(probe))
            kill9(server)
            await asyncio.sleep(1.0)  # runners and the trainer meet a dead server for a while
            server = start()
            await asyncio.to_thread(wait_healthy, url, 30, server)

        done = await asyncio.wait_for(waiting, 120)
        assert sorted(r.id for r in done) == ids
        statuses = await audit(probe, ids)
        assert statuses == {"succeeded": N}  # a restart is not a lost attempt: no rollout ran twice
        for snapshot in snapshots:  # acknowledged before a crash: still there, unchanged
            for rid, (rollout, attempts, spans) in snapshot.items():
                assert await probe.get_rollout(rid) == rollout
                assert await probe.list_attempts(rid) == attempts
                assert await probe.get_spans(rid) == spans
        assert all(r.poll() is None for r in runners)  # the runners rode out both crashes
    for r in runners:
        r.send_signal(signal.SIGTERM)
    for r in runners:
        assert r.wait(20) == 0
