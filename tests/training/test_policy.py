"""Policy on the tiny random model: logprobs, micro-batching, the update, LoRA, publishing weights."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import pytest
import torch

from boltrl.errors import InvalidInputError
from boltrl.inference.hf import HFBackend
from boltrl.training import LoraConfig, Policy, Sample, collate, pack

LORA = LoraConfig(r=4, alpha=8)


def plain_logprobs(model: Any, s: Sample) -> torch.Tensor:
    """log_softmax(logits / T) of the response tokens from one unpadded forward over prompt+response."""
    ids = torch.tensor([s.prompt_ids + s.response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(s.prompt_ids) - 1 : -1].float()  # (R, V)
    logp = torch.log_softmax(logits / s.temperature, dim=-1)
    return logp.gather(1, torch.tensor(s.response_ids)[:, None])[:, 0]


def snapshot(policy: Policy) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in policy.model.named_parameters()}


def grads(policy: Policy) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}


def test_pack_respects_the_budget_and_sorts_by_length() -> None:
    lengths = [5, 40, 12, 33, 7, 100, 9]
    groups = pack(lengths, budget=80)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert groups[0] == [5]  # longer than the budget: alone
    for g in groups[1:]:
        assert len(g) * max(lengths[i] for i in g) <= 80
        assert [lengths[i] for i in g] == sorted((lengths[i] for i in g), reverse=True)
    with pytest.raises(InvalidInputError):
        pack(lengths, 0)


def test_collate_aligns_targets_with_the_logits_that_predict_them(samples: list[Sample]) -> None:
    batch = collate(samples, [0, 3], pad_id=0)
    for k, i in enumerate([0, 3]):
        s = samples[i]
        r = len(s.response_ids)
        seq = s.prompt_ids + s.response_ids
        assert batch.targets[k, :r].tolist() == s.response_ids
        # the input at the column of logit j, plus one, is the token the logit predicts
        assert [seq[int(c) + 1] for c in batch.target_pos[k, :r]] == s.response_ids
        assert batch.valid[k].sum() == r and batch.mask[k, :r].tolist() == s.response_mask
    assert batch.n_tokens == sum(samples[i].n_inputs for i in (0, 3))


def test_sample_validation() -> None:
    with pytest.raises(InvalidInputError, match="one entry per response token"):
        Sample([1, 2], [3, 4], [1], [0.0, 0.0])
    with pytest.raises(InvalidInputError, match="non-empty"):
        Sample([1], [], [], [])
    assert Sample([1], [2], [1], [0.0], temperature=0).temperature == 1.0  # greedy is recorded at T=1


@pytest.mark.parametrize("budget", [4096, 30])
def test_logprobs_equal_a_plain_forward(
    make_policy: Callable[..., Policy], samples: list[Sample], budget: int
) -> None:
    policy = make_policy(micro_batch_tokens=budget)
    got = policy.logprobs(samples)
    for s, lp in zip(samples, got, strict=True):
        torch.testing.assert_close(lp, plain_logprobs(policy.model, s), atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0])
def test_logprobs_equal_what_the_backend_recorded(
    make_policy: Callable[..., Policy], tiny_dir: Any, temperature: float
) -> None:
    backend = HFBackend(tiny_dir)
    try:
        body = {"prompt": "What is 2 + 3?", "max_tokens": 12, "temperature": temperature, "seed": 5, "n": 3}
        result = asyncio.run(backend.complete(body))
    finally:
        asyncio.run(backend.close())
    samples = [
        Sample(
            result.prompt_ids,
            c.response_ids,
            [1] * len(c.response_ids),
            c.logprobs,
            temperature=c.temperature,
        )
        for c in result.choices
    ]
    policy = make_policy()
    for s, lp in zip(samples, policy.logprobs(samples), strict=True):
        torch.testing.assert_close(lp, torch.tensor(s.old_logprobs), atol=1e-4, rtol=0)


def test_micro_batches_give_the_gradient_of_one_batch(
    make_policy: Callable[..., Policy], samples: list[Sample], loss_fn: Any
) -> None:
    policy = make_policy(micro_batch_tokens=100_000)
    whole = policy.accumulate_gradients(samples, loss_fn)
    expected = grads(policy)
    policy.optimizer.zero_grad(set_to_none=True)
    policy.config.micro_batch_tokens = 30
    split = policy.accumulate_gradients(samples, loss_fn)
    assert whole["train/micro_batches"] == 1 and split["train/micro_batches"] >= 4
    assert split["train/loss"] == pytest.approx(whole["train/loss"], abs=1e-6)
    assert split["train/ratio_mean"] == pytest.approx(whole["train/ratio_mean"], rel=1e-5)
    got = grads(policy)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-5)


def test_train_step_updates_every_weight_and_reports_metrics(
    make_policy: Callable[..., Policy], samples: list[Sample], loss_fn: Any
) -> None:
    policy = make_policy(weight_decay=0.0)
    before = snapshot(policy)
    m = policy.train_step(samples, loss_fn)
    assert policy.step == 1 and m["train/skipped"] == 0
    assert m["train/tokens"] == sum(s.n_inputs for s in samples)
    assert m["train/tokens_per_s"] > 0 and m["train/grad_norm"] > 0 and m["train/lr"] == 1e-3
    assert all(torch.isfinite(torch.tensor(v)) for v in m.values())
    unchanged = [n for n, p in policy.model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []
    assert policy.n_params(trainable=True) == policy.n_params() > 0


def test_lora_trains_only_the_adapters(
    make_policy: Callable[..., Policy], samples: list[Sample], loss_fn: Any
) -> None:
    policy = make_policy(lora=LORA, seed=0)
    before = snapshot(policy)
    for _ in range(2):  # B starts at zero, so A only moves from the second step on
        policy.train_step(samples, loss_fn)
    changed = {n for n, p in policy.model.named_parameters() if not torch.equal(p, before[n])}
    trainable = set(policy.trainable_state_dict())
    assert trainable and all("lora_" in n for n in trainable)
    assert changed == trainable
    assert policy.n_params(trainable=True) < policy.n_params() / 5


def test_gradient_clipping_caps_the_norm_the_optimizer_sees(
    make_policy: Callable[..., Policy], samples: list[Sample], loss_fn: Any
) -> None:
    policy = make_policy(max_grad_norm=0.01)
    seen: list[float] = []

    def spy(*_: Any) -> None:
        seen.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in policy.params]))))

    policy.optimizer.register_step_pre_hook(spy)
    m = policy.train_step(samples, loss_fn)
    assert m["train/grad_norm"] > 0.1  # reported before clipping
    assert seen == [pytest.approx(0.01, rel=1e-4)]


def test_warmup_is_linear_then_constant(
    make_policy: Callable[..., Policy], samples: list[Sample], loss_fn: Any
) -> None:
    policy = make_policy(lr=1e-3, warmup_steps=4)
    lrs = [policy.train_step(samples[:2], loss_fn)["train/lr"] for _ in range(6)]
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_a_non_finite_gradient_skips_the_update(
    make_policy: Callable[..., Policy], samples: list[Sample]
) -> None:
    policy = make_policy()
    before = snapshot(policy)

    def nan_loss(logprobs: torch.Tensor, *_: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        return logprobs.sum() * float("nan"), {}

    m = policy.train_step(samples, nan_loss)
    assert m["train/skipped"] == 1 and policy.step == 0
    assert all(torch.equal(p, before[n]) for n, p in policy.model.named_parameters())


def test_reference_logprobs_stay_at_the_initial_policy(
    make_policy: Callable[..., Policy], samples: list[Sample], loss_fn: Any
) -> None:
    for policy in (make_policy(keep_reference=True), make_policy(lora=LORA, seed=0)):
        initial = policy.logprobs(samples)
        for _ in range(2):
            m = policy.train_step(samples, loss_fn, ref_policy_logprobs=policy.reference_logprobs(samples))
            assert m["train/skipped"] == 0
        moved = policy.logprobs(samples)
        for a, b, ref in zip(initial, moved, policy.reference_logprobs(samples), strict=True):
            torch.testing.assert_close(ref, a, atol=1e-5, rtol=0)
            assert not torch.allclose(a, b, atol=1e-4)
    with pytest.raises(InvalidInputError, match="keep_reference"):
        make_policy().reference_logprobs(samples)
    with pytest.raises(InvalidInputError, match="rows for"):
        make_policy().train_step(samples, loss_fn, ref_policy_logprobs=[[0.0]])


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(
    make_policy: Callable[..., Policy], samples: list[Sample], loss_fn: Any
) -> None:
    for lora in (None, LORA):
        plain = make_policy(lora=lora, seed=1)
        checkpointed = make_policy(lora=lora, seed=1, gradient_checkpointing=True)
        calls: list[str] = []
        for name, policy in (("plain", plain), ("checkpointed", checkpointed)):
            mlp = policy.base_model.get_decoder().layers[0].mlp
            mlp.register_forward_pre_hook(lambda *_, name=name, calls=calls: calls.append(name))
        a = plain.accumulate_gradients(samples, loss_fn)
        b = checkpointed.accumulate_gradients(samples, loss_fn)
        assert calls.count("plain") == 1 and calls.count("checkpointed") == 2  # recomputed in backward
        assert b["train/loss"] == pytest.approx(a["train/loss"], abs=1e-6)
        ga, gb = grads(plain), grads(checkpointed)
        assert ga.keys() == gb.keys() and ga
        for name in ga:
            torch.testing.assert_close(gb[name], ga[name], atol=1e-6, rtol=1e-5)


def backend_logprobs(backend: HFBackend, samples: list[Sample]) -> list[torch.Tensor]:
    return [plain_logprobs(backend.model, s) for s in samples]


@pytest.mark.parametrize("lora", [None, LORA])
def test_published_weights_change_the_backend(
    make_policy: Callable[..., Policy],
    tiny_dir: Any,
    samples: list[Sample],
    loss_fn: Any,
    lora: LoraConfig | None,
) -> None:
    backend = HFBackend(tiny_dir)
    try:
        policy = make_policy(lora=lora, seed=0, lr=1e-2)
        before = backend_logprobs(backend, samples)
        for _ in range(3):
            policy.train_step(samples, loss_fn)
        assert policy.publish(backend) == 3 == backend.weights_version
        after = backend_logprobs(backend, samples)
        assert any(not torch.allclose(a, b, atol=1e-3) for a, b in zip(before, after, strict=True))
        for got, want in zip(after, policy.logprobs(samples), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        body = {"prompt": "What is 2 + 3?", "max_tokens": 6, "temperature": 0}
        result = asyncio.run(backend.complete(body))
        assert result.weights_version == 3
    finally:
        asyncio.run(backend.close())


def test_lora_serving_weights_are_base_plus_scaled_ba(
    make_policy: Callable[..., Policy], samples: list[Sample], loss_fn: Any
) -> None:
    policy = make_policy(lora=LORA, seed=0, lr=1e-2)
    for _ in range(2):
        policy.train_step(samples, loss_fn)
    lp_before = policy.logprobs(samples)
    served = policy.state_dict_for_serving()
    params = dict(policy.model.named_parameters())
    n_checked = 0
    for name, value in served.items():
        assert "lora_" not in name and "base_layer" not in name
        prefix = "base_model.model." + name.removesuffix(".weight")
        a_key, b_key = f"{prefix}.lora_A.default.weight", f"{prefix}.lora_B.default.weight"
        if a_key in params:
            base = params[f"{prefix}.base_layer.weight"]
            expected = base + params[b_key] @ params[a_key] * (LORA.alpha / LORA.r)
            torch.testing.assert_close(value, expected.detach(), atol=1e-6, rtol=1e-6)
            assert not torch.allclose(value, base, atol=1e-6)
            n_checked += 1
    assert n_checked == 2 * len(LORA.target_modules)  # two layers in the tiny model
    for a, b in zip(lp_before, policy.logprobs(samples), strict=True):  # the training copy is untouched
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_lightning_rl_policy_loss_plugs_in(make_policy: Callable[..., Policy], samples: list[Sample]) -> None:
    """The algorithm's loss (PPO clip + KL) through train_step: micro-batches still add up."""
    from boltrl.algorithms import LightningRL, policy_loss

    loss_fn = functools.partial(policy_loss, config=LightningRL(kl_coef=0.1))
    metrics, gradients = [], []
    for budget in (100_000, 30):
        policy = make_policy(lora=LORA, seed=0, micro_batch_tokens=budget)
        metrics.append(policy.accumulate_gradients(samples, loss_fn, policy.reference_logprobs(samples)))
        gradients.append(grads(policy))
    (whole, split), (g_whole, g_split) = metrics, gradients
    assert split["train/micro_batches"] > 1 == whole["train/micro_batches"]
    for key in ("train/loss", "train/pg_loss", "train/clip_frac", "train/kl"):
        assert split[key] == pytest.approx(whole[key], abs=1e-6), key
    assert g_whole.keys() == g_split.keys()
    for name, g in g_whole.items():
        torch.testing.assert_close(g_split[name], g, atol=1e-6, rtol=1e-5)
