"""Peak memory of one `Policy.train_step`, side by side: the default against smaller micro-batches and
gradient checkpointing.

    .venv/bin/python benchmarks/train_memory.py                   # smollm2-135m, 16 rows of 640 tokens
    .venv/bin/python benchmarks/train_memory.py --model tiny-random --samples 4 --tokens 128

Each setting runs in a fresh process (peak RSS is per process): load the model, build the AdamW state,
one warm-up update and one timed update on `--samples` rows of `--tokens` tokens (`--response`
response tokens each; the default is the rag example's shape: ~600-token prompts, 48-token answers).
Printed per setting: the process's peak RSS (`ru_maxrss`), the RSS after loading (weights only), the
difference (what the update adds: gradients, AdamW state, activations), the update's seconds, and
each against the default.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "default (micro_batch_tokens 4096)": {"micro_batch_tokens": 4096},
    "micro_batch_tokens 1024": {"micro_batch_tokens": 1024},
    "gradient_checkpointing": {"micro_batch_tokens": 4096, "gradient_checkpointing": True},
}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(args: argparse.Namespace, setting: dict[str, Any]) -> dict[str, float]:
    """In this process: one setting's memory and time."""
    import torch
    from train import bench_loss, bench_samples  # benchmarks/train.py: the same rows and loss

    from boltrl.training import Policy, PolicyConfig

    torch.set_num_threads(args.threads)
    policy = Policy(PolicyConfig(model=args.model, lr=1e-6, **setting))
    loaded = _rss_mb()
    samples = bench_samples(policy, args.samples, args.tokens, args.response)
    policy.train_step(samples, bench_loss)  # warm-up: AdamW state, allocator pools
    metrics = policy.train_step(samples, bench_loss)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "loaded_mb": loaded,
        "peak_mb": peak,
        "step_s": metrics["train/step_s"],
        "micro_batches": metrics["train/micro_batches"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=640, help="tokens per row, prompt + response")
    parser.add_argument("--response", type=int, default=48, help="response tokens per row")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this setting, print JSON
    args = parser.parse_args(argv)
    if not 0 < args.response < args.tokens:
        parser.error("--response must be between 1 and --tokens - 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:
        print(json.dumps(measure(args, SETTINGS[args.one])))
        return 0

    print(f"{args.model}: {args.samples} rows x {args.tokens} tokens ({args.response} response), one update")
    print(f"{'setting':<36}{'micro':>6}{'loaded MB':>11}{'peak MB':>9}{'update adds':>13}{'step s':>8}")
    base: dict[str, float] | None = None
    for name in SETTINGS:
        cmd = [sys.executable, __file__, *(argv or sys.argv[1:]), "--one", name]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-2000:]}")
            return 1
        r = json.loads(done.stdout.strip().splitlines()[-1])
        added = r["peak_mb"] - r["loaded_mb"]
        base = base or {**r, "added": added}
        print(
            f"{name:<36}{r['micro_batches']:>6.0f}{r['loaded_mb']:>11.0f}{r['peak_mb']:>9.0f}"
            f"{added:>8.0f} ({added / base['added']:.2f}x)"
            f"{r['step_s']:>8.2f} ({r['step_s'] / base['step_s']:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
