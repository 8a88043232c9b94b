"""Load: many rollouts of a small agent through 64 concurrent runner slots against one server.

    .venv/bin/python benchmarks/load.py                  # 10,000 rollouts (a minute or two on 2 cores)
    .venv/bin/python benchmarks/load.py --rollouts 1000  # a shorter run

One `boltrl serve` process on a fresh SQLite file; P runner processes (the real `Runner` over the real
`StoreClient`), S slots each, P * S = 64 by default. The agent uses no model: it emits an event,
sleeps `--agent-sleep` seconds and returns a reward, so every rollout costs the server what a real one
does apart from model calls: a claim, its spans (root span, event, reward), and a finish.

Prints rollouts/s (from the moment the runners start claiming to the last rollout terminal), claim
latency p50/p99 as the runners saw it (the HTTP round trip of a claim that got a rollout), the peak
resident memory of the server process (VmHWM), and the loss audit: every rollout succeeded, and the
succeeded attempts number exactly the rollouts (so none ran twice to success) with no attempt running,
failed, timed out or lost.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from boltrl.agent import LLM, emit_event, rollout  # noqa: E402
from boltrl.config import ClientConfig, RunnerConfig  # noqa: E402
from boltrl.runner import Runner  # noqa: E402
from boltrl.store.client import StoreClient  # noqa: E402
from boltrl.testing import free_port, spawn_server, wait_healthy  # noqa: E402
from boltrl.types import Claim, RolloutCreate  # noqa: E402

ENQUEUE_BATCH = 1000


class TimedClient(StoreClient):
    """A `StoreClient` that records how long each claim that got a rollout took."""

    latencies: list[float]

    async def claim(self, worker_id: str) -> Claim | None:
        started = time.perf_counter()
        claimed = await super().claim(worker_id)
        if claimed is not None:
            self.latencies.append(time.perf_counter() - started)
        return claimed


def _worker(url: str, index: int, slots: int, sleep_s: float, go: Any, stop: Any, out: Any) -> None:
    out.put(asyncio.run(_work(url, index, slots, sleep_s, go, stop)))


async def _work(url: str, index: int, slots: int, sleep_s: float, go: Any, stop: Any) -> list[float]:
    @rollout(name="tiny")
    async def tiny(task: dict[str, Any], llm: LLM) -> float:
        emit_event("step", i=task["i"])
        await asyncio.sleep(sleep_s)
        return 1.0

    store = TimedClient(url, config=ClientConfig(retry_for_s=120))
    store.latencies = []
    config = RunnerConfig(
        server=url, n=slots, worker_id=f"load-{index}", poll_interval_s=0.05, heartbeat_interval_s=5.0
    )
    runner = Runner(store, tiny, config=config)
    await asyncio.to_thread(go.wait)
    running = asyncio.create_task(runner.run())
    while not stop.is_set() and not running.done():
        await asyncio.sleep(0.1)
    runner.stop(grace_s=5)
    await running
    await store.close()
    return store.latencies


def _peak_rss_mib(pid: int) -> float:
    """The high-water mark of the process's resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/PID/status (Linux only)")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _enqueue(url: str, n: int) -> list[str]:
    ids = []
    async with StoreClient(url) as store:
        for start in range(0, n, ENQUEUE_BATCH):
            batch = [
                RolloutCreate(id=f"load-{i:06d}", input={"i": i})
                for i in range(start, min(n, start + ENQUEUE_BATCH))
            ]
            ids += [r.id for r in await store.enqueue(batch)]
    return ids


async def _wait_all(url: str, ids: list[str]) -> None:
    async with StoreClient(url, config=ClientConfig(retry_for_s=120)) as store:
        pending = list(ids)
        while pending:
            chunk = pending[:10_000]
            done = {r.id for r in await store.wait(chunk, 60)}
            pending = [i for i in pending if i not in done]


async def _audit(url: str, n: int) -> dict[str, Any]:
    async with StoreClient(url) as store:
        counts = await store.count_rollouts()
        workers = await store.list_workers()
    attempts = {
        status: sum(getattr(w, status) for w in workers)
        for status in ("running", "succeeded", "failed", "timed_out", "lost")
    }
    lost = n - counts["succeeded"]
    ok = lost == 0 and attempts == {"running": 0, "succeeded": n, "failed": 0, "timed_out": 0, "lost": 0}
    return {"rollouts": counts, "attempts": attempts, "lost": lost, "ok": ok}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rollouts", type=int, default=10_000, help="rollouts to run (default 10,000)")
    parser.add_argument("--processes", type=int, default=4, help="runner processes (default 4)")
    parser.add_argument("--slots", type=int, default=64, help="runner slots in all (default 64)")
    parser.add_argument("--agent-sleep", type=float, default=0.01, help="agent's work in s (default 0.01)")
    args = parser.parse_args(argv)
    per_process = max(1, args.slots // args.processes)

    with tempfile.TemporaryDirectory(prefix="boltrl-load-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = spawn_server(Path(tmp) / "boltrl.db", port, log_path=Path(tmp) / "server.log")
        try:
            wait_healthy(url, 60, server)
            t0 = time.perf_counter()
            ids = asyncio.run(_enqueue(url, args.rollouts))
            enqueue_s = time.perf_counter() - t0
            ctx = mp.get_context("spawn")
            go, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
            workers = [
                ctx.Process(target=_worker, args=(url, i, per_process, args.agent_sleep, go, stop, out))
                for i in range(args.processes)
            ]
            for w in workers:
                w.start()
            time.sleep(3.0)  # let every runner process import boltrl before the clock starts
            started = time.perf_counter()
            go.set()
            asyncio.run(_wait_all(url, ids))
            elapsed = time.perf_counter() - started
            stop.set()
            latencies = [x for _ in workers for x in out.get(timeout=60)]
            for w in workers:
                w.join(30)
            peak_mib = _peak_rss_mib(server.pid)
            audit = asyncio.run(_audit(url, args.rollouts))
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    slots = per_process * args.processes
    print(f"boltrl load: {args.rollouts} rollouts, {args.processes} runner processes x {per_process} slots")
    print(f"  ({slots} concurrent), agent sleep {args.agent_sleep * 1000:g} ms, server on SQLite")
    print(f"  enqueue            {enqueue_s:8.2f} s ({args.rollouts / enqueue_s:,.0f} rollouts/s)")
    print(f"  run                {elapsed:8.2f} s")
    print(f"  throughput         {args.rollouts / elapsed:8.1f} rollouts/s")
    print(f"  claim latency p50  {statistics.median(latencies) * 1000:8.1f} ms")
    print(f"  claim latency p99  {_percentile(latencies, 0.99) * 1000:8.1f} ms")
    print(f"  peak server RSS    {peak_mib:8.1f} MiB")
    print(f"  rollouts           {audit['rollouts']}")
    print(f"  attempts           {audit['attempts']}")
    print(f"  lost               {audit['lost']:8d}  ({'OK' if audit['ok'] else 'FAILED'})")
    return 0 if audit["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
