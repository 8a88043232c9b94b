"""What only a file can do: survive a restart and kill -9, and be shared by several processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from boltrl.errors import InvalidInputError
from boltrl.store import SQLiteStore
from boltrl.store.sqlite import SCHEMA_VERSION
from boltrl.types import RolloutCreate, SpanCreate

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[2]


def python(code: str, *args: str) -> subprocess.Popen[str]:
    """`code` in a fresh interpreter that imports this checkout of boltrl."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    store = SQLiteStore(path)
    await store.enqueue([RolloutCreate(id=f"r{i}", input={"i": i}, group_id="g") for i in range(3)])
    c = await store.claim("w1")
    assert c is not None
    await store.add_spans([SpanCreate(rollout_id="r0", attempt_id=c.attempt.id, name="s0")])
    await store.finish_attempt(c.attempt.id, "succeeded")
    res = await store.put_resources({"prompt": "p"})
    before = [await store.get_rollout(f"r{i}") for i in range(3)]
    await store.close()

    store = SQLiteStore(path)
    try:
        assert [await store.get_rollout(f"r{i}") for i in range(3)] == before
        assert await store.get_attempt(c.attempt.id) == (await store.list_attempts("r0"))[0]
        assert await store.get_resources() == res
        [s1] = await store.add_spans([SpanCreate(rollout_id="r0", name="s1")])
        assert s1.seq == 1  # the seq counter survived too
        assert [s.name for s in await store.get_spans("r0")] == ["s0", "s1"]
        c2 = await store.claim("w2")
        assert c2 is not None and c2.rollout.id == "r1"  # and the queue order
        [r3] = await store.enqueue([RolloutCreate(input=3)])
        page = await store.list_rollouts()
        assert [r.id for r in page.rollouts] == ["r0", "r1", "r2", r3.id]
    finally:
        await store.close()


async def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    store = SQLiteStore(str(path))
    try:
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(InvalidInputError, match="upgrade boltrl"):
        SQLiteStore(str(path))


async def test_values_that_are_not_json_are_rejected_whole(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "b.db"))
    try:
        with pytest.raises(InvalidInputError, match="input of rollout 'bad'"):
            await store.enqueue([RolloutCreate(id="ok", input=1), RolloutCreate(id="bad", input={1j})])
        [r] = await store.enqueue([RolloutCreate(id="ok", input=2)])
        assert r.input == 2  # the failed batch wrote nothing
        with pytest.raises(InvalidInputError, match="attributes"):
            await store.add_spans([SpanCreate(rollout_id="ok", name="s", attributes={"x": object()})])
        assert await store.get_spans("ok") == []
        with pytest.raises(InvalidInputError, match="resources"):
            await store.put_resources({"x": b"bytes"})
        assert await store.get_resources() is None
    finally:
        await store.close()


async def test_wait_sees_changes_made_through_another_connection(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    waiter, writer = SQLiteStore(path), SQLiteStore(path)  # as if two processes
    try:
        [r] = await waiter.enqueue([RolloutCreate(input=1)])
        c = await writer.claim("w1")
        assert c is not None

        async def finish_later() -> None:
            await asyncio.sleep(0.1)
            await writer.finish_attempt(c.attempt.id, "succeeded")

        t0 = time.monotonic()
        done, _ = await asyncio.gather(waiter.wait([r.id], timeout_s=10), finish_later())
        assert time.monotonic() - t0 < 2
        assert [x.status for x in done] == ["succeeded"]
    finally:
        await waiter.close()
        await writer.close()


def test_one_store_serves_several_event_loops_and_threads(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "b.db"))
    made = asyncio.run(store.enqueue([RolloutCreate(input=i, max_attempts=1) for i in range(200)]))
    claimed: list[str] = []

    async def claimer(worker_id: str) -> None:
        while (c := await store.claim(worker_id)) is not None:
            claimed.append(c.rollout.id)
            await store.finish_attempt(c.attempt.id, "succeeded")
        await store.wait([made[0].id], timeout_s=1)  # a wait in each thread's own loop

    threads = [threading.Thread(target=asyncio.run, args=(claimer(f"w{i}"),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(r.id for r in made)
    assert len(asyncio.run(store.wait([r.id for r in made], timeout_s=0))) == 200
    asyncio.run(store.close())


WORKLOAD = """
import asyncio, sys
from boltrl.store import SQLiteStore
from boltrl.types import RolloutCreate, SpanCreate

async def main():
    store = SQLiteStore(sys.argv[1])
    for i in range(100_000):
        await store.enqueue([RolloutCreate(id=f"r{i}", input=i, max_attempts=1)])
        print("enqueued", f"r{i}", flush=True)
        c = await store.claim("w")
        print("claimed", c.rollout.id, c.attempt.id, flush=True)
        await store.add_spans([SpanCreate(rollout_id=c.rollout.id, attempt_id=c.attempt.id, name=f"s{i}")])
        print("span", c.rollout.id, flush=True)
        if i % 2 == 0:
            await store.finish_attempt(c.attempt.id, "succeeded")
            print("finished", c.rollout.id, flush=True)

asyncio.run(main())
"""


async def test_nothing_acknowledged_is_lost_on_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    proc = python(WORKLOAD, path)
    assert proc.stdout is not None and proc.stderr is not None
    acked: list[list[str]] = []
    while len(acked) < 200:
        line = proc.stdout.readline()
        assert line, f"workload died: {proc.stderr.read()}"
        acked.append(line.split())
    os.kill(proc.pid, signal.SIGKILL)  # mid-way: it is writing as fast as it can
    rest, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    acked += [line.split() for line in rest.split("\n")[:-1]]  # complete lines were acknowledged too

    store = SQLiteStore(path)
    try:
        for op, rid, *more in acked:
            r = await store.get_rollout(rid)
            if op == "claimed":
                assert (await store.get_attempt(more[0])).rollout_id == rid
                assert r.attempt_count == 1
            elif op == "span":
                assert [s.name for s in await store.get_spans(rid)] == [f"s{rid[1:]}"]
            elif op == "finished":
                assert r.status == "succeeded"
        # The file is consistent and usable: every rollout is whole, the queue still works.
        counts = await store.count_rollouts()
        assert sum(counts.values()) >= len({a[1] for a in acked})
        await store.enqueue([RolloutCreate(id="after", input=0)])
        claimed = []
        while (c := await store.claim("w2")) is not None:
            claimed.append(c.rollout.id)
        assert "after" in claimed
    finally:
        await store.close()


CLAIMER = """
import asyncio, sys
from boltrl.store import SQLiteStore

async def main():
    store = SQLiteStore(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    while (c := await store.claim(sys.argv[2])) is not None:
        print(c.rollout.id, flush=True)
        await asyncio.sleep(0.002)  # spread the claims out, so the claimers overlap even on a busy CPU
    await store.close()

asyncio.run(main())
"""


async def test_processes_claiming_from_one_file_never_share_a_rollout(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    store = SQLiteStore(path)
    try:
        made = await store.enqueue([RolloutCreate(input=i) for i in range(400)])
        procs = [python(CLAIMER, path, f"w{i}") for i in range(3)]
        for p in procs:  # everyone is connected before anyone starts claiming
            assert p.stdout is not None and p.stdout.readline() == "ready\n", p.communicate()[1]
        for p in procs:  # then all start at once
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
        claimed = [out.split() for out, _ in outs]
        flat = [rid for ids in claimed for rid in ids]
        assert sorted(flat) == sorted(r.id for r in made)  # each exactly once
        assert sum(1 for ids in claimed if ids) >= 2, "the claimers did not overlap; test proves little"
        for ids in claimed:
            attempts = [(await store.list_attempts(rid))[0] for rid in ids]
            assert {a.worker_id for a in attempts} <= {f"w{i}" for i in range(3)}
            assert all(a.n == 1 for a in attempts)
    finally:
        await store.close()
