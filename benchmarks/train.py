"""Training throughput of `Policy.train_step` against this machine's measured matmul peak.

    .venv/bin/python benchmarks/train.py                       # tiny-random and smollm2-135m (if prepared)
    .venv/bin/python benchmarks/train.py --models tiny-random --samples 8 --tokens 256 --steps 5

1. Peak: the best FLOP/s of `torch.matmul` on large float32 square matrices (2 n^3 FLOPs each), with
   every core torch uses. This is the ceiling the update's matmuls run against.
2. Update: `train_step` (forward, backward, AdamW) on `--samples` rows of `--tokens` tokens each
   (half prompt, half response by default), timed over `--steps` steps after one warm-up step.

FLOPs of one step, as executed (forward + backward = 3x forward):
- 6 * N_body * tokens: every weight matmul except the LM head, N_body = parameters minus the input
  embedding (a lookup, no FLOPs) and minus an untied LM head;
- 6 * d_model * vocab * response_tokens: the LM head, applied only where a response token is predicted;
- 12 * n_layers * d_model * seq_len per token: attention scores and values (PaLM, appendix B),
  counted over the full square though the causal kernel may skip the upper half.
The table also gives the common "6 * N * tokens" model-FLOPs figure (N = all parameters) for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import torch


def matmul_peak(n: int = 4096, repeats: int = 5) -> float:
    """Best FLOP/s of one float32 n x n matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up: thread pool, page faults
    best = min(_timed(lambda: torch.matmul(a, b)) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_loss(
    logprobs: torch.Tensor,  # (B, T)
    old_logprobs: torch.Tensor,  # (B, T)
    advantages: torch.Tensor,  # (B, T)
    mask: torch.Tensor,  # (B, T)
    sample_weights: torch.Tensor,  # (B,)
) -> tuple[torch.Tensor, dict[str, Any]]:
    """PPO-clip (eps 0.2), summed over samples with per-sample weights: the shape of LightningRL's loss."""
    ratio = torch.exp(logprobs - old_logprobs)
    per_token = -torch.min(ratio * advantages, ratio.clamp(0.8, 1.2) * advantages)
    return (per_token * mask * sample_weights[:, None]).sum(), {}


def step_flops(policy: Any, tokens: int, response_tokens: int, seq_len: int) -> tuple[float, float]:
    """(executed FLOPs, 6 * N * tokens) of one step; see the module docstring."""
    model = policy.base_model
    cfg = model.config
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    d_model, vocab, layers = emb.shape[1], emb.shape[0], cfg.num_hidden_layers
    n_all = policy.n_params()
    n_body = n_all - emb.numel() - (0 if head is emb else head.numel())
    executed = (
        6 * n_body * tokens + 6 * d_model * vocab * response_tokens + 12 * layers * d_model * seq_len * tokens
    )
    return float(executed), float(6 * n_all * tokens)


def bench_samples(policy: Any, n: int, tokens: int, n_resp: int) -> list[Any]:
    """`n` random rows of `tokens` tokens, the last `n_resp` of each a response, advantages +-1."""
    from boltrl.training import Sample

    vocab = policy.base_model.get_input_embeddings().weight.shape[0]
    g = torch.Generator().manual_seed(0)
    return [
        Sample(
            prompt_ids=torch.randint(0, vocab, (tokens - n_resp,), generator=g).tolist(),
            response_ids=torch.randint(0, vocab, (n_resp,), generator=g).tolist(),
            response_mask=[1] * n_resp,
            old_logprobs=[-5.0] * n_resp,
            advantage=1.0 if i % 2 else -1.0,
            weight=1.0 / (n * n_resp),
        )
        for i in range(n)
    ]


def bench_model(name: str, args: argparse.Namespace, peak: float) -> dict[str, Any]:
    from boltrl.training import Policy, PolicyConfig

    policy = Policy(
        PolicyConfig(
            model=name,
            lr=1e-6,
            micro_batch_tokens=args.micro_batch_tokens,
            gradient_checkpointing=args.gradient_checkpointing,
            fused_adamw=args.fused_adamw,
        )
    )
    n_resp = max(1, int(args.tokens * args.response_frac))
    samples = bench_samples(policy, args.samples, args.tokens, n_resp)
    policy.train_step(samples, bench_loss)  # warm-up
    times, metrics = [], {}
    for _ in range(args.steps):
        metrics = policy.train_step(samples, bench_loss)
        times.append(metrics["train/step_s"])
    step_s = statistics.median(times)
    tokens = metrics["train/tokens"]
    executed, six_n = step_flops(policy, int(tokens), int(metrics["train/response_tokens"]), args.tokens - 1)
    return {
        "model": name,
        "params_M": policy.n_params() / 1e6,
        "micro_batches": int(metrics["train/micro_batches"]),
        "step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "gflops": executed / step_s / 1e9,
        "of_peak": executed / step_s / peak,
        "of_peak_6n": six_n / step_s / peak,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny-random", "smollm2-135m"])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256, help="tokens per sample, prompt + response")
    parser.add_argument("--response-frac", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--micro-batch-tokens", type=int, default=4096)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--fused-adamw", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    from boltrl import models

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    peak = matmul_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"matmul peak before (float32 4096^3, best of 5): {peak / 1e9:.1f} GFLOP/s\n")
    print(f"update: {args.samples} samples x {args.tokens} tokens ({args.response_frac:.0%} response)")
    print("model            params  mb   step s    tok/s  GFLOP/s  of peak     6N")
    rows: list[dict[str, Any]] = []
    for name in args.models:
        if name in models.REGISTRY and name != "tiny-random" and not models.is_prepared(name):
            print(f"{name:<14} skipped: run `boltrl models prepare {name}` first")
            continue
        rows.append(bench_model(name, args, peak))
        r = rows[-1]
        print(
            f"{r['model']:<14}{r['params_M']:>8.1f}M{r['micro_batches']:>4}{r['step_s']:>9.2f}"
            f"{r['tokens_per_s']:>9.0f}{r['gflops']:>9.1f}{r['of_peak']:>9.0%}{r['of_peak_6n']:>7.0%}"
        )
    after = matmul_peak()
    print(f"\nmatmul peak after: {after / 1e9:.1f} GFLOP/s")
    if abs(after - peak) > 0.15 * max(after, peak):
        print("warning: the peak moved by more than 15% during the run: other processes share the CPU")
    if after > peak:
        reached = ", ".join(f"{r['model']} {r['gflops'] * 1e9 / after:.0%}" for r in rows)
        print(f"against the higher peak, the update reached: {reached}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
