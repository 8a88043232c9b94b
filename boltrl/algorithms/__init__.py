"""RL algorithms over adapted rollouts. LightningRL is the one built; see `lightning_rl.py`."""

from __future__ import annotations

from boltrl.algorithms.lightning_rl import (
    AdvantageStats,
    LightningRL,
    assign_credit,
    compute_advantages,
    group_advantages,
    kl_penalty,
    policy_loss,
    ppo_clip_loss,
    rollout_return,
    rollout_weights,
    step_returns,
)

__all__ = [
    "AdvantageStats",
    "LightningRL",
    "assign_credit",
    "compute_advantages",
    "group_advantages",
    "kl_penalty",
    "policy_loss",
    "ppo_clip_loss",
    "rollout_return",
    "rollout_weights",
    "step_returns",
]
