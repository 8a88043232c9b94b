"""A real `python -m boltrl serve` process on a SQLite file, killed with SIGKILL and restarted."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from boltrl.config import ClientConfig
from boltrl.store.client import StoreClient
from boltrl.testing import free_port, spawn_server, wait_healthy
from boltrl.types import RolloutCreate
from tests.server.helpers import claim, enqueue

Spawn = Callable[[Path, int], subprocess.Popen[bytes]]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start servers that are killed and reaped at the end of the test, whatever happens."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(db: Path, port: int) -> subprocess.Popen[bytes]:
        proc = spawn_server(db, port, log_path=tmp_path / "server.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL


def test_kill_9_loses_no_acknowledged_write(spawn: Spawn, tmp_path: Path) -> None:
    db, port = tmp_path / "boltrl.db", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = spawn(db, port)
    wait_healthy(url, proc=proc)
    with httpx.Client(base_url=url, timeout=10) as http:
        http.put("/v1/resources", json={"resources": {"prompt": "v1"}}).raise_for_status()
        enqueue(http, *({"id": f"r{i}", "input": {"i": i}, "group_id": "g"} for i in range(4)))
        first, second = claim(http, "w1")["attempt"], claim(http, "w2")["attempt"]
        http.post(f"/v1/attempts/{first['id']}/finish", json={"status": "succeeded"}).raise_for_status()
        http.post(
            f"/v1/attempts/{second['id']}/finish", json={"status": "failed", "error": "e"}
        ).raise_for_status()
        http.post("/v1/rollouts/r3/cancel").raise_for_status()
        for batch in range(3):
            spans = [
                {"rollout_id": "r0", "attempt_id": first["id"], "name": f"s{batch}.{k}"} for k in range(5)
            ]
            http.post("/v1/spans", json={"spans": spans}).raise_for_status()
        third = claim(http, "w3")["attempt"]  # r1's second attempt, still running at the kill
        http.post(f"/v1/attempts/{third['id']}/heartbeat").raise_for_status()
        before = {rid: http.get(f"/v1/rollouts/{rid}").json() for rid in ("r0", "r1", "r2", "r3")}
    _kill9(proc)

    proc = spawn(db, port)
    wait_healthy(url, proc=proc)
    with httpx.Client(base_url=url, timeout=10) as http:
        after = {rid: http.get(f"/v1/rollouts/{rid}").json() for rid in ("r0", "r1", "r2", "r3")}
        assert after == before
        assert [a["status"] for a in after["r1"]["attempts"]] == ["failed", "running"]
        assert after["r0"]["status"] == "succeeded" and after["r3"]["status"] == "cancelled"
        names = [s["name"] for s in http.get("/v1/rollouts/r0/spans").json()["spans"]]
        assert names == [f"s{b}.{k}" for b in range(3) for k in range(5)]
        assert http.get("/v1/resources").json()["resources"] == {"prompt": "v1"}
        assert claim(http, "w4")["rollout"]["id"] == "r2"  # the queue order survived too
    proc.terminate()
    assert proc.wait(10) in (0, -signal.SIGTERM)


@pytest.mark.anyio
async def test_client_rides_out_a_server_restart(spawn: Spawn, tmp_path: Path) -> None:
    db, port = tmp_path / "boltrl.db", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = spawn(db, port)
    await asyncio.to_thread(wait_healthy, url, 20.0, proc)
    async with StoreClient(url, config=ClientConfig(retry_for_s=30)) as store:
        await store.enqueue([RolloutCreate(id="r1", input=1)])
        _kill9(proc)
        pending = asyncio.create_task(store.claim("w1"))  # retries while the server is down
        await asyncio.sleep(0.5)
        assert not pending.done()
        proc = spawn(db, port)
        claimed = await asyncio.wait_for(pending, 30)
        assert claimed is not None and claimed.rollout.id == "r1"
        assert (await store.finish_attempt(claimed.attempt.id, "succeeded")).status == "succeeded"
