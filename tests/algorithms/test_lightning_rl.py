"""LightningRL's pure functions against numbers computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

import boltrl.algorithms as alg
from boltrl.adapters import AdaptedRollout, AdapterStats
from boltrl.algorithms import (
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
from boltrl.errors import InvalidInputError
from boltrl.types import Reward, Transition

approx = pytest.approx


def tr(rollout_id: str, index: int = 0, mask: list[int] | None = None) -> Transition:
    m = mask if mask is not None else [1]
    return Transition(
        rollout_id=rollout_id,
        group_id="g",
        index=index,
        prompt_ids=[1],
        response_ids=list(range(len(m))),
        response_mask=m,
        old_logprobs=[0.0] * len(m),
        reward=0.0,
    )


# ---------------------------------------------------------------- config


def test_config_defaults_and_public_name() -> None:
    c = LightningRL()
    assert (c.group_size, c.credit, c.advantage, c.scale_std, c.clip_eps, c.clip_high) == (
        4,
        "final",
        "grpo",
        True,
        0.2,
        0.2,
    )
    assert LightningRL(clip_eps_high=0.28).clip_high == 0.28
    assert alg.LightningRL is LightningRL


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"group_size": 0}, "group_size"),
        ({"agents": []}, "agents"),
        ({"agents": "writer"}, "agents"),
        ({"credit": "last"}, "credit"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.5}, "gamma"),
        ({"advantage": "ppo"}, "advantage"),
        ({"clip_eps": 0.0}, "clip_eps"),
        ({"clip_eps_high": -0.1}, "clip_eps_high"),
        ({"kl_coef": -1.0}, "kl_coef"),
        ({"lr": 0.0}, "lr"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"ppo_epochs": 0}, "ppo_epochs"),
        ({"micro_batch_tokens": 0}, "micro_batch_tokens"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"LightningRL\.{field} "):
        LightningRL(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- credit


REWARDS = [Reward(value=0.5, step=0), Reward(value=1.0, step=2)]


def test_rollout_return_final_sum_discounted() -> None:
    assert rollout_return(REWARDS, "final") == 1.0  # the last reward
    assert rollout_return(REWARDS, "sum") == 1.5  # 0.5 + 1.0
    # per step r = [0.5, 0, 1.0], gamma 0.5: G_0 = 0.5 + 0.5*0 + 0.25*1.0 = 0.75
    assert rollout_return(REWARDS, "discounted", 0.5) == approx(0.75)
    assert rollout_return(REWARDS, "discounted", 1.0) == approx(1.5)  # gamma 1: the sum
    assert rollout_return([], "final") == 0.0


def test_step_returns() -> None:
    # r = [0.5, 0, 1.0], gamma 0.5: G_2 = 1.0; G_1 = 0 + 0.5*1.0 = 0.5; G_0 = 0.5 + 0.5*0.5 = 0.75
    assert step_returns(REWARDS, 3, 0.5) == approx([0.75, 0.5, 1.0])
    # a fourth step after the last reward has G_3 = 0; the others gain nothing
    assert step_returns(REWARDS, 4, 0.5) == approx([0.75, 0.5, 1.0, 0.0])
    # a reward without a step counts at the last step: r = [0, 2.0], gamma 0.9: G = [1.8, 2.0]
    assert step_returns([Reward(value=2.0)], 2, 0.9) == approx([1.8, 2.0])
    assert step_returns(REWARDS, 0, 0.5) == []


def test_assign_credit_gives_every_transition_the_rollout_return() -> None:
    ts = [tr("a", 0), tr("a", 1), tr("a", 2)]
    final = assign_credit(ts, REWARDS, LightningRL(credit="final"))
    assert [t.reward for t in final] == [1.0, 1.0, 1.0]
    assert [t.reward for t in assign_credit(ts, REWARDS, LightningRL(credit="sum"))] == [1.5] * 3
    disc = assign_credit(ts, REWARDS, LightningRL(credit="discounted", gamma=0.5))
    assert [t.reward for t in disc] == approx([0.75, 0.5, 1.0])
    assert [t.reward for t in ts] == [0.0, 0.0, 0.0]  # inputs untouched


# ---------------------------------------------------------------- advantages


GROUPS = {"a": "g1", "b": "g1", "c": "g1", "d": "g2", "e": "g2", "f": None}
RETURNS = {"a": 4.0, "b": 0.0, "c": 2.0, "d": 1.0, "e": 1.0, "f": 3.0}


def test_grpo_with_std_scaling() -> None:
    adv, stats = group_advantages(RETURNS, GROUPS, "grpo", scale_std=True, eps=0.0)
    # g1 = [4, 0, 2]: mean 2, deviations [2, -2, 0], sample std sqrt((4 + 4 + 0) / 2) = 2 -> [1, -1, 0]
    assert [adv["a"], adv["b"], adv["c"]] == approx([1.0, -1.0, 0.0])
    # g2 = [1, 1] has no signal; f is alone in its group: both skipped with advantage 0
    assert adv["d"] == adv["e"] == adv["f"] == 0.0
    assert stats.no_signal_groups == 2 and stats.skipped == {"d", "e", "f"} and stats.n_groups == 3
    m = stats.metrics()
    assert m["adv/no_signal_groups"] == 2.0 and m["adv/skipped_rollouts"] == 3.0
    # returns [4, 0, 2, 1, 1, 3]: mean 11 / 6
    assert m["rollout/reward_mean"] == approx(11 / 6)
    # eps is added to the std: 2 / (2 + 0.5) = 0.8
    adv, _ = group_advantages(RETURNS, GROUPS, "grpo", scale_std=True, eps=0.5)
    assert adv["a"] == approx(0.8)


def test_grpo_without_std_scaling() -> None:
    adv, _ = group_advantages(RETURNS, GROUPS, "grpo", scale_std=False, eps=0.0)
    assert [adv["a"], adv["b"], adv["c"]] == approx([2.0, -2.0, 0.0])  # mean-centred only


def test_rloo() -> None:
    adv, stats = group_advantages(RETURNS, GROUPS, "rloo", scale_std=True, eps=0.0)
    # a: 4 - (0 + 2)/2 = 3; b: 0 - (4 + 2)/2 = -3; c: 2 - (4 + 0)/2 = 0 (std scaling ignored)
    assert [adv["a"], adv["b"], adv["c"]] == approx([3.0, -3.0, 0.0])
    assert stats.baseline["a"] == 1.0 and stats.scale["a"] == 1.0
    assert stats.skipped == {"d", "e", "f"}  # equal returns, and a group of one


def test_reinforce_plus_plus_baseline() -> None:
    returns = {"a": 4.0, "b": 0.0, "c": 2.0, "d": 1.0, "e": 3.0, "x": 5.0, "y": 5.0}
    groups = {"a": "g1", "b": "g1", "c": "g1", "d": "g2", "e": "g2", "x": "g3", "y": "g3"}
    adv, stats = group_advantages(returns, groups, "reinforce++", scale_std=True, eps=0.0)
    # group-centred: g1 [2, -2, 0], g2 [-1, 1], g3 [0, 0] (no signal)
    # batch std over all 7: sum of squares 4 + 4 + 1 + 1 = 10, sample var 10 / 6, std sqrt(5/3)
    s = math.sqrt(5 / 3)
    expected = {"a": 2 / s, "b": -2 / s, "c": 0.0, "d": -1 / s, "e": 1 / s, "x": 0.0, "y": 0.0}
    assert adv == approx(expected)
    assert adv["a"] == approx(1.549193, abs=1e-6)
    assert stats.skipped == {"x", "y"} and stats.no_signal_groups == 1
    unscaled, _ = group_advantages(returns, groups, "reinforce++", scale_std=False, eps=0.0)
    assert unscaled == approx({"a": 2.0, "b": -2.0, "c": 0.0, "d": -1.0, "e": 1.0, "x": 0.0, "y": 0.0})


def test_all_groups_without_signal() -> None:
    adv, stats = group_advantages({"a": 1.0, "b": 1.0}, {"a": "g", "b": "g"}, "grpo")
    assert adv == {"a": 0.0, "b": 0.0} and stats.no_signal_groups == 1
    assert stats.metrics()["adv/abs_max"] == 0.0


def rollout(rid: str, gid: str, rewards: list[Reward], n: int) -> AdaptedRollout:
    ts = [tr(rid, i) for i in range(n)]
    return AdaptedRollout(rid, gid, ts, rewards, [1.0] * n, AdapterStats())


def test_compute_advantages_final_credit_and_no_signal_drop() -> None:
    batch = [
        rollout("a", "g1", [Reward(value=1.0, step=0)], 2),
        rollout("b", "g1", [Reward(value=0.0, step=0)], 1),
        rollout("c", "g1", [], 0),  # no calls, no reward: return 0, still in the baseline
        rollout("d", "g2", [Reward(value=1.0, step=0)], 1),
        rollout("e", "g2", [Reward(value=1.0, step=0)], 1),
    ]
    out, stats = compute_advantages(batch, LightningRL(adv_eps=0.0))
    # g1 = [1, 0, 0]: mean 1/3, sample std sqrt(((2/3)^2 + 2 (1/3)^2) / 2) = sqrt(1/3)
    # a: (2/3) / sqrt(1/3) = 1.154701; b: (-1/3) / sqrt(1/3) = -0.577350
    assert [(t.rollout_id, t.index) for t in out] == [("a", 0), ("a", 1), ("b", 0)]
    assert [t.advantage for t in out] == approx([1.154701, 1.154701, -0.577350], abs=1e-6)
    assert [t.reward for t in out] == [1.0, 1.0, 0.0]
    assert stats.skipped == {"d", "e"}
    kept, _ = compute_advantages(batch, LightningRL(drop_no_signal=False))
    assert [t.advantage for t in kept if t.rollout_id in "de"] == [0.0, 0.0]


def test_compute_advantages_discounted_per_step() -> None:
    batch = [
        rollout("a", "g", REWARDS, 3),  # G = [0.75, 0.5, 1.0] with gamma 0.5
        rollout("b", "g", [Reward(value=0.25, step=0)], 1),  # G = [0.25]
    ]
    out, stats = compute_advantages(batch, LightningRL(credit="discounted", gamma=0.5, adv_eps=0.0))
    # group returns G_0 = [0.75, 0.25]: b = 0.5, s = sample std sqrt(2 * 0.25^2 / 1) = 0.353553
    # a: ([0.75, 0.5, 1.0] - 0.5) / 0.353553 = [0.707107, 0, 1.414214]; b: -0.25 / 0.353553
    assert stats.baseline["a"] == approx(0.5) and stats.scale["a"] == approx(0.353553, abs=1e-6)
    assert [t.advantage for t in out] == approx([0.707107, 0.0, 1.414214, -0.707107], abs=1e-6)


# ---------------------------------------------------------------- loss


def test_rollout_weights_normalise_per_rollout() -> None:
    ts = [tr("a", 0, [1, 1, 0]), tr("a", 1, [1]), tr("b", 0, [1, 1, 1, 1])]
    # 2 rollouts; a has 2 + 1 = 3 trainable tokens, b has 4: w_a = 1/(2*3), w_b = 1/(2*4)
    assert rollout_weights(ts) == approx([1 / 6, 1 / 6, 1 / 8])
    # sum over tokens of w * mask = 1/2 per rollout: the loss is a mean over rollouts
    assert sum(w * sum(t.response_mask) for w, t in zip(rollout_weights(ts), ts, strict=True)) == approx(1.0)


def clip_example() -> tuple[torch.Tensor, ...]:
    """2 rollouts x 3 tokens. Row 0: A = +1, ratios [1.5, 0.5, 1.1]; row 1: A = -2, ratios [0.5, 1.5, 2.0],
    last token masked. Rollout 0 has 3 tokens, rollout 1 has 2: weights [1/(2*3), 1/(2*2)]."""
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.3, -0.7]], dtype=torch.float64)
    ratios = torch.tensor([[1.5, 0.5, 1.1], [0.5, 1.5, 2.0]], dtype=torch.float64)
    logprobs = (old + ratios.log()).requires_grad_(True)
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    weights = torch.tensor([1 / 6, 1 / 4], dtype=torch.float64)
    return logprobs, old, adv, mask, weights


def test_ppo_clip_loss_hand_computed() -> None:
    logprobs, old, adv, mask, weights = clip_example()
    loss, m = ppo_clip_loss(logprobs, old, adv, mask, weights, clip_eps=0.2, clip_eps_high=0.3)
    # clip range [0.8, 1.3]. Row 0 (A=+1): min(1.5, 1.3) = 1.3 (clipped), min(0.5, 0.8) = 0.5, 1.1
    # Row 1 (A=-2): min(-1.0, 0.8*-2=-1.6) = -1.6 (clipped), min(-3.0, 1.3*-2=-2.6) = -3.0
    # loss = -(1.3 + 0.5 + 1.1)/6 + (1.6 + 3.0)/4 = -0.483333 + 1.15 = 0.666667
    assert loss.item() == approx(2 / 3)
    # pg_loss is the unweighted token mean: (-1.3 - 0.5 - 1.1 + 1.6 + 3.0) / 5 = 0.34
    assert m["pg_loss"] == approx(0.34)
    assert m["clip_frac"] == approx(2 / 5)  # 2 of the 5 unmasked tokens
    assert m["ratio_mean"] == approx((1.5 + 0.5 + 1.1 + 0.5 + 1.5) / 5)  # 1.02
    # k3 of (r - 1) - ln r over the 5 tokens: 0.094535 + 0.193147 + 0.004690 + 0.193147 + 0.094535
    assert m["approx_kl"] == approx(0.580054 / 5, abs=1e-6)
    assert set(m) == {"pg_loss", "clip_frac", "approx_kl", "ratio_mean"}
    loss.backward()
    assert logprobs.grad is not None
    # d/dlogprob of -w A rho = -w A rho where not clipped, 0 where clipped or masked:
    # row 0: [0, -(1/6)(0.5), -(1/6)(1.1)]; row 1: [0, -(1/4)(-2)(1.5), 0]
    expected = torch.tensor([[0.0, -0.5 / 6, -1.1 / 6], [0.0, 0.75, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(logprobs.grad, expected)


def test_ppo_clip_loss_symmetric_clip_and_micro_batches_add_up() -> None:
    logprobs, old, adv, mask, weights = clip_example()
    loss, _ = ppo_clip_loss(logprobs, old, adv, mask, weights, clip_eps=0.2)
    # clip range [0.8, 1.2]: row 0 -> min(1.5, 1.2) = 1.2 (clipped), 0.5, 1.1
    # row 1 -> min(-1.0, -1.6) = -1.6 (clipped), min(-3.0, 1.2*-2 = -2.4) = -3.0
    # loss = -(1.2 + 0.5 + 1.1)/6 + (1.6 + 3.0)/4 = -0.466667 + 1.15 = 0.683333
    assert loss.item() == approx(0.683333, abs=1e-6)
    parts = [
        ppo_clip_loss(
            logprobs[i : i + 1], old[i : i + 1], adv[i : i + 1], mask[i : i + 1], weights[i : i + 1]
        )[0]
        for i in range(2)
    ]
    assert sum(p.item() for p in parts) == approx(loss.item())  # micro-batch losses sum to the batch loss


def test_ppo_clip_loss_at_ratio_one_is_minus_weighted_advantage() -> None:
    lp = torch.zeros(2, 3)
    adv = torch.tensor([[0.5, 0.5, 0.5], [-1.0, -1.0, -1.0]])  # token-level (B, T) advantages work too
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss, m = ppo_clip_loss(lp, lp, adv, mask, torch.tensor([0.25, 0.5]))
    # -(0.25 * 2 * 0.5) - (0.5 * 1 * -1) = -0.25 + 0.5 = 0.25; no clipping, no KL
    assert loss.item() == approx(0.25)
    assert m["clip_frac"] == 0.0 and m["approx_kl"] == 0.0 and m["ratio_mean"] == 1.0


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_one_sgd_step_moves_the_sampled_tokens_logprob_with_the_advantage(sign: float) -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 5, requires_grad=True)  # (B, T, V)
    tokens = torch.tensor([[1, 3, 0]])  # (B, T) the sampled tokens

    def sampled_logprobs() -> torch.Tensor:
        return torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]  # (B, T)

    before = sampled_logprobs().detach()
    mask = torch.ones(1, 3)
    loss, _ = ppo_clip_loss(sampled_logprobs(), before, torch.tensor([sign]), mask, torch.tensor([1 / 3]))
    loss.backward()
    with torch.no_grad():
        assert logits.grad is not None
        logits -= 0.5 * logits.grad
    after = sampled_logprobs().detach()
    assert bool(((after - before) * sign > 0).all())


def test_kl_penalty_k3_values() -> None:
    lp = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    ref = torch.log(torch.tensor([[0.25, 1.0, 0.5, 0.1]]))
    mask = torch.tensor([[1, 1, 1, 0]])
    kl = kl_penalty(lp, ref, mask)
    # d = ref - lp: ln 0.5 -> 0.5 + 0.693147 - 1 = 0.193147; ln 2 -> 2 - 0.693147 - 1 = 0.306853;
    # d = 0 -> 0; masked -> 0
    torch.testing.assert_close(kl, torch.tensor([[0.193147, 0.306853, 0.0, 0.0]]), atol=1e-6, rtol=0)


def test_policy_loss_adds_weighted_kl() -> None:
    logprobs, old, adv, mask, weights = clip_example()
    ref = old.clone()
    config = LightningRL(clip_eps=0.2, clip_eps_high=0.3, kl_coef=0.1)
    loss, m = policy_loss(logprobs, old, adv, mask, weights, config, ref_logprobs=ref)
    # d = ref - lp = -ln(ratio): k3 = 1/r + ln r - 1 for r = 1.5, 0.5, 1.1 | 0.5, 1.5
    k3 = {r: 1 / r + math.log(r) - 1 for r in (1.5, 0.5, 1.1)}
    # weighted like the PPO term (1/6 per token of rollout 0, 1/4 per token of rollout 1)
    kl = (k3[1.5] + k3[0.5] + k3[1.1]) / 6 + (k3[0.5] + k3[1.5]) / 4
    assert loss.item() == approx(2 / 3 + 0.1 * kl)
    # the metric is the token mean over the 5 masked tokens
    assert m["train/kl"] == approx((2 * k3[1.5] + 2 * k3[0.5] + k3[1.1]) / 5)
    assert m["train/pg_loss"] == approx(0.34) and m["train/clip_frac"] == approx(0.4)
    with pytest.raises(InvalidInputError, match="ref_logprobs"):
        policy_loss(logprobs, old, adv, mask, weights, config)
    no_ref_loss, no_kl = policy_loss(logprobs, old, adv, mask, weights, LightningRL(clip_eps_high=0.3))
    assert "train/kl" not in no_kl and no_ref_loss.item() == approx(2 / 3)
    # a reference with kl_coef 0 is reported, not added
    watch_loss, watched = policy_loss(
        logprobs, old, adv, mask, weights, LightningRL(clip_eps_high=0.3), ref_logprobs=ref
    )
    assert watch_loss.item() == approx(2 / 3) and watched["train/kl"] == approx(m["train/kl"])
