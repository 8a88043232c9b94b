"""Fixtures for the training tests: the tiny random model (prepared once, offline), samples, a loss."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for the hub from tests
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def make_policy(tiny_dir: Path) -> Callable[..., Any]:
    """Build a tiny-random `Policy`; keyword arguments are `PolicyConfig` fields."""
    from boltrl.training import Policy, PolicyConfig

    def make(**fields: Any) -> Policy:
        fields.setdefault("lr", 1e-3)
        return Policy(PolicyConfig(model=str(tiny_dir), **fields))

    return make


def _samples(n: int = 6, seed: int = 0, vocab: int = 500) -> list[Any]:
    """`n` samples of different prompt/response lengths, temperatures, masks and advantages."""
    from boltrl.training import Sample

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        p, r = 5 + (7 * i) % 13, 3 + (5 * i) % 9
        mask = [1] * r
        if r > 4:
            mask[1] = 0  # a tool-output token inside the response: read, not trained
        out.append(
            Sample(
                prompt_ids=torch.randint(0, vocab, (p,), generator=g).tolist(),
                response_ids=torch.randint(0, vocab, (r,), generator=g).tolist(),
                response_mask=mask,
                old_logprobs=(-torch.rand(r, generator=g) * 5).tolist(),
                advantage=1.0 if i % 2 else -0.5,
                temperature=(0.7, 1.0, 1.3)[i % 3],
                weight=1.0 / (n * r),
            )
        )
    return out


@pytest.fixture
def samples() -> list[Any]:
    return _samples()


@pytest.fixture
def make_samples() -> Callable[..., list[Any]]:
    return _samples


def simple_loss(
    logprobs: torch.Tensor,  # (B, T)
    old_logprobs: torch.Tensor,  # (B, T)
    advantages: torch.Tensor,  # (B, T)
    mask: torch.Tensor,  # (B, T)
    sample_weights: torch.Tensor,  # (B,)
    ref_logprobs: torch.Tensor | None = None,  # (B, T)
) -> tuple[torch.Tensor, dict[str, Any]]:
    """A plain importance-weighted policy gradient, summed over samples (weights normalise)."""
    ratio = torch.exp(logprobs - old_logprobs)
    per_token = -ratio * advantages
    if ref_logprobs is not None:
        per_token = per_token + 0.1 * (logprobs - ref_logprobs)
    loss = (per_token * mask * sample_weights[:, None]).sum()
    return loss, {"ratio_mean": (ratio * mask).sum() / mask.sum()}


@pytest.fixture
def loss_fn() -> Callable[..., tuple[torch.Tensor, dict[str, Any]]]:
    return simple_loss
