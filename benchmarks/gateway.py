"""Gateway overhead and HF batching, side by side in one run.

    .venv/bin/python benchmarks/gateway.py            # full run (about 2 minutes on 2 cores)
    .venv/bin/python benchmarks/gateway.py --quick    # fewer requests, one run per cell

Part 1, the gateway's added cost. Three processes, so none shares an event loop with another:
  - a fast fake OpenAI upstream (raw asyncio HTTP/1.1, one fixed chat completion for every POST);
  - `boltrl serve --backend openai --upstream URL --model x` on a fresh SQLite file, one claimed
    attempt whose gateway URL the load goes to (so every call is also recorded as a span);
  - the load generator (httpx.AsyncClient, keep-alive, C workers each sending requests back to back).
For concurrency 1, 16 and 64 it measures latency p50/p99 and req/s calling the upstream directly and
through the gateway, each the median of 3 runs, and prints the added latency and the ratios.

Part 2, HF batching: the in-process HF backend on `tiny-random`, tokens/s with 1 request at a time
vs 16 concurrent requests (batched by the backend into one decoding loop), median of 3 runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import httpx

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 16, 64)
CHAT_BODY = {
    "model": "x",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 17 * 23? Answer with the number only."},
    ],
    "max_tokens": 16,
    "temperature": 0.7,
}
UPSTREAM_ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "391"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32},
    }
).encode()


# ---------------------------------------------------------------- the fake upstream (own process)


class _UpstreamProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive server: every request with a body gets UPSTREAM_ANSWER."""

    RESPONSE = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(UPSTREAM_ANSWER)).encode()
        + b"\r\n\r\n"
        + UPSTREAM_ANSWER
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            self.transport.write(self.RESPONSE)


def _serve_upstream(port: int, ready: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_UpstreamProtocol, "127.0.0.1", port)
        ready.set()
        await server.serve_forever()

    asyncio.run(main())


# ---------------------------------------------------------------- the load generator (own process)


async def _load(url: str, concurrency: int, total: int) -> dict[str, float]:
    # One single-connection client per worker: httpx's pool checks every connection on every request,
    # which at 64 connections would make the load generator, not the server, the bottleneck.
    body = json.dumps(CHAT_BODY).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer x"}
    latencies: list[float] = []
    errors = 0
    clients = [
        httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=30, trust_env=False)
        for _ in range(concurrency)
    ]
    per_worker = total // concurrency

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        nonlocal errors
        for _ in range(n):
            t = time.perf_counter()
            r = await client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - t)
            errors += r.status_code != 200

    await asyncio.gather(*(worker(c, 3) for c in clients))  # warm connections and the server
    latencies.clear()
    start = time.perf_counter()
    await asyncio.gather(*(worker(c, per_worker) for c in clients))
    wall = time.perf_counter() - start
    for c in clients:
        await c.aclose()
    latencies.sort()
    return {
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "rps": len(latencies) / wall,
        "errors": errors,
    }


def _load_process(url: str, concurrency: int, total: int, out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        out.put(asyncio.run(_load(url, concurrency, total)))
    except BaseException as e:
        out.put({"error": repr(e)})
        raise


def measure(url: str, concurrency: int, total: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=_load_process, args=(url, concurrency, total, out))
    p.start()
    result: dict[str, Any] = out.get(timeout=600)
    p.join()
    if "error" in result:
        raise RuntimeError(f"the load generator failed on {url}: {result['error']}")
    return result


# ---------------------------------------------------------------- part 1


def _free_port() -> int:
    sys.path.insert(0, str(ROOT))
    from boltrl.testing import free_port

    return free_port()


def gateway_benchmark(runs: int, requests: int) -> list[dict[str, Any]]:
    from boltrl.testing import wait_healthy

    ctx = mp.get_context("spawn")
    up_port, gw_port = _free_port(), _free_port()
    ready = ctx.Event()
    upstream = ctx.Process(target=_serve_upstream, args=(up_port, ready), daemon=True)
    upstream.start()
    ready.wait(10)
    tmp = tempfile.mkdtemp(prefix="boltrl-bench-")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BOLTRL_TOKEN": ""}
    cmd = [
        sys.executable, "-m", "boltrl", "serve", "--port", str(gw_port), "--db", f"{tmp}/bench.db",
        "--backend", "openai", "--upstream", f"http://127.0.0.1:{up_port}/v1", "--model", "x",
        "--heartbeat-timeout-s", "86400",
    ]  # fmt: skip
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        base = f"http://127.0.0.1:{gw_port}"
        wait_healthy(base, 30, server)
        with httpx.Client(base_url=base, trust_env=False) as http:
            http.post("/v1/rollouts", json={"rollouts": [{"input": "bench"}]}).raise_for_status()
            claim = http.post("/v1/rollouts/claim", json={"worker_id": "bench"}).json()
        gateway = claim["resources"]["resources"]["llm"]["base_url"] + "/chat/completions"
        direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        for c in CONCURRENCY:
            total = max(requests, 200 * min(c, 4)) if c > 1 else requests // 2
            cell: dict[str, Any] = {"concurrency": c}
            for name, url in (("direct", direct), ("gateway", gateway)):
                results = [measure(url, c, total) for _ in range(runs)]
                assert all(r["errors"] == 0 for r in results), results
                keys = ("p50_ms", "p99_ms", "rps")
                cell[name] = {k: statistics.median(r[k] for r in results) for k in keys}
            rows.append(cell)
            print(f"  concurrency {c:>2}: done", file=sys.stderr)
        with httpx.Client(base_url=base, trust_env=False) as http:
            spans = http.get(f"/v1/rollouts/{claim['rollout']['id']}/spans").json()["spans"]
        print(f"  {len(spans)} model calls recorded on the attempt", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(10)
        upstream.terminate()
        upstream.join(5)
    return rows


# ---------------------------------------------------------------- part 2


def hf_benchmark(runs: int, max_tokens: int = 64) -> dict[str, float]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("BOLTRL_CACHE", str(Path(tempfile.gettempdir()) / "boltrl-bench-models"))
    from boltrl import models
    from boltrl.inference.hf import HFBackend

    backend = HFBackend(models.prepare("tiny-random"), served_name="tiny-random", max_batch_size=16)

    async def tokens_per_s(concurrent: int, rounds: int) -> float:
        async def one(i: int) -> int:
            body = {**CHAT_BODY, "max_tokens": max_tokens, "temperature": 1.0, "seed": i}
            return len((await backend.chat(body)).response_ids)

        await one(0)  # warm up
        start = time.perf_counter()
        produced = 0
        for r in range(rounds):
            produced += sum(await asyncio.gather(*(one(r * concurrent + i) for i in range(concurrent))))
        return produced / (time.perf_counter() - start)

    async def main() -> dict[str, float]:
        single = statistics.median([await tokens_per_s(1, 8) for _ in range(runs)])
        batched = statistics.median([await tokens_per_s(16, 2) for _ in range(runs)])
        await backend.close()
        return {"single": single, "batched": batched}

    return asyncio.run(main())


# ---------------------------------------------------------------- report


def report(rows: list[dict[str, Any]], hf: dict[str, float] | None) -> str:
    lines = [
        "| concurrency | direct p50 ms | gateway p50 ms | added p50 ms | direct p99 ms | gateway p99 ms "
        "| direct req/s | gateway req/s | gateway/direct req/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        d, g = row["direct"], row["gateway"]
        lines.append(
            f"| {row['concurrency']} | {d['p50_ms']:.2f} | {g['p50_ms']:.2f} "
            f"| {g['p50_ms'] - d['p50_ms']:.2f} "
            f"| {d['p99_ms']:.2f} | {g['p99_ms']:.2f} | {d['rps']:.0f} | {g['rps']:.0f} "
            f"| {g['rps'] / d['rps']:.2f} |"
        )
    if hf is not None:
        lines += [
            "",
            "| HF backend, tiny-random | tokens/s |",
            "|---|---:|",
            f"| 1 request at a time | {hf['single']:.0f} |",
            f"| 16 concurrent requests | {hf['batched']:.0f} |",
            f"| batching speed-up | {hf['batched'] / hf['single']:.1f}x |",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests and one run per cell")
    parser.add_argument("--requests", type=int, default=2000, help="requests per run (concurrency > 1)")
    parser.add_argument("--skip-hf", action="store_true", help="only the gateway part")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else 3
    requests = 400 if args.quick else args.requests
    print(f"gateway overhead: {runs} run(s) per cell, {os.cpu_count()} CPUs", file=sys.stderr)
    rows = gateway_benchmark(runs, requests)
    hf = None
    if not args.skip_hf:
        print("HF backend batching (tiny-random)", file=sys.stderr)
        hf = hf_benchmark(runs)
    print(report(rows, hf))
    return 0


if __name__ == "__main__":
    sys.exit(main())
