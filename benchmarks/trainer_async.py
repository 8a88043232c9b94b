"""Synchronous vs asynchronous `Trainer.fit`, side by side in one run (A B A B), on a learnable reward.

    .venv/bin/python benchmarks/trainer_async.py                          # tiny-random, then smollm2-135m
    .venv/bin/python benchmarks/trainer_async.py --models tiny-random --steps 8

Each model is trained `--repeats` times in each mode, alternating sync, async, sync, async, with the
same seed, data and settings: the in-process server, HF backend and runner, a plain openai agent
whose reward is brevity (1 - characters / (8 * max_tokens), as in tests/trainer/test_trainer_slow.py),
LightningRL (GRPO). Only
`async_rollouts` differs. In async mode step k+1's rollouts are enqueued before the update on step k,
so the agents generate while the model trains.

Throughput is measured over the training loop (the sum of the steps' `time/step_s`: collecting the
rollouts, the update, publishing; model loading and the final checkpoint excluded): rollouts/s,
steps/min and the median ratio async/sync. The learning comparison prints both modes' reward per step
(mean over the repeats) and the mean of the first and last thirds of the steps; `approx_kl` and
`clip_frac` (means over the steps) show how far the sampling policy was from the one being trained:
about 0 in sync mode (one epoch on fresh rollouts), the staleness in async mode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

import boltrl

TOPICS = ["the ocean", "volcanoes", "honey bees", "the internet", "chess", "bread", "coffee", "gravity"]
QUESTIONS = [
    "What is the capital of France?", "How many legs does a spider have?", "What colour is the sky?",
    "Who wrote Romeo and Juliet?", "What is 12 times 12?", "What is the boiling point of water?",
    "Which planet is closest to the sun?", "What do cows drink?",
]  # fmt: skip
TRAIN = [{"q": f"Tell me about {t}."} for t in TOPICS] + [{"q": q} for q in QUESTIONS]
LR = {"tiny-random": 1e-3, "smollm2-135m": 2e-5}


@boltrl.rollout
async def brevity(task: dict[str, Any], llm: boltrl.LLM) -> float:
    """1 - characters / (8 * max_tokens), with an optional pause standing in for a tool call."""
    async with openai.AsyncOpenAI(base_url=llm.base_url, api_key=llm.api_key) as client:
        r = await client.chat.completions.create(
            model=llm.model, messages=[{"role": "user", "content": task["q"]}], **llm.sampling
        )
    if task.get("tool_s"):
        await asyncio.sleep(task["tool_s"])
    text = r.choices[0].message.content or ""
    return max(0.0, 1.0 - len(text) / (8 * int(llm.sampling.get("max_tokens", 16))))


def run(model: str, mode: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console

    algorithm = boltrl.LightningRL(group_size=args.group_size, lr=args.lr or LR.get(model, 1e-5))
    trainer = boltrl.Trainer(
        model,
        algorithm,
        n_runners=args.batch_size * args.group_size,
        batch_size=args.batch_size,
        max_steps=args.steps,
        output_dir=str(out),
        max_tokens=args.max_tokens,
        val_every=0,
        save_every=0,
        seed=args.seed,
        async_rollouts=mode == "async",
    )
    trainer.console = Console(quiet=True)
    data = [dict(t, tool_s=args.tool_s) for t in TRAIN] if args.tool_s else TRAIN
    start = time.perf_counter()
    result = trainer.fit(brevity, data)
    wall = time.perf_counter() - start
    steps = [row for row in result.history if "rollout/n" in row]
    loop_s = sum(row["time/step_s"] for row in steps)
    rollouts = sum(row["rollout/succeeded"] for row in steps)
    return {
        "model": model,
        "mode": mode,
        "wall_s": wall,
        "loop_s": loop_s,
        "rollouts": rollouts,
        "steps": len(steps),
        "rollouts_per_s": rollouts / loop_s,
        "steps_per_min": 60 * len(steps) / loop_s,
        "rollout_s": statistics.mean(row["time/rollout_s"] for row in steps),
        "train_s": statistics.mean(row.get("time/train_s", 0.0) for row in steps),
        "updates": result.weights_version,
        "stale": sum(row.get("rollout/stale_transitions", 0) for row in steps),
        "approx_kl": statistics.mean(row.get("train/approx_kl", 0.0) for row in steps),
        "clip_frac": statistics.mean(row.get("train/clip_frac", 0.0) for row in steps),
        "rewards": [row.get("rollout/reward_mean", float("nan")) for row in steps],
    }


def report(model: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n== {model}: {rows[0]['steps']} steps per run")
    print(
        "run  mode    loop s   wall s  rollouts/s  steps/min  wait s/step  update s/step  updates  stale"
        "  approx_kl  clip_frac"
    )
    for i, r in enumerate(rows):
        print(
            f"{i + 1:>3}  {r['mode']:<6}{r['loop_s']:>8.1f}{r['wall_s']:>9.1f}{r['rollouts_per_s']:>12.2f}"
            f"{r['steps_per_min']:>11.2f}{r['rollout_s']:>13.2f}{r['train_s']:>15.2f}"
            f"{r['updates']:>9}{r['stale']:>7}{r['approx_kl']:>11.4f}{r['clip_frac']:>11.3f}"
        )
    by = {m: [r for r in rows if r["mode"] == m] for m in ("sync", "async")}
    med = {
        m: {k: statistics.median(r[k] for r in rs) for k in ("loop_s", "rollouts_per_s")}
        for m, rs in by.items()
    }
    sync, asyn = med["sync"], med["async"]
    ratio = asyn["rollouts_per_s"] / sync["rollouts_per_s"]
    print(
        f"median rollouts/s: sync {sync['rollouts_per_s']:.2f}, async {asyn['rollouts_per_s']:.2f}"
        f"; loop time sync {sync['loop_s']:.1f} s, async {asyn['loop_s']:.1f} s"
        f"; async/sync throughput ratio {ratio:.2f}"
    )
    curves = {
        m: [statistics.mean(c) for c in zip(*(r["rewards"] for r in rs), strict=True)] for m, rs in by.items()
    }
    print("reward per step (mean over repeats)")
    for m, c in curves.items():
        third = max(1, len(c) // 3)
        first, last = statistics.mean(c[:third]), statistics.mean(c[-third:])
        values = " ".join(f"{v:.2f}" for v in c)
        print(f"  {m:<6}{values}   first third {first:.3f} -> last third {last:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny-random", "smollm2-135m"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode, alternating A B A B")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--lr", type=float, default=None, help="default: 1e-3 tiny-random, 2e-5 smollm2")
    parser.add_argument(
        "--tool-s", type=float, default=0.0, help="seconds each rollout sleeps after its call"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import torch
    from transformers.utils import logging as hf_logging

    from boltrl import models

    hf_logging.disable_progress_bar()
    logging.getLogger("boltrl").setLevel(logging.ERROR)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print(
        f"batch {args.batch_size} tasks x group {args.group_size} = {args.batch_size * args.group_size}"
        f" rollouts/step, max_tokens {args.max_tokens}, tool pause {args.tool_s} s"
    )
    for model in args.models:
        if model != "tiny-random" and not models.is_prepared(model):
            print(f"\n{model} skipped: run `boltrl models prepare {model}` first")
            continue
        rows = []
        with tempfile.TemporaryDirectory(prefix="boltrl-async-") as tmp:
            for rep in range(args.repeats):
                for mode in ("sync", "async"):
                    rows.append(run(model, mode, Path(tmp) / f"{mode}-{rep}", args))
                    r = rows[-1]
                    print(f"  {model} {mode} run {rep + 1}: {r['loop_s']:.1f} s", flush=True)
        report(model, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
