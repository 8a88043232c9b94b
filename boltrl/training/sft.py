"""Supervised fine-tuning on demonstrations: the warm start before RL when a small model does not yet
make the calls an agent needs (real practice: SFT, then RL).

Demonstrations are chat conversations in OpenAI's fine-tuning format, one JSON object per line:

    {"messages": [{"role": "system", ...}, {"role": "user", ...},
                  {"role": "assistant", "tool_calls": [...]}, {"role": "tool", ...},
                  {"role": "assistant", "content": "Answer: ..."}],
     "tools": [{"type": "function", "function": {...}}]}

Every assistant message is a training target unless it says `"weight": 0` (as in OpenAI's format:
worked examples in the prompt stay context). A target's prompt is rendered exactly as the gateway
renders a request with the messages before it (`ChatPrompter.chat_ids`: the chat template, tools in
the template's own form or boltrl's `<tool_call>` text form), and its tokens are what the model would
generate: the content, one `<tool_call>` line per call, then EOS. So the model learns the very
token sequences the gateway parses back into OpenAI tool calls.

The loss is the mean negative log-likelihood of a target's tokens, each target weighted equally;
`Policy.train_step` does the micro-batching, clipping and AdamW step as in RL. The result is a plain
HF checkpoint directory (`export_pretrained`) that `Trainer(model=PATH)` and `boltrl serve --model
PATH` load.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from boltrl.errors import InvalidInputError
from boltrl.inference.prompts import ChatPrompter
from boltrl.inference.toolcalls import assistant_text
from boltrl.training.batching import Sample
from boltrl.training.checkpoint import export_pretrained
from boltrl.training.metrics import MetricsLog
from boltrl.training.policy import Policy, PolicyConfig


@dataclass
class SFTConfig:
    model: str = "smollm2-135m"
    """Model to start from: registry name, checkpoint directory or hub id."""
    output_dir: str = "runs/sft"
    """Where `metrics.jsonl` and the fine-tuned checkpoint (`OUTPUT_DIR/model`) go."""
    epochs: int = 1
    """Passes over the demonstrations."""
    batch_size: int = 16
    """Targets (assistant messages) per optimizer step."""
    lr: float = 1e-5
    """AdamW learning rate."""
    seed: int = 0
    """Shuffles the targets each epoch."""
    device: str = "cpu"
    """Device to train on."""
    micro_batch_tokens: int = 4096
    """Token budget of one micro-batch (as in RL training)."""


def read_conversations(path: str | Path) -> list[dict[str, Any]]:
    """The demonstrations of a JSONL file; an error names the line that is not a conversation."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            conversation = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{path}:{n}: not JSON: {e}") from None
        if not isinstance(conversation, dict) or not isinstance(conversation.get("messages"), list):
            raise InvalidInputError(f"{path}:{n}: a demonstration is an object with a 'messages' list")
        out.append(conversation)
    return out


def sft_samples(tokenizer: Any, conversations: Sequence[Mapping[str, Any]]) -> list[Sample]:
    """One sample per trained assistant message: the gateway's prompt for the messages before it, and
    the tokens of the message followed by EOS."""
    prompter = ChatPrompter(tokenizer)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InvalidInputError("the tokenizer has no eos_token_id to end a demonstrated answer with")
    samples = []
    for n, conversation in enumerate(conversations):
        messages, tools = list(conversation["messages"]), conversation.get("tools")
        for i, message in enumerate(messages):
            if message.get("role") != "assistant" or message.get("weight", 1) == 0:
                continue
            if i == 0:
                raise InvalidInputError(f"demonstration {n}: an assistant message needs messages before it")
            context = [{k: v for k, v in m.items() if k != "weight"} for m in messages[:i]]
            prompt, _ = prompter.chat_ids({"messages": context, "tools": tools})
            response = [*tokenizer.encode(assistant_text(message), add_special_tokens=False), eos]
            samples.append(Sample(prompt, response, [1] * len(response), [0.0] * len(response)))
    if not samples:
        raise InvalidInputError("the demonstrations hold no assistant message to train on")
    return samples


def nll_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    sample_weights: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Each sample's mean token negative log-likelihood, weighted (a sum over samples, as `LossFn`)."""
    per_sample = -(logprobs * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return (per_sample * sample_weights).sum(), {"nll": per_sample.mean().detach()}


def fit_sft(conversations: Sequence[Mapping[str, Any]], config: SFTConfig | None = None) -> Path:
    """Fine-tune `config.model` on the demonstrations; returns the checkpoint directory."""
    cfg = config or SFTConfig()
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise InvalidInputError("epochs and batch_size must be >= 1")
    policy = Policy(
        PolicyConfig(model=cfg.model, device=cfg.device, lr=cfg.lr, micro_batch_tokens=cfg.micro_batch_tokens)
    )
    samples = sft_samples(policy.tokenizer, conversations)
    metrics = MetricsLog(cfg.output_dir)
    rng = random.Random(cfg.seed)
    step = 0
    try:
        for epoch in range(cfg.epochs):
            order = samples[:]
            rng.shuffle(order)
            for start in range(0, len(order), cfg.batch_size):
                chunk = order[start : start + cfg.batch_size]
                t0 = time.perf_counter()
                row = policy.train_step([replace(s, weight=1.0 / len(chunk)) for s in chunk], nll_loss)
                step += 1
                row.update({"step": step, "sft/epoch": epoch + 1, "time/step_s": time.perf_counter() - t0})
                metrics.log(row)
        return export_pretrained(policy, Path(cfg.output_dir) / "model")
    finally:
        metrics.close()
