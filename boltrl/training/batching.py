"""Training samples, token-budget packing and collation into padded tensors.

A `Sample` is one transition as the policy update sees it: prompt and response token ids, which
response tokens are trained (`response_mask`), the behaviour logprobs recorded when it was sampled,
its advantage, the temperature it was sampled at and a weight (the loss normalisation chosen by the
algorithm). `pack` groups samples into micro-batches whose padded size rows * longest row stays under
a token budget; `collate` right-pads one group into a `Batch` of tensors.

Row layout: the model reads `prompt + response[:-1]` (the last token predicts nothing we train), right
padded; the logits at column `len(prompt) - 1 + j` predict response token j. Response tensors are
(B, T) with T the longest response of the group, zero-padded, and `valid` marks real tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

from boltrl.errors import InvalidInputError
from boltrl.types import Transition


@dataclass
class Sample:
    """One transition to train on (see the module docstring)."""

    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]
    old_logprobs: list[float]
    advantage: float = 0.0
    temperature: float = 1.0
    """Temperature the response was sampled at (the behaviour logprobs are log_softmax(logits / T));
    0 (greedy) means 1, as the inference backends record it."""
    weight: float = 1.0
    """Per-sample loss weight, passed to the loss function as `sample_weights`."""

    def __post_init__(self) -> None:
        n = len(self.response_ids)
        if not self.prompt_ids or n == 0:
            raise InvalidInputError("a training sample needs a non-empty prompt_ids and response_ids")
        if len(self.response_mask) != n or len(self.old_logprobs) != n:
            raise InvalidInputError(
                f"response_mask ({len(self.response_mask)}) and old_logprobs ({len(self.old_logprobs)}) "
                f"must have one entry per response token ({n})"
            )
        if self.temperature < 0:
            raise InvalidInputError(f"temperature must be >= 0, got {self.temperature}")
        if self.temperature == 0:
            self.temperature = 1.0

    @classmethod
    def from_transition(cls, t: Transition, *, temperature: float = 1.0, weight: float = 1.0) -> Sample:
        return cls(
            list(t.prompt_ids), list(t.response_ids), list(t.response_mask), list(t.old_logprobs),
            t.advantage, temperature, weight,
        )  # fmt: skip

    @property
    def n_inputs(self) -> int:
        """Tokens the model reads for this sample: prompt + response minus the last token."""
        return len(self.prompt_ids) + len(self.response_ids) - 1


def as_sample(s: Sample | Transition) -> Sample:
    return s if isinstance(s, Sample) else Sample.from_transition(s)


@dataclass
class Batch:
    """One micro-batch as tensors; `rows[i]` is row i's position in the caller's sample list."""

    input_ids: torch.Tensor  # (B, L) prompt + response[:-1], right-padded
    attention_mask: torch.Tensor  # (B, L) 1 on real tokens
    position_ids: torch.Tensor  # (B, L)
    target_pos: torch.Tensor  # (B, T) column of the logits that predict each response token
    targets: torch.Tensor  # (B, T) response token ids, 0 on padding
    valid: torch.Tensor  # (B, T) bool: a real response token
    mask: torch.Tensor  # (B, T) float: response_mask, 0 on padding
    old_logprobs: torch.Tensor  # (B, T)
    advantages: torch.Tensor  # (B, T) the sample's advantage on every token
    temperatures: torch.Tensor  # (B,)
    weights: torch.Tensor  # (B,)
    ref_logprobs: torch.Tensor | None  # (B, T) or None
    rows: list[int]
    n_tokens: int
    """Real (unpadded) tokens the model reads."""

    def to(self, device: torch.device | str) -> Batch:
        moved: dict[str, Any] = {
            f.name: v.to(device) if isinstance(v := getattr(self, f.name), torch.Tensor) else v
            for f in fields(self)
        }
        return Batch(**moved)

    @property
    def n_response_tokens(self) -> int:
        return int(self.valid.sum())


def pack(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Group indices so each group's rows * longest row <= `budget` (a longer row goes alone).

    Rows are taken longest first, so rows of similar length share a group and padding stays small.
    """
    if budget <= 0:
        raise InvalidInputError(f"micro_batch_tokens must be > 0, got {budget}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        # The first row of a group is its longest, so the padded size is rows * lengths[group[0]].
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def collate(
    samples: Sequence[Sample],
    rows: Sequence[int],
    pad_id: int,
    ref_logprobs: Sequence[Sequence[float] | torch.Tensor] | None = None,
) -> Batch:
    """Right-pad `samples[rows]` into a `Batch` (float32 response tensors, on the CPU)."""
    group = [samples[i] for i in rows]
    b = len(group)
    width = max(s.n_inputs for s in group)
    t = max(len(s.response_ids) for s in group)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((b, width), dtype=torch.long)
    target_pos = torch.zeros((b, t), dtype=torch.long)
    targets = torch.zeros((b, t), dtype=torch.long)
    valid = torch.zeros((b, t), dtype=torch.bool)
    mask = torch.zeros((b, t))
    old = torch.zeros((b, t))
    adv = torch.zeros((b, t))
    ref = torch.zeros((b, t)) if ref_logprobs is not None else None
    for k, s in enumerate(group):
        seq = s.prompt_ids + s.response_ids[:-1]
        r, p = len(s.response_ids), len(s.prompt_ids)
        input_ids[k, : len(seq)] = torch.tensor(seq)
        attention_mask[k, : len(seq)] = 1
        target_pos[k, :r] = torch.arange(p - 1, p - 1 + r)
        targets[k, :r] = torch.tensor(s.response_ids)
        valid[k, :r] = True
        mask[k, :r] = torch.tensor(s.response_mask, dtype=torch.float32)
        old[k, :r] = torch.tensor(s.old_logprobs, dtype=torch.float32)
        adv[k, :r] = s.advantage
        if ref is not None and ref_logprobs is not None:
            row = torch.as_tensor(ref_logprobs[rows[k]], dtype=torch.float32)
            if row.numel() != r:
                raise InvalidInputError(f"ref_policy_logprobs[{rows[k]}] has {row.numel()} values, not {r}")
            ref[k, :r] = row
    # Right padding: every row starts at position 0, and the causal mask already keeps real tokens
    # from seeing the pads after them.
    position_ids = torch.arange(width).expand(b, width).clone()
    return Batch(
        input_ids, attention_mask, position_ids, target_pos, targets, valid, mask, old, adv,
        torch.tensor([s.temperature for s in group]), torch.tensor([s.weight for s in group]),
        ref, list(rows), sum(s.n_inputs for s in group),
    )  # fmt: skip
