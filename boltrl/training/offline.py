"""Train from recorded rollouts, with no agents running: `Trainer(...).fit_offline("runs.jsonl")`.

The records are a `boltrl dump` (production logs, an earlier run). Each succeeded rollout's model
calls (those of its succeeded attempt) become transitions exactly as in `fit`; groups are the
recorded `group_id`s, so advantages are computed within each group as online. The recorded
logprobs are the behaviour policy's: the PPO ratio corrects for the distance between the weights
that produced them and the ones being trained, and its clip bounds each update. Each step takes
`batch_size` groups; `max_steps` bounds the steps, and the records are gone over at most once
unless `epochs` says more. Weights are not published (nothing is serving); checkpoints are written.
"""

from __future__ import annotations

import functools
import itertools
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boltrl.adapters import AdaptedRollout, rollout_transitions
from boltrl.algorithms import policy_loss
from boltrl.dump import read_dump
from boltrl.errors import InvalidInputError
from boltrl.training.checkpoint import save_checkpoint
from boltrl.training.metrics import MetricsLog
from boltrl.training.policy import Policy
from boltrl.training.update import policy_update

if TYPE_CHECKING:
    from boltrl.training.trainer import FitResult, Trainer


def recorded_groups(path: str | Path, agents: list[str] | None, merge: bool) -> list[list[AdaptedRollout]]:
    """The dump's succeeded rollouts, adapted, grouped by `group_id` (no group: a group of its own)."""
    groups: dict[str, list[AdaptedRollout]] = defaultdict(list)
    for rollout, attempts, spans in read_dump(path):
        ok = [a for a in attempts if a.status == "succeeded"]
        if rollout.status != "succeeded" or not ok:
            continue
        mine = [s for s in spans if s.attempt_id in (None, ok[-1].id)]
        adapted = rollout_transitions(rollout.id, rollout.group_id, mine, agents=agents, merge=merge)
        groups[rollout.group_id or rollout.id].append(adapted)
    return list(groups.values())


def fit_offline(trainer: Trainer, records: str | Path, *, epochs: int = 1) -> FitResult:
    from boltrl.training.trainer import FitResult

    cfg, algo = trainer.config, trainer.algorithm
    groups = recorded_groups(records, algo.agents, algo.merge)
    if not groups:
        raise InvalidInputError(f"{records} holds no succeeded rollouts to train on")
    policy = Policy(trainer._policy_config())
    metrics = MetricsLog(cfg.output_dir, tensorboard=cfg.tensorboard)
    loss_fn = functools.partial(policy_loss, config=algo)
    last = None
    try:
        for step, batch in enumerate(_batches(groups, cfg.batch_size, epochs, cfg.seed)):
            if step >= cfg.max_steps:
                break
            t0 = time.perf_counter()
            flat = [r for group in batch for r in group]
            row: dict[str, Any] = {"step": step + 1, "rollout/n": len(flat)}
            row.update(policy_update(policy, flat, algo, loss_fn))
            row["time/step_s"] = time.perf_counter() - t0
            metrics.log(row)
            trainer.console.log(
                f"offline step {step + 1}: reward {row.get('rollout/reward_mean', 0):.3f} "
                f"loss {row.get('train/loss', float('nan')):.4f}"
            )
        last = save_checkpoint(policy, cfg.output_dir, trainer_state={"offline": str(records)})
        metrics.plot()
    finally:
        metrics.close()
    return FitResult(metrics.history, Path(cfg.output_dir), policy.step, last)


def _batches(
    groups: list[list[AdaptedRollout]], size: int, epochs: int, seed: int
) -> Iterator[list[list[AdaptedRollout]]]:
    rng = random.Random(seed)
    for _ in range(epochs):
        order = groups[:]
        rng.shuffle(order)
        it = iter(order)
        while chunk := list(itertools.islice(it, size)):
            yield chunk
