"""Checkpoints: resume replays the same next step, a crash mid-save loses nothing, HF export loads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from boltrl import models
from boltrl.errors import InvalidInputError, NotFoundError
from boltrl.training import (
    LoraConfig,
    Policy,
    Sample,
    export_pretrained,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from boltrl.training import checkpoint as ckpt

LORA = LoraConfig(r=4, alpha=8, dropout=0.1)  # dropout: the next step depends on the restored RNG


def noisy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    w: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """A policy-gradient loss with random token weights, so resuming must restore the torch RNG too."""
    noise = torch.rand(logprobs.shape)
    return (-(logprobs.exp() / old_logprobs.exp()) * advantages * mask * noise * w[:, None]).sum(), {}


def params(policy: Policy) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in policy.model.named_parameters()}


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_resume_takes_the_same_next_step(
    make_policy: Callable[..., Policy], samples: list[Sample], tmp_path: Path, lora: LoraConfig | None
) -> None:
    torch.manual_seed(0)
    policy = make_policy(lora=lora, seed=0, warmup_steps=5, weight_decay=0.01)
    for _ in range(2):
        policy.train_step(samples, noisy_loss)
    path = save_checkpoint(policy, tmp_path, weights_version=7, trainer_state={"epoch": 1, "seen": [1, 2]})
    reference_metrics = policy.train_step(samples, noisy_loss)  # the step a crash would have lost
    reference = params(policy)

    torch.manual_seed(123)  # a fresh process: another RNG state, fresh adapters, fresh optimizer
    resumed = make_policy(lora=lora, seed=99, warmup_steps=5, weight_decay=0.01)
    info = load_checkpoint(resumed, latest_checkpoint(tmp_path) or tmp_path)
    assert info.path == path and info.step == 2 == resumed.step and info.weights_version == 7
    assert info.trainer_state == {"epoch": 1, "seen": [1, 2]}
    metrics = resumed.train_step(samples, noisy_loss)
    assert metrics["train/lr"] == reference_metrics["train/lr"]  # the warm-up schedule carried on
    assert metrics["train/loss"] == pytest.approx(reference_metrics["train/loss"], abs=1e-6)
    got = params(resumed)
    assert got.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(got[name], reference[name], atol=1e-6, rtol=0)


def test_latest_and_keep_last(
    make_policy: Callable[..., Policy], samples: list[Sample], loss_fn: Any, tmp_path: Path
) -> None:
    assert latest_checkpoint(tmp_path) is None
    policy = make_policy()
    for _ in range(4):
        policy.train_step(samples[:2], loss_fn)
        save_checkpoint(policy, tmp_path, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-00000004"
    save_checkpoint(policy, tmp_path, keep_last=2, trainer_state={"again": True})  # same step: replaced
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and json.loads((latest / "state.json").read_text())["trainer_state"] == {
        "again": True
    }
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000003", "step-00000004"]


def test_a_crash_mid_save_leaves_the_previous_checkpoint(
    make_policy: Callable[..., Policy],
    samples: list[Sample],
    loss_fn: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = make_policy()
    policy.train_step(samples, loss_fn)
    good = save_checkpoint(policy, tmp_path)
    saved = params(policy)
    policy.train_step(samples, loss_fn)

    def crash(_: Path) -> None:
        raise OSError("disk full")  # weights and optimizer are written by now, RNG and state are not

    monkeypatch.setattr(ckpt, "_save_rng", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(policy, tmp_path)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == good
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [good.name]  # the partial dir is gone

    # A process killed mid-save leaves its hidden temporary directory behind: never taken as latest.
    torn = tmp_path / "checkpoints" / ".tmp-step-00000002-deadbeef"
    torn.mkdir()
    (torn / "weights.safetensors").write_bytes(b"\x00" * 10)
    assert latest_checkpoint(tmp_path) == good
    fresh = make_policy()
    assert load_checkpoint(fresh, good).step == 1
    for name, value in params(fresh).items():
        torch.testing.assert_close(value, saved[name], atol=0, rtol=0)
    save_checkpoint(policy, tmp_path)
    assert not torn.exists()  # cleaned up by the next save
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-00000002"


def test_load_refuses_what_does_not_match(make_policy: Callable[..., Policy], tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_checkpoint(make_policy(), tmp_path / "nothing")
    path = save_checkpoint(make_policy(), tmp_path)
    with pytest.raises(InvalidInputError, match="full fine-tune"):
        load_checkpoint(make_policy(lora=LORA), path)
    with pytest.raises(TypeError):
        save_checkpoint(make_policy(), tmp_path, trainer_state={"x": object()})
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [path.name]


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_export_pretrained_loads_as_a_plain_model(
    make_policy: Callable[..., Policy],
    samples: list[Sample],
    loss_fn: Any,
    tmp_path: Path,
    lora: LoraConfig | None,
) -> None:
    policy = make_policy(lora=lora, seed=0, lr=1e-2)
    for _ in range(2):
        policy.train_step(samples, loss_fn)
    out = export_pretrained(policy, tmp_path / "export")
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    model, tokenizer = models.load(out)
    assert model.config.use_cache is True and tokenizer.eos_token == policy.tokenizer.eos_token
    ids = torch.tensor([samples[0].prompt_ids + samples[0].response_ids])
    policy.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=ids).logits, policy.model(input_ids=ids).logits, atol=1e-4, rtol=1e-5
        )
    export_pretrained(policy, out)  # overwriting an export works (the vLLM reload path does it every step)
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
