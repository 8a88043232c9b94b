"""What the examples' `train.py` scripts share: reading the splits, the command line, and the run that
measures held-out accuracy before and after training.

Held-out accuracy is the trainer's own validation: greedy rollouts of the same agent, through the same
gateway, on the test split (given as `val_data`), before the first step and after the last. The
training reward curve and both accuracies go to `OUTPUT_DIR/metrics.jsonl` and `curves.png`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boltrl


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Mode:
    steps: int
    test: int | None
    """Test items evaluated before and after (None: the whole split)."""
    batch_size: int


@dataclass
class Outcome:
    """What one run measured."""

    before: float
    after: float
    n_test: int
    steps: int
    train_minutes: float
    total_minutes: float
    history: list[dict[str, Any]]
    output_dir: Path

    def line(self, name: str, unit: str, score: str = "accuracy") -> str:
        """One summary line; an accuracy prints as a percentage, any other score as a number."""
        fmt = ".1%" if score == "accuracy" else ".3f"
        return (
            f"{name}: test {score} (greedy, {self.n_test} {unit}) before {self.before:{fmt}} -> after "
            f"{self.after:{fmt}} ({self.after - self.before:+{fmt}}); {self.steps} steps; training "
            f"{self.train_minutes:.1f} min, total {self.total_minutes:.1f} min; curves in "
            f"{self.output_dir / 'curves.png'}"
        )

    def total(self, metric: str) -> float:
        """`metric` summed over the training steps (e.g. `adapter/dropped_agent`)."""
        return sum(float(row.get(metric, 0.0)) for row in self.history if "rollout/n" in row)


def parser(name: str, unit: str, quick: Mode, full: Mode, max_tokens: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=f"Train the {name} agent; print test score before and after.")
    p.add_argument("--quick", action="store_true", help=f"{quick.steps} steps, {quick.test} test {unit}")
    p.add_argument("--model", default="smollm2-135m", help="registry name or checkpoint directory")
    p.add_argument("--steps", type=int, help=f"training steps (default {full.steps}, quick {quick.steps})")
    p.add_argument("--test-size", type=int, help=f"evaluate on this many test {unit}")
    p.add_argument("--batch-size", type=int, help=f"tasks per step (default {full.batch_size})")
    p.add_argument("--output-dir", type=Path, help=f"default runs/{name}-quick or runs/{name} (replaced)")
    p.add_argument("--max-tokens", type=int, default=max_tokens, help="most tokens per model call")
    return p


def train(
    name: str,
    here: Path,
    agent: Any,
    algorithm: boltrl.LightningRL,
    args: argparse.Namespace,
    quick: Mode,
    full: Mode,
    **options: Any,
) -> Outcome:
    """Fit on `here/data/train.jsonl`, validating on the test split before the first step and after
    the last; `options` go to the `Trainer` (temperature, runners, ...)."""
    mode = quick if args.quick else full
    steps = args.steps if args.steps is not None else mode.steps
    test = read_jsonl(here / "data" / "test.jsonl")[: args.test_size or mode.test]
    out = args.output_dir or Path("runs") / (f"{name}-quick" if args.quick else name)
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: the trainer would otherwise resume this one
    trainer = boltrl.Trainer(
        args.model,
        algorithm,
        batch_size=args.batch_size or mode.batch_size,
        max_steps=steps,
        max_tokens=args.max_tokens,
        val_every=max(steps, 1),  # validate before the first step and after the last only
        save_every=0,
        output_dir=str(out),
        **options,
    )
    started = time.perf_counter()
    result = trainer.fit(agent, read_jsonl(here / "data" / "train.jsonl"), test)
    vals = [row for row in result.history if "val/reward_mean" in row]
    train_s = sum(row.get("time/step_s", 0.0) for row in result.history if "rollout/n" in row)
    return Outcome(
        before=vals[0]["val/reward_mean"],
        after=vals[-1]["val/reward_mean"],
        n_test=len(test),
        steps=steps,
        train_minutes=train_s / 60,
        total_minutes=(time.perf_counter() - started) / 60,
        history=result.history,
        output_dir=out,
    )


def validation_by(run_dir: Path, key: str) -> dict[str, dict[int, tuple[float, int]]]:
    """From a run's store: per value of the task field `key` (e.g. `shape`), per validation step,
    the summed final reward and the number of tasks. Read with the store API, the winning attempt's
    spans only, as the trainer's validation reads them."""
    import asyncio

    from boltrl.adapters import rewards
    from boltrl.algorithms import rollout_return
    from boltrl.store import open_store
    from boltrl.training.trainer import winning_spans

    async def read() -> dict[str, dict[int, tuple[float, int]]]:
        store = open_store(str(run_dir / "boltrl.db"))
        table: dict[str, dict[int, tuple[float, int]]] = {}
        try:
            after = None
            while True:
                page = await store.list_rollouts(mode="val", limit=500, after=after)
                for r in page.rollouts:
                    step = int(r.id.rsplit("-v", 1)[1].split("-")[0])  # ids are RUN-v{step}-{i}
                    value = rollout_return(rewards(await winning_spans(store, r)))
                    total, n = table.setdefault(str(r.input[key]), {}).get(step, (0.0, 0))
                    table[str(r.input[key])][step] = (total + value, n + 1)
                if page.next_cursor is None:
                    return table
                after = page.next_cursor
        finally:
            await store.close()

    return asyncio.run(read())


def print_breakdown(run_dir: Path, key: str) -> None:
    """One line per value of `key`: the validation score before and after (first and last step)."""
    table = validation_by(run_dir, key)
    for value, steps in sorted(table.items()):
        first, last = min(steps), max(steps)
        (b, n), (a, _) = steps[first], steps[last]
        print(f"  {key} {value}: before {b:.1f} / {n}, after {a:.1f} / {n}")
