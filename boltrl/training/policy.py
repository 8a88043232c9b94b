"""The trained policy: an HF causal LM, its response-token logprobs and one optimizer step at a time.

`token_logprobs` runs the decoder once over right-padded `prompt + response` rows and applies the LM
head only at the columns that predict response tokens, so a long prompt costs no (B, L, V) logits.
Each row's logprobs are `log_softmax(logits / T)` of the response tokens, with T the temperature the
sample was drawn at: exactly what the inference backends record as behaviour logprobs.

`train_step` is one AdamW update over the whole batch: samples are packed into micro-batches under a
token budget (longest first, so rows of similar length share a micro-batch), each micro-batch's loss
is back-propagated and the gradients accumulate; then the gradient norm is clipped and the optimizer
steps once. The loss function is the algorithm's (`LossFn`); for the micro-batches to add up to the
full batch it must be a sum over samples, normalisation carried by `sample_weights`.

LoRA (peft) trains adapters only; the reference policy for a KL term is then the same model with its
adapters disabled. For a full fine-tune, `keep_reference=True` keeps a frozen copy of the initial
weights. `state_dict_for_serving` returns full weights under the base model's names (LoRA merged
into a copy, the training model untouched) for `HFBackend.load_weights`.

Deliberately left out: mixed-precision autocast (the model trains in its own dtype, logits in float32),
sequence packing of several samples into one row, and LR schedules beyond warm-up then constant.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from boltrl import models
from boltrl.errors import InvalidInputError
from boltrl.training.batching import Batch, Sample, as_sample, collate, pack
from boltrl.types import Transition

LossFn = Callable[..., tuple[torch.Tensor, Mapping[str, Any]]]
"""`loss_fn(logprobs, old_logprobs, advantages, mask, sample_weights[, ref_logprobs=]) -> (loss, metrics)`.

Tensors are (B, T) but `sample_weights` (B,); `ref_logprobs=` (B, T) is passed only when reference
logprobs were given to `train_step`. The loss must be a sum over samples (see the module docstring);
metrics are averaged over micro-batches weighted by their response tokens."""

SampleLike = Sample | Transition


@dataclass
class LoraConfig:
    r: int = 16
    """Rank of the adapter matrices."""
    alpha: int = 32
    """Scale numerator: the update is B @ A * alpha / r."""
    dropout: float = 0.0
    """Dropout on the adapter input; 0 keeps the new/old logprob ratio exactly 1 at the first epoch."""
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    """Names of the linear layers that get adapters (Llama/Qwen/Mistral naming)."""


@dataclass
class PolicyConfig:
    model: str = "smollm2-135m"
    """Registry name (smollm2-135m, tiny-random), local checkpoint directory or hub id."""
    device: str = "cpu"
    """Device to train on (cpu, cuda, cuda:1, mps)."""
    dtype: str = "float32"
    """Parameter dtype (float32, bfloat16, float16); logprobs are always computed in float32."""
    lr: float = 1e-5
    """AdamW learning rate after warm-up."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this; None: no clipping (the norm is still reported)."""
    warmup_steps: int = 0
    """Linear LR warm-up over this many optimizer steps, then constant."""
    micro_batch_tokens: int = 4096
    """Token budget of one micro-batch: rows * longest row (padding included)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    lora: LoraConfig | None = None
    """Train LoRA adapters instead of every weight."""
    keep_reference: bool = False
    """Full fine-tune only: keep a frozen copy of the initial weights for `reference_logprobs`."""
    fused_adamw: bool | None = None
    """Use torch's fused AdamW kernel; None: torch's default (foreach)."""
    seed: int | None = None
    """Seed torch before building LoRA adapters (their A matrices are random)."""


@dataclass
class _Accum:
    loss: float = 0.0
    tokens: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, metrics: Mapping[str, Any], weight: float) -> None:
        for k, v in metrics.items():
            value = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
            self.sums[k] = self.sums.get(k, 0.0) + value * weight


class Policy:
    """An HF causal LM being trained (see the module docstring)."""

    def __init__(
        self, config: PolicyConfig | None = None, *, model: Any = None, tokenizer: Any = None
    ) -> None:
        self.config = cfg = config or PolicyConfig()
        if model is None or tokenizer is None:
            model, tokenizer = models.load(cfg.model, device=cfg.device, dtype=cfg.dtype)
        self.tokenizer = tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad or 0)
        self.device = next(model.parameters()).device
        model.config.use_cache = False
        self.reference: Any = None
        if cfg.keep_reference and cfg.lora is None:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        if cfg.gradient_checkpointing:
            _enable_checkpointing(model)
        if cfg.lora is not None:
            model = _wrap_lora(model, cfg.lora, cfg.seed)
        self.model = model.train()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=cfg.fused_adamw
        )
        warmup = max(0, cfg.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )
        self.step = 0
        """Optimizer steps taken (restored from a checkpoint)."""

    # ------------------------------------------------------------------ model access

    @property
    def is_lora(self) -> bool:
        return self.config.lora is not None

    @property
    def base_model(self) -> Any:
        """The transformers model (for LoRA: with its adapter layers injected)."""
        return self.model.get_base_model() if self.is_lora else self.model

    def n_params(self, trainable: bool = False) -> int:
        """Parameters of the model (tied weights once); `trainable=True`: only those trained."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad or not trainable)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The parameters the optimizer updates, by name (for LoRA: the adapters only)."""
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    # ------------------------------------------------------------------ logprobs

    def token_logprobs(self, batch: Batch, model: Any = None) -> torch.Tensor:
        """(B, T) float32 logprobs of `batch`'s response tokens, 0 on padding; differentiable."""
        lm = self.base_model if model is None else model
        batch = batch.to(self.device)
        out = lm.get_decoder()(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
        )
        hidden = out.last_hidden_state  # (B, L, H)
        index = batch.target_pos[..., None].expand(-1, -1, hidden.shape[-1])  # (B, T, H)
        logits = lm.get_output_embeddings()(hidden.gather(1, index)).float()  # (B, T, V)
        cap = getattr(lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        logits = logits / batch.temperatures.to(logits)[:, None, None]
        logp = torch.log_softmax(logits, dim=-1).gather(-1, batch.targets[..., None]).squeeze(-1)  # (B, T)
        return logp.masked_fill(~batch.valid, 0.0)

    def logprobs(self, samples: Sequence[SampleLike]) -> list[torch.Tensor]:
        """The current policy's response logprobs per sample (no gradient, eval mode, on the CPU)."""
        return self._logprobs_nograd(samples, None)

    def reference_logprobs(self, samples: Sequence[SampleLike]) -> list[torch.Tensor]:
        """Response logprobs per sample under the initial policy, for a KL term.

        LoRA: the model with its adapters disabled (no extra memory). Full fine-tune: the frozen copy
        kept by `keep_reference=True`.
        """
        if self.is_lora:
            with self.model.disable_adapter():
                return self._logprobs_nograd(samples, None)
        if self.reference is None:
            raise InvalidInputError(
                "reference_logprobs needs the initial weights: set PolicyConfig.keep_reference=True "
                "(full fine-tune) or train with LoRA"
            )
        return self._logprobs_nograd(samples, self.reference)

    def _logprobs_nograd(self, samples: Sequence[SampleLike], model: Any) -> list[torch.Tensor]:
        items = [as_sample(s) for s in samples]
        result: list[torch.Tensor] = [torch.empty(0)] * len(items)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for rows in pack([s.n_inputs for s in items], self.config.micro_batch_tokens):
                    batch = collate(items, rows, self.pad_id)
                    logp = self.token_logprobs(batch, model).cpu()
                    for k, i in enumerate(rows):
                        result[i] = logp[k, : len(items[i].response_ids)]
        finally:
            self.model.train(was_training)
        return result

    # ------------------------------------------------------------------ the update

    def micro_batches(
        self,
        samples: Sequence[SampleLike],
        ref_policy_logprobs: Sequence[Sequence[float] | torch.Tensor] | None = None,
    ) -> Iterator[Batch]:
        """The micro-batches `train_step` runs, in order (packed under `micro_batch_tokens`)."""
        items = [as_sample(s) for s in samples]
        if ref_policy_logprobs is not None and len(ref_policy_logprobs) != len(items):
            raise InvalidInputError(
                f"ref_policy_logprobs has {len(ref_policy_logprobs)} rows for {len(items)} samples"
            )
        for rows in pack([s.n_inputs for s in items], self.config.micro_batch_tokens):
            yield collate(items, rows, self.pad_id, ref_policy_logprobs)

    def accumulate_gradients(
        self,
        samples: Sequence[SampleLike],
        loss_fn: LossFn,
        ref_policy_logprobs: Sequence[Sequence[float] | torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """Forward and backward every micro-batch, adding into `.grad`; no optimizer step."""
        if not samples:
            raise InvalidInputError("train_step needs at least one sample")
        acc = _Accum()
        n_micro = padded = 0
        for batch in self.micro_batches(samples, ref_policy_logprobs):
            batch = batch.to(self.device)
            logprobs = self.token_logprobs(batch)  # (B, T)
            args = (logprobs, batch.old_logprobs, batch.advantages, batch.mask, batch.weights)
            if batch.ref_logprobs is None:
                loss, metrics = loss_fn(*args)
            else:
                loss, metrics = loss_fn(*args, ref_logprobs=batch.ref_logprobs)
            loss.backward()
            n_resp = float(batch.mask.sum())
            acc.loss += float(loss.detach())
            acc.tokens += batch.n_tokens
            acc.add(metrics, n_resp)
            n_micro += 1
            padded += batch.input_ids.numel()
            acc.sums["_resp"] = acc.sums.get("_resp", 0.0) + n_resp
        resp = acc.sums.pop("_resp") or 1.0
        out = {k if "/" in k else f"train/{k}": v / resp for k, v in acc.sums.items()}
        out.update({
            "train/loss": acc.loss,
            "train/tokens": acc.tokens,
            "train/response_tokens": resp,
            "train/micro_batches": float(n_micro),
            "train/padding_frac": 1.0 - acc.tokens / max(padded, 1),
        })  # fmt: skip
        return out

    def train_step(
        self,
        samples: Sequence[SampleLike],
        loss_fn: LossFn,
        *,
        ref_policy_logprobs: Sequence[Sequence[float] | torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """One optimizer update over all `samples`; returns `train/*` metrics.

        A non-finite gradient norm skips the update (reported as `train/skipped` = 1) and leaves the
        step count and the LR schedule where they were.
        """
        start = time.perf_counter()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        metrics = self.accumulate_gradients(samples, loss_fn, ref_policy_logprobs)
        max_norm = self.config.max_grad_norm or math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        lr = float(self.optimizer.param_groups[0]["lr"])
        skipped = not math.isfinite(grad_norm)
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        metrics.update({
            "train/grad_norm": grad_norm,
            "train/lr": lr,
            "train/skipped": float(skipped),
            "train/step_s": elapsed,
            "train/tokens_per_s": metrics["train/tokens"] / elapsed,
        })  # fmt: skip
        return metrics

    # ------------------------------------------------------------------ publishing

    @torch.no_grad()
    def state_dict_for_serving(self) -> dict[str, torch.Tensor]:
        """Full weights under the base model's own names, for `HFBackend.load_weights`.

        Full fine-tune: the live parameters (detached; the backend copies them). LoRA: base weights
        plus each adapter's B @ A * alpha / r, computed into new tensors; the training model is not
        merged or changed.
        """
        if not self.is_lora:
            return {k: v.detach() for k, v in self.model.state_dict().items()}
        base = self.base_model
        state = {
            k.replace(".base_layer.", "."): v.detach()
            for k, v in base.state_dict().items()
            if "lora_" not in k and "lora_magnitude" not in k
        }
        for name, module in base.named_modules():
            if not (hasattr(module, "get_delta_weight") and hasattr(module, "base_layer")):
                continue
            weight = module.base_layer.weight.detach().clone()
            for adapter in module.active_adapters:
                if adapter in module.lora_A and adapter not in module.merged_adapters:
                    weight += module.get_delta_weight(adapter).to(weight.dtype)
            state[f"{name}.weight"] = weight
        return state

    def publish(self, backend: Any, version: int | None = None) -> int:
        """Load the current weights into an in-process backend (`HFBackend`); returns its new version."""
        backend.load_weights(self.state_dict_for_serving(), self.step if version is None else version)
        return int(backend.weights_version)


def _enable_checkpointing(model: Any) -> None:
    # Non-reentrant checkpointing needs no input that requires grad, so it works under LoRA too.
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _wrap_lora(model: Any, lora: LoraConfig, seed: int | None) -> Any:
    try:
        import peft
    except ImportError as e:  # pragma: no cover - peft is in the train extra
        from boltrl.errors import MissingDependencyError

        raise MissingDependencyError("peft", "train") from e
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in lora.target_modules if m not in present]
    if missing:
        raise InvalidInputError(f"LoRA target_modules {missing} are not layers of this model")
    if seed is not None:
        torch.manual_seed(seed)
    config = peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing`; harmless.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        return peft.get_peft_model(model, config)
