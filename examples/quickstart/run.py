"""`make demo` (until training lands): the whole rollout loop on this machine, end to end.

Starts a boltrl server on a fresh SQLite file, two runner processes with four slots each, enqueues
groups of rollouts of the quickstart agent, waits for them and prints what happened: statuses,
attempts (some fail and are retried), rewards and the spans each rollout left in the store.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from boltrl.config import RunnerConfig
from boltrl.runner.pool import RunnerPool
from boltrl.store.client import StoreClient
from boltrl.testing import free_port, wait_healthy
from boltrl.types import Reward, RolloutCreate

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["2 + 3", "7 * 6", "(9 - 4) * 3", "100 / 4", "2 ** 10", "17 % 5"]
GROUP_SIZE = 4


async def drive(url: str, console: Console) -> None:
    async with StoreClient(url) as store:
        await store.put_resources({"llm": {"base_url": f"{url}/gw", "model": "none"}})
        creates = [
            RolloutCreate(input={"expression": expr}, group_id=f"task-{i}", max_attempts=3)
            for i, expr in enumerate(TASKS)
            for _ in range(GROUP_SIZE)
        ]
        started = time.perf_counter()
        rollouts = await store.enqueue(creates)
        console.print(f"enqueued {len(rollouts)} rollouts ({len(TASKS)} tasks x {GROUP_SIZE})")
        done = await store.wait([r.id for r in rollouts], timeout_s=120)
        elapsed = time.perf_counter() - started

        table = Table(title="rollouts")
        for col in ("rollout", "task", "status", "attempts", "reward", "spans"):
            table.add_column(col)
        rewards: list[float] = []
        for r in done:
            spans = await store.get_spans(r.id)
            finals = [Reward.from_span(s) for s in spans if s.name == "boltrl.reward"]
            final = next((w.value for w in reversed(finals) if w.name == "final"), None)
            if final is not None:
                rewards.append(final)
            attempts = await store.list_attempts(r.id)
            table.add_row(
                r.id,
                str(r.input["expression"]),
                r.status,
                " ".join(a.status for a in attempts),
                "-" if final is None else f"{final:.0f}",
                str(len(spans)),
            )
        console.print(table)
        counts = await store.count_rollouts()
        retried = sum(1 for r in done if r.attempt_count > 1)
        console.print(
            f"{counts['succeeded']} succeeded, {counts['failed']} failed, {retried} needed a retry; "
            f"mean reward {sum(rewards) / max(len(rewards), 1):.2f}; "
            f"{len(done)}/{len(rollouts)} terminal in {elapsed:.1f} s"
        )


def main() -> int:
    console = Console()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "demo.db"
        server = subprocess.Popen(
            [sys.executable, "-m", "boltrl", "serve", "--db", str(db), "--port", str(port)], cwd=ROOT
        )
        try:
            wait_healthy(url, timeout_s=30)
            console.print(f"server on {url}, store {db}")
            config = RunnerConfig(server=url, agent="examples.quickstart.agent:agent", n=4)
            with RunnerPool(config, processes=2):
                asyncio.run(drive(url, console))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
