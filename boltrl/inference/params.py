"""Sampling parameters read from an OpenAI request body, validated once (pure, no torch).

Every rejection is a 400 `BackendError` naming the field. Parameters that would change the sampling
distribution but are not implemented (penalties, logit_bias, constrained response formats) are
refused rather than silently ignored, so a recorded logprob is always that of the distribution used.
Unknown fields (`user`, `metadata`, `store`, `parallel_tool_calls`, `stream_options`, ...) are ignored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from boltrl.inference.base import bad_request

MAX_N = 64
MAX_STOP = 16
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class SamplingParams:
    """How to sample the choices of one request."""

    n: int = 1
    temperature: float = 1.0
    """0 means greedy."""
    top_p: float = 1.0
    max_tokens: int | None = None
    """None: the backend's default (`max_new_tokens`), always capped by the context length."""
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    """Put OpenAI `logprobs` in the response (token-level logprobs are always recorded)."""
    top_logprobs: int = 0

    def choice_seed(self, index: int) -> int:
        """The generator seed of choice `index`: derived from `seed`, random when no seed was given."""
        if self.seed is None:
            return random.getrandbits(63)
        return (self.seed * 0x9E3779B97F4A7C15 + index) % (1 << 63)


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise bad_request(f"{key} must be a number between {lo} and {hi}, got {value!r}", key)
    return float(value)


def _int(body: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad_request(f"{key} must be an integer between {lo} and {hi}, got {value!r}", key)
    return value


def sampling_params(body: dict[str, Any], *, chat: bool = True) -> SamplingParams:
    """Validate the sampling fields of a request body."""
    for key, neutral in (("presence_penalty", 0), ("frequency_penalty", 0), ("repetition_penalty", 1)):
        if body.get(key) not in (None, neutral):
            raise bad_request(f"{key} is not supported by this backend; leave it unset", key)
    if body.get("logit_bias"):
        raise bad_request("logit_bias is not supported by this backend; leave it unset", "logit_bias")
    fmt = body.get("response_format")
    if fmt not in (None, {}) and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise bad_request(
            "response_format other than text is not supported by this backend; describe the format "
            "in the prompt instead",
            "response_format",
        )
    if not chat and (body.get("echo") or body.get("suffix") or body.get("best_of") not in (None, 1)):
        raise bad_request("echo, suffix and best_of are not supported by this backend", "echo")

    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,) if stop else ()
    elif isinstance(stop, list) and len(stop) <= MAX_STOP and all(isinstance(s, str) for s in stop):
        stops = tuple(s for s in stop if s)
    else:
        raise bad_request(f"stop must be a string or a list of at most {MAX_STOP} strings", "stop")

    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad_request(f"seed must be an integer, got {seed!r}", "seed")

    max_tokens = _int(body, "max_completion_tokens", 1, 1 << 20)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1, 1 << 20)

    if chat:
        logprobs = body.get("logprobs") or False
        if not isinstance(logprobs, bool):
            raise bad_request("logprobs must be true or false in a chat request", "logprobs")
        top = _int(body, "top_logprobs", 0, MAX_TOP_LOGPROBS) or 0
        if top and not logprobs:
            raise bad_request("top_logprobs needs logprobs: true", "top_logprobs")
    else:  # completions: `logprobs` is the number of top alternatives (0 = sampled token only)
        top_or_none = _int(body, "logprobs", 0, 5)
        logprobs, top = top_or_none is not None, top_or_none or 0

    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p <= 0:
        raise bad_request("top_p must be greater than 0 and at most 1", "top_p")
    return SamplingParams(
        n=_int(body, "n", 1, MAX_N) or 1,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=top_p,
        max_tokens=max_tokens,
        stop=stops,
        seed=seed,
        logprobs=logprobs,
        top_logprobs=top,
    )
