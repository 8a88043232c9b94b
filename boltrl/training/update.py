"""One LightningRL update on a batch of adapted rollouts: the part `fit` and `fit_offline` share."""

from __future__ import annotations

from typing import Any

from boltrl.adapters import AdaptedRollout
from boltrl.algorithms import LightningRL, compute_advantages, rollout_weights
from boltrl.training.batching import Sample
from boltrl.training.policy import LossFn, Policy


def policy_update(
    policy: Policy, batch: list[AdaptedRollout], algorithm: LightningRL, loss_fn: LossFn
) -> dict[str, Any]:
    """Credit and group advantages over `batch`, then `ppo_epochs` optimizer steps on its transitions
    (each weighted so every rollout counts once). Returns the step's `adv/*`, `rollout/*` and
    `train/*` metrics; `train/skipped` = 1 when no transition carried a signal."""
    transitions, adv = compute_advantages(batch, algorithm)
    row: dict[str, Any] = dict(adv.metrics())
    if not transitions:
        row["train/skipped"] = 1.0
        return row
    weights = rollout_weights(transitions)
    samples = [
        Sample.from_transition(t, temperature=t.temperature, weight=w)
        for t, w in zip(transitions, weights, strict=True)
    ]
    for _ in range(algorithm.ppo_epochs):
        ref = policy.reference_logprobs(samples) if algorithm.kl_coef else None
        row.update(policy.train_step(samples, loss_fn, ref_policy_logprobs=ref))
    return row
