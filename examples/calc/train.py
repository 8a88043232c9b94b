"""Train the calc agent with LightningRL and measure held-out accuracy before and after.

    python examples/calc/train.py --quick      # a few minutes: 50 test problems, a few steps
    python examples/calc/train.py              # the whole test split before and after, ~25 minutes

Held-out accuracy is the trainer's own validation: greedy rollouts of the same agent, through the
same gateway, on the test split (given as `val_data`), before the first step and after the last.
The training reward curve and both accuracies go to `OUTPUT_DIR/metrics.jsonl` and `curves.png`.
`boltrl train examples/calc/config.yaml` runs the same training from a config file (validating on
the val split instead).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # `python examples/calc/train.py` from a checkout

import boltrl  # noqa: E402
from examples.calc.agent import agent  # noqa: E402

MODES = {
    # steps, test problems evaluated (None: all), tasks per step
    "quick": {"max_steps": 3, "test": 50, "batch_size": 8},
    "full": {"max_steps": 16, "test": None, "batch_size": 8},
}


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the calc agent; print test accuracy before/after.")
    parser.add_argument("--quick", action="store_true", help="a few minutes instead of ~25")
    parser.add_argument("--model", default="smollm2-135m", help="registry name or checkpoint directory")
    parser.add_argument("--steps", type=int, help="override the number of training steps")
    parser.add_argument("--test-size", type=int, help="evaluate on this many test problems")
    parser.add_argument("--output-dir", type=Path, help="default runs/calc-quick or runs/calc (replaced)")
    parser.add_argument("--max-tokens", type=int, default=64, help="most tokens per model call")
    args = parser.parse_args(argv)

    mode = MODES["quick" if args.quick else "full"]
    steps = args.steps if args.steps is not None else int(mode["max_steps"])  # type: ignore[call-overload]
    size = args.test_size or mode["test"]
    test = read_jsonl(HERE / "data" / "test.jsonl")[:size]  # type: ignore[misc]
    out = args.output_dir or Path("runs") / ("calc-quick" if args.quick else "calc")
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: the trainer would otherwise resume this one

    trainer = boltrl.Trainer(
        args.model,
        boltrl.LightningRL(group_size=4, lr=1e-5),
        batch_size=mode["batch_size"],
        max_steps=steps,
        n_runners=16,
        max_batch_size=16,
        temperature=0.7,  # at 1.0 SmolLM2 rarely solves one: groups with no signal
        max_tokens=args.max_tokens,
        val_every=max(steps, 1),  # validate before the first step and after the last only
        save_every=0,
        output_dir=str(out),
    )
    started = time.perf_counter()
    result = trainer.fit(agent, read_jsonl(HERE / "data" / "train.jsonl"), test)
    minutes = (time.perf_counter() - started) / 60
    vals = [row for row in result.history if "val/reward_mean" in row]
    before, after = vals[0]["val/reward_mean"], vals[-1]["val/reward_mean"]
    train_s = sum(row.get("time/step_s", 0.0) for row in result.history)
    print(
        f"calc: test accuracy (greedy, {len(test)} problems) before {before:.1%} -> after {after:.1%} "
        f"({after - before:+.1%}); {steps} steps; training {train_s / 60:.1f} min, "
        f"total {minutes:.1f} min; curves in {out / 'curves.png'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
