"""LightningRL: hierarchical credit assignment, then a single-turn, token-level PPO-clip update.

An agent run is a Markov decision process whose actions are LLM calls. LightningRL (Agent Lightning,
arXiv 2508.03680) trains it with any single-turn RL method by splitting credit in two levels:

1. Episode level. Each rollout i gets a return R_i from its rewards (`credit`): its last reward (the
   paper's rule), their sum, or per-step discounted returns G_t = sum_{k>=t} gamma^(k-t) r_k. The
   return goes to every transition of the rollout (`assign_credit`).
2. Group level. The rollouts of one task form a group; each rollout's advantage is its return against
   the group (`group_advantages`): GRPO (R_i - mean) / (std + eps), RLOO R_i - mean(others), or the
   REINFORCE++ baseline (R_i - group mean) / (batch std + eps). With per-step credit a transition's
   advantage is (G_t - b_i) / s_i with its rollout's baseline b_i and scale s_i.
3. Token level. Every response token of a transition shares its advantage A; the policy maximises
   the clipped surrogate against the behaviour logprobs recorded at sampling time,

       L = - sum_rollouts (1/n_rollouts) (1/n_tokens(rollout)) sum_tokens min(rho A, clip(rho, 1-e, 1+e_hi) A)
       rho = exp(logprob - old_logprob),

   optionally plus kl_coef * k3-KL to the initial policy. Because old_logprob is what the sampling
   policy really assigned, slightly stale (asynchronous) rollouts are corrected by rho.

Deliberately left out: a learned value function (critic) and GAE (group baselines replace them);
token-level or process rewards (rewards attach to transitions, not tokens); dual clip, entropy bonus
and the KL-in-reward form; length penalties. Everything below is a pure function a test checks
against numbers computed by hand; the trainer (`boltrl/training/`) calls them in this order:
`compute_advantages` -> `rollout_weights` -> `policy_loss` per micro-batch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from boltrl.adapters import AdaptedRollout
from boltrl.errors import InvalidInputError
from boltrl.types import Reward, Transition

Credit = Literal["final", "sum", "discounted"]
AdvantageMethod = Literal["grpo", "rloo", "reinforce++"]
NO_SIGNAL_TOL = 1e-9
"""A group whose returns differ by no more than this has no signal: it teaches nothing."""


@dataclass
class LightningRL:
    """The LightningRL algorithm's settings (defaults run on a laptop CPU)."""

    group_size: int = 4
    """Rollouts per task; advantages compare the rollouts of one task."""
    agents: list[str] | None = None
    """Train only the model calls of these agent names; None trains every call."""
    merge: bool = True
    """Trajectory aggregation: merge consecutive calls whose prompts extend each other into one sample."""
    credit: Credit = "final"
    """Rollout return: final (last reward; the paper's rule), sum (all rewards), discounted (per step)."""
    gamma: float = 1.0
    """Discount per transition for credit="discounted"."""
    advantage: AdvantageMethod = "grpo"
    """Group baseline: grpo, rloo (leave-one-out) or reinforce++ (group mean, batch std)."""
    scale_std: bool = True
    """Divide by the std (group std for grpo, batch std for reinforce++); ignored by rloo."""
    adv_eps: float = 1e-6
    """Added to the std before dividing."""
    drop_no_signal: bool = True
    """Leave rollouts of groups with no signal (all returns equal) out of the update."""
    clip_eps: float = 0.2
    """PPO clip range below 1: the ratio is clipped at 1 - clip_eps."""
    clip_eps_high: float | None = None
    """PPO clip range above 1 (asymmetric "clip higher"); None: clip_eps."""
    kl_coef: float = 0.0
    """Weight of the k3 KL penalty to the initial policy; 0 keeps no reference model."""
    lr: float = 1e-5
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this before each optimizer step."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up over this many optimizer steps."""
    ppo_epochs: int = 1
    """Passes over each batch (each pass is one optimizer step)."""
    micro_batch_tokens: int = 4096
    """Token budget of one forward/backward micro-batch (padded prompt + response tokens)."""

    def __post_init__(self) -> None:
        _check(self.group_size >= 1, "group_size", self.group_size, "must be >= 1")
        if self.agents is not None:
            ok = isinstance(self.agents, list | tuple) and all(isinstance(a, str) for a in self.agents)
            _check(ok and len(self.agents) > 0, "agents", self.agents, "must be a non-empty list of names")
            self.agents = list(self.agents)
        _check(self.credit in ("final", "sum", "discounted"), "credit", self.credit, "final|sum|discounted")
        _check(0.0 < self.gamma <= 1.0, "gamma", self.gamma, "must be in (0, 1]")
        ok = self.advantage in ("grpo", "rloo", "reinforce++")
        _check(ok, "advantage", self.advantage, "must be grpo|rloo|reinforce++")
        _check(self.adv_eps >= 0, "adv_eps", self.adv_eps, "must be >= 0")
        _check(0.0 < self.clip_eps < 1.0, "clip_eps", self.clip_eps, "must be in (0, 1)")
        high = self.clip_eps_high
        _check(high is None or high > 0, "clip_eps_high", high, "must be > 0 or None")
        _check(self.kl_coef >= 0, "kl_coef", self.kl_coef, "must be >= 0")
        _check(self.lr > 0, "lr", self.lr, "must be > 0")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        _check(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "must be > 0")
        _check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0")
        _check(self.ppo_epochs >= 1, "ppo_epochs", self.ppo_epochs, "must be >= 1")
        _check(self.micro_batch_tokens >= 1, "micro_batch_tokens", self.micro_batch_tokens, "must be >= 1")

    @property
    def clip_high(self) -> float:
        """The upper clip range in use."""
        return self.clip_eps if self.clip_eps_high is None else self.clip_eps_high


def _check(ok: bool, name: str, value: object, why: str) -> None:
    if not ok:
        raise InvalidInputError(f"LightningRL.{name} {why}, got {value!r}")


# ---------------------------------------------------------------- 1. credit assignment


def step_returns(rewards: Sequence[Reward], n_steps: int, gamma: float) -> list[float]:
    """G_t = sum_{k>=t} gamma^(k-t) r_k for t < n_steps, where r_k sums the rewards with `step == k`.

    A reward without a step, or with one past the end, counts at the last step (a final reward).
    """
    if n_steps <= 0:
        return []
    n = n_steps
    per_step = [0.0] * n
    for r in rewards:
        per_step[n - 1 if r.step is None else min(max(r.step, 0), n - 1)] += r.value
    out = [0.0] * n
    running = 0.0
    for t in range(n - 1, -1, -1):
        running = per_step[t] + gamma * running
        out[t] = running
    return out


def rollout_return(rewards: Sequence[Reward], credit: Credit = "final", gamma: float = 1.0) -> float:
    """A rollout's return: its last reward (`final`), their `sum`, or G_0 (`discounted`). No reward: 0."""
    if not rewards:
        return 0.0
    if credit == "final":
        return float(rewards[-1].value)
    if credit == "sum":
        return float(sum(r.value for r in rewards))
    n_steps = 1 + max((r.step or 0) for r in rewards)
    return step_returns(rewards, n_steps, gamma)[0]


def assign_credit(
    transitions: Sequence[Transition], rewards: Sequence[Reward], config: LightningRL
) -> list[Transition]:
    """Copies of one rollout's transitions with `reward` set: the rollout's return for every transition
    (the paper's rule), or with credit="discounted" each transition's own G_t."""
    if config.credit == "discounted":
        returns = step_returns(rewards, len(transitions), config.gamma)
    else:
        returns = [rollout_return(rewards, config.credit)] * len(transitions)
    return [t.model_copy(update={"reward": g}) for t, g in zip(transitions, returns, strict=True)]


# ---------------------------------------------------------------- 2. group advantages


@dataclass
class AdvantageStats:
    """How `group_advantages` saw the batch."""

    n_rollouts: int = 0
    n_groups: int = 0
    no_signal_groups: int = 0
    """Groups whose returns are all equal (or that have one member): advantage 0, skipped."""
    skipped: set[str] = field(default_factory=set)
    """Rollout ids in groups with no signal."""
    baseline: dict[str, float] = field(default_factory=dict)
    """Per rollout, the b_i subtracted from its return."""
    scale: dict[str, float] = field(default_factory=dict)
    """Per rollout, the s_i its centred return is divided by (1.0 without std scaling)."""
    return_mean: float = 0.0
    return_std: float = 0.0
    adv_mean: float = 0.0
    adv_std: float = 0.0
    adv_abs_max: float = 0.0

    def metrics(self) -> dict[str, float]:
        """`rollout/reward_mean|std` (of returns) and `adv/...` for the step's history row."""
        return {
            "rollout/reward_mean": self.return_mean,
            "rollout/reward_std": self.return_std,
            "adv/groups": float(self.n_groups),
            "adv/no_signal_groups": float(self.no_signal_groups),
            "adv/skipped_rollouts": float(len(self.skipped)),
            "adv/mean": self.adv_mean,
            "adv/std": self.adv_std,
            "adv/abs_max": self.adv_abs_max,
        }


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n - 1 in the denominator, as torch.std); 0 for fewer than 2 values."""
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def group_advantages(
    returns: Mapping[str, float],
    groups: Mapping[str, str | None],
    method: AdvantageMethod = "grpo",
    scale_std: bool = True,
    eps: float = 1e-6,
) -> tuple[dict[str, float], AdvantageStats]:
    """Each rollout's advantage A_i = (R_i - b_i) / s_i against its group, once per rollout.

    `returns` maps rollout id -> R_i; `groups` maps rollout id -> group id (None or missing: a group
    of its own). Std is the sample std (n - 1). Per method:

    - grpo: b_i = group mean; s_i = group std + eps (1 when not `scale_std`, i.e. Dr. GRPO).
    - rloo: b_i = mean of the other members' returns; s_i = 1 (`scale_std` ignored).
    - reinforce++ (REINFORCE++ with baseline, arXiv 2501.03262): b_i = group mean; s_i = std over the
      whole batch of the group-centred returns R_j - b_j (every rollout in `returns`) + eps. The
      paper's global normalisation also subtracts the batch mean of those centred returns, which is 0
      by construction, so it is left out. Without `scale_std`, s_i = 1.

    A group whose returns are all equal (within NO_SIGNAL_TOL) or that has a single member has no
    signal: its rollouts get advantage 0, are listed in `stats.skipped` and counted.
    """
    members: dict[str, list[str]] = defaultdict(list)
    for rid in returns:
        gid = groups.get(rid)
        members[f"g:{gid}" if gid is not None else f"r:{rid}"].append(rid)
    stats = AdvantageStats(n_rollouts=len(returns), n_groups=len(members))
    values = list(returns.values())
    stats.return_mean, stats.return_std = _mean(values), _std(values)

    for rids in members.values():
        rs = [returns[r] for r in rids]
        if len(rs) < 2 or max(rs) - min(rs) <= NO_SIGNAL_TOL:
            stats.no_signal_groups += 1
            stats.skipped.update(rids)
        total, n, m = sum(rs), len(rs), _mean(rs)
        s = _std(rs) + eps if scale_std and method == "grpo" else 1.0
        for rid, r in zip(rids, rs, strict=True):
            stats.baseline[rid] = (total - r) / (n - 1) if method == "rloo" and n > 1 else m
            stats.scale[rid] = s
    if method == "reinforce++" and scale_std:
        s = _std([returns[r] - stats.baseline[r] for r in returns]) + eps
        stats.scale = {rid: s for rid in returns}

    adv = {
        rid: 0.0 if rid in stats.skipped else (r - stats.baseline[rid]) / stats.scale[rid]
        for rid, r in returns.items()
    }
    live = [a for rid, a in adv.items() if rid not in stats.skipped]
    stats.adv_mean, stats.adv_std = _mean(live), _std(live)
    stats.adv_abs_max = max((abs(a) for a in live), default=0.0)
    return adv, stats


def compute_advantages(
    batch: Sequence[AdaptedRollout], config: LightningRL
) -> tuple[list[Transition], AdvantageStats]:
    """Credit and advantages for a batch of adapted rollouts: the transitions to train on, and stats.

    Every rollout counts in its group's baseline, even one with no transitions. With credit="discounted"
    a transition's advantage is (G_t - b_i) / s_i; otherwise every transition gets its rollout's A_i.
    Rollouts of no-signal groups are left out when `config.drop_no_signal` (else kept with A = 0).
    """
    returns = {r.rollout_id: rollout_return(r.rewards, config.credit, config.gamma) for r in batch}
    groups = {r.rollout_id: r.group_id for r in batch}
    adv, stats = group_advantages(returns, groups, config.advantage, config.scale_std, config.adv_eps)
    out: list[Transition] = []
    for r in batch:
        rid = r.rollout_id
        if config.drop_no_signal and rid in stats.skipped:
            continue
        for t in assign_credit(r.transitions, r.rewards, config):
            if rid in stats.skipped:
                a = 0.0
            elif config.credit == "discounted":
                a = (t.reward - stats.baseline[rid]) / stats.scale[rid]
            else:
                a = adv[rid]
            out.append(t.model_copy(update={"advantage": a}))
    return out, stats


# ---------------------------------------------------------------- 3. token-level loss


def rollout_weights(transitions: Sequence[Transition]) -> list[float]:
    """Per transition, 1 / (n_rollouts * trainable tokens of its rollout): pass as `sample_weights`.

    Summing w * loss over every response token of the batch then averages tokens within each rollout
    and rollouts within the batch, so each rollout counts equally whatever its length or number of
    transitions. Because it is a plain weighted sum, the losses of micro-batches add up to the batch
    loss: backward each one and step once.
    """
    tokens: dict[str, int] = defaultdict(int)
    for t in transitions:
        tokens[t.rollout_id] += sum(t.response_mask)
    n = sum(1 for v in tokens.values() if v > 0)
    return [1.0 / (n * tokens[t.rollout_id]) if tokens[t.rollout_id] else 0.0 for t in transitions]


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    sample_weights: torch.Tensor,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-level PPO clip: sum_{b,t} w_b m_bt * -min(rho A_b, clip(rho, 1-e, 1+e_hi) A_b).

    Shapes: logprobs, old_logprobs, mask (B, T) over response positions; advantages (B,) or (B, T);
    sample_weights (B,) (`rollout_weights`). Returns the scalar loss and metrics that are all means
    over this call's masked tokens, so a caller averages them over micro-batches weighted by their
    mask sums: `pg_loss` (the unweighted surrogate -min(...)), `clip_frac` (share of tokens where the
    clipped term is the smaller one, i.e. the gradient is cut), `approx_kl` (k3 estimate of
    KL(old || new), how far the update has moved from the sampling policy) and `ratio_mean`.
    """
    high = clip_eps if clip_eps_high is None else clip_eps_high
    m = mask.to(logprobs.dtype)  # (B, T)
    adv = advantages[:, None] if advantages.dim() == 1 else advantages  # (B, 1) or (B, T)
    log_ratio = (logprobs - old_logprobs) * m  # (B, T); 0 at masked positions, so no overflow there
    ratio = torch.exp(log_ratio)  # (B, T)
    unclipped = ratio * adv  # (B, T)
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + high) * adv  # (B, T)
    per_token = -torch.min(unclipped, clipped)  # (B, T)
    loss = (per_token * m * sample_weights[:, None]).sum()
    with torch.no_grad():
        n = m.sum().clamp(min=1.0)
        metrics = {
            "pg_loss": float((per_token * m).sum() / n),
            "clip_frac": float(((clipped < unclipped).to(m.dtype) * m).sum() / n),
            "approx_kl": float((((ratio - 1.0) - log_ratio) * m).sum() / n),
            "ratio_mean": float((ratio * m).sum() / n),
        }
    return loss, metrics


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref) on sampled tokens: exp(d) - d - 1, d = ref - logprob.

    k3 (Schulman, "Approximating KL divergence", 2020) is unbiased, never negative and lower-variance
    than -d. Shapes: all (B, T); masked positions are 0.
    """
    d = (ref_logprobs - logprobs) * mask.to(logprobs.dtype)  # (B, T)
    return torch.exp(d) - d - 1.0  # (B, T); exactly 0 where d == 0, so masked positions are 0


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    sample_weights: torch.Tensor,
    config: LightningRL,
    ref_logprobs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one micro-batch: PPO clip + kl_coef * KL, both weighted per rollout, so the losses
    of micro-batches add up to the batch loss. Shapes as in `ppo_clip_loss`; `ref_logprobs` (B, T) is
    required when `config.kl_coef > 0` (and, given with kl_coef 0, only reported).

    Metrics (`train/pg_loss`, `train/clip_frac`, `train/approx_kl`, `train/ratio_mean`, `train/kl`)
    are means over this micro-batch's masked tokens: average them weighted by the mask sums. The
    batch loss itself is the sum of the returned losses.
    """
    loss, pg = ppo_clip_loss(
        logprobs, old_logprobs, advantages, mask, sample_weights, config.clip_eps, config.clip_eps_high
    )
    metrics = {f"train/{k}": v for k, v in pg.items()}
    if config.kl_coef > 0 and ref_logprobs is None:
        raise InvalidInputError("ref_logprobs is required when LightningRL.kl_coef > 0")
    if ref_logprobs is not None:
        kl = kl_penalty(logprobs, ref_logprobs, mask)  # (B, T)
        if config.kl_coef > 0:
            loss = loss + config.kl_coef * (kl * sample_weights[:, None]).sum()
        with torch.no_grad():
            metrics["train/kl"] = float(kl.sum() / mask.sum().clamp(min=1))
    return loss, metrics
