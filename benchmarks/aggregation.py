"""Trajectory aggregation: tokens trained with vs without merging the calls of a multi-turn agent.

    .venv/bin/python benchmarks/aggregation.py                       # tiny-random, then smollm2-135m
    .venv/bin/python benchmarks/aggregation.py --models smollm2-135m --rollouts 16 --turns 3

1. Record. The real server and gateway (in this process, SQLite store, the HF backend serving each
   of `--models`) and a real runner run `--rollouts` rollouts of a multi-turn agent written with the
   plain openai client: it calls the model `--turns` times in one conversation, appending each answer
   and a fake tool result (a user message) before the next call, then rewards the last answer's length.
2. Adapt. The recorded spans of every rollout go through `boltrl.adapters.rollout_transitions` twice,
   with `merge=True` (trajectory aggregation, LightningRL's default) and `merge=False` (one sample per
   call). Printed per mode: transitions, forwarded tokens (prompt + response ids of every sample),
   trainable tokens (response tokens with mask 1, the ones the loss is taken over) and merged calls.
3. Train. `Policy.train_step` with LightningRL's `policy_loss` on each set of samples (advantage +1/-1
   by rollout, `rollout_weights` normalisation), the median of `--steps` steps after a warm-up, on the
   same initial weights (the optimizer step uses a tiny learning rate so the weights barely move).

Both modes train exactly the same response tokens with the same logprobs; merging forwards each shared
prefix once instead of once per turn, so it reads fewer tokens and steps faster. A call merges only
when its prompt ids begin with the previous prompt + response ids, i.e. when the answer, returned to
the agent as text and sent back in the next request, re-tokenizes to the ids that were sampled. Real
text does (SmolLM2: natural words); the random bytes tiny-random emits often do not (a partial UTF-8
token decodes to U+FFFD, which encodes to other ids), so with tiny-random few or no calls merge: the
script counts those cases.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import openai

import boltrl

TOOL_RESULTS = [
    "[tool] 42 rows found.",
    "[tool] status: ok, 3 files.",
    "[tool] error: timeout, retrying.",
    "[tool] done.",
]


@boltrl.rollout
async def multi_turn(task: dict[str, Any], llm: boltrl.LLM) -> float:
    """Calls the model `turns` times in one conversation, each answer followed by a fake tool result."""
    messages: list[Any] = [
        {"role": "system", "content": "You are an agent. Use the tool results to answer."},
        {"role": "user", "content": task["q"]},
    ]
    answer = ""
    async with openai.AsyncOpenAI(base_url=llm.base_url, api_key=llm.api_key) as client:
        for turn in range(int(task["turns"])):
            r = await client.chat.completions.create(model=llm.model, messages=messages, **llm.sampling)
            answer = r.choices[0].message.content or ""
            messages.append({"role": "assistant", "content": answer})
            messages.append({"role": "user", "content": TOOL_RESULTS[turn % len(TOOL_RESULTS)]})
    return max(0.0, 1.0 - len(answer) / 200)


async def record(url: str, args: argparse.Namespace) -> list[str]:
    """Enqueue the rollouts, run them with a runner in this loop, return their ids."""
    from boltrl.config import RunnerConfig
    from boltrl.runner.runner import Runner
    from boltrl.store.client import StoreClient
    from boltrl.types import RolloutCreate

    async with StoreClient(url) as store:
        await store.put_resources(
            {
                "llm": {
                    "base_url": "{server}/gw/{rollout_id}/{attempt_id}/v1",
                    "model": args.model,
                    "sampling": {"temperature": 1.0, "max_tokens": args.max_tokens},
                }
            }
        )
        creates = [
            RolloutCreate(id=f"r{i}", input={"q": f"Task {i}: find the report.", "turns": args.turns})
            for i in range(args.rollouts)
        ]
        ids = [r.id for r in await store.enqueue(creates)]
        config = RunnerConfig(server=url, n=args.concurrency, max_rollouts=len(ids), poll_interval_s=0.05)
        await Runner(store, multi_turn, config=config).run()
        done = await store.wait(ids, 60)
        failed = [r.id for r in done if r.status != "succeeded"]
        if failed or len(done) != len(ids):
            raise SystemExit(f"{len(failed)} rollout(s) failed, {len(ids) - len(done)} unfinished")
        return ids


def adapt(db: Path, ids: list[str], merge: bool) -> list[Any]:
    from boltrl.adapters import rollout_transitions
    from boltrl.store.sqlite import SQLiteStore

    async def read() -> list[Any]:
        store = SQLiteStore(str(db))
        try:
            return [rollout_transitions(i, None, await store.get_spans(i), merge=merge) for i in ids]
        finally:
            await store.close()

    return asyncio.run(read())


def train_time(model: str, adapted: list[Any], steps: int) -> tuple[float, dict[str, Any]]:
    from boltrl.algorithms import LightningRL, policy_loss, rollout_weights
    from boltrl.training import Policy, PolicyConfig, Sample

    policy = Policy(PolicyConfig(model=model, lr=1e-9, seed=0))
    transitions = [
        t.model_copy(update={"advantage": 1.0 if k % 2 else -1.0})
        for k, a in enumerate(adapted)
        for t in a.transitions
    ]
    weights = rollout_weights(transitions)
    samples = [
        Sample.from_transition(t, temperature=t.temperature, weight=w)
        for t, w in zip(transitions, weights, strict=True)
    ]
    loss_fn = functools.partial(policy_loss, config=LightningRL())
    policy.train_step(samples, loss_fn)  # warm-up
    times, metrics = [], {}
    for _ in range(steps):
        metrics = policy.train_step(samples, loss_fn)
        times.append(metrics["train/step_s"])
    return statistics.median(times), metrics


def retokenized(adapted: list[Any]) -> int:
    """Consecutive calls (merge=False) whose prompt extends the previous prompt but not its response:
    the answer came back as text and was re-tokenized into different ids, so they cannot merge."""
    n = 0
    for a in adapted:
        for prev, t in itertools.pairwise(a.transitions):
            head = prev.prompt_ids + prev.response_ids
            if t.prompt_ids[: len(prev.prompt_ids)] == prev.prompt_ids and t.prompt_ids[: len(head)] != head:
                n += 1
    return n


def bench(model: str, args: argparse.Namespace) -> None:
    from boltrl.adapters import AdapterStats
    from boltrl.config import ServerConfig
    from boltrl.inference.hf import HFBackend
    from boltrl.server.thread import serve_in_thread
    from boltrl.store.sqlite import SQLiteStore

    tiny = model == "tiny-random"
    run = argparse.Namespace(**vars(args))
    run.model = model
    run.rollouts = args.rollouts or (32 if tiny else 8)
    run.steps = args.steps or (5 if tiny else 2)
    print(f"\n== {model}: {run.rollouts} rollouts x {run.turns} model calls, max_tokens {run.max_tokens}")
    with tempfile.TemporaryDirectory(prefix="boltrl-agg-") as tmp:
        db = Path(tmp) / "boltrl.db"
        backend = functools.partial(HFBackend, model, max_batch_size=run.concurrency)
        with serve_in_thread(lambda: SQLiteStore(str(db)), ServerConfig(db=str(db)), backend=backend) as live:
            ids = asyncio.run(record(live.url, run))
        results = {}
        for merge in (True, False):
            adapted = adapt(db, ids, merge)
            stats = sum((a.stats for a in adapted[1:]), adapted[0].stats)
            assert isinstance(stats, AdapterStats)
            step_s, metrics = train_time(model, adapted, run.steps)
            results[merge] = (stats, step_s, metrics, adapted)

    print(
        "mode          transitions  merged calls  forwarded tokens  trainable tokens  train_step s tokens/s"
    )
    for merge, (stats, step_s, metrics, _) in results.items():
        name = "merge=True" if merge else "merge=False"
        print(
            f"{name:<14}{stats.n_transitions:>11}{stats.n_merged:>14}{stats.n_tokens:>18}"
            f"{stats.n_trainable_tokens:>18}{step_s:>14.3f}{metrics['train/tokens'] / step_s:>9.0f}"
        )
    (m, m_s, _, _), (u, u_s, _, separate) = results[True], results[False]
    print(
        f"without / with aggregation: forwarded tokens {u.n_tokens / m.n_tokens:.2f}x, "
        f"transitions {u.n_transitions / max(m.n_transitions, 1):.2f}x, train_step time {u_s / m_s:.2f}x; "
        f"trainable tokens {u.n_trainable_tokens} vs {m.n_trainable_tokens}"
    )
    calls = u.n_transitions
    print(
        f"calls merged: {m.n_merged} of the {calls - run.rollouts} that follow another call; "
        f"{retokenized(separate)} could not merge because the answer's text re-tokenized to other ids"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny-random", "smollm2-135m"])
    parser.add_argument("--rollouts", type=int, default=None, help="default: 32 tiny-random, 8 others")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="timed train steps (5 tiny-random, 2 others)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import torch
    from transformers.utils import logging as hf_logging

    from boltrl import models

    hf_logging.disable_progress_bar()
    logging.getLogger("boltrl").setLevel(logging.ERROR)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for model in args.models:
        if model != "tiny-random" and not models.is_prepared(model):
            print(f"\n{model} skipped: run `boltrl models prepare {model}` first")
            continue
        bench(model, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
