"""OpenAI response JSON built from sampled choices (pure, no torch).

The content of a choice is the decode of its sampled token ids (cut at a stop string), never the
other way round; tool calls are parsed out of that text when the request offered tools.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from boltrl.inference import toolcalls
from boltrl.inference.base import ChatResult, ChoiceTokens, CompletionResult


@dataclass
class Sampled:
    """One generated choice, as the decoding loop leaves it."""

    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    """Per token, the `top_logprobs` most likely (id, logprob) pairs (empty unless asked for)."""
    text: str = ""
    finish_reason: str = "length"
    temperature: float = 1.0


def _usage(prompt_len: int, choices: list[Sampled]) -> dict[str, int]:
    completion = sum(len(c.ids) for c in choices)
    return {
        "prompt_tokens": prompt_len,
        "completion_tokens": completion,
        "total_tokens": prompt_len + completion,
    }


def chat_result(
    choices: list[Sampled],
    prompt_ids: list[int],
    *,
    model: str,
    weights_version: int,
    parse_tools: bool,
    logprobs: bool,
    token_text: Callable[[int], str],
) -> ChatResult:
    """A `chat.completion` from sampled choices; tool calls parsed when `parse_tools`."""
    out, tokens = [], []
    for i, c in enumerate(choices):
        content: str | None = c.text
        calls: list[dict[str, Any]] = []
        if parse_tools:
            content, calls = toolcalls.parse_tool_calls(c.text)
        finish = "tool_calls" if calls and c.finish_reason == "stop" else c.finish_reason
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        lp = None
        if logprobs:
            lp = {"content": [_token_logprob(t, v, top, token_text) for t, v, top in _zip(c)]}
        out.append({"index": i, "message": message, "logprobs": lp, "finish_reason": finish})
        tokens.append(ChoiceTokens(c.ids, c.logprobs, finish, c.temperature))
    response = _envelope("chatcmpl", "chat.completion", model, weights_version, out, prompt_ids, choices)
    return ChatResult(response, prompt_ids, tokens, model, weights_version, trainable=True)


def completion_result(
    choices: list[Sampled],
    prompt_ids: list[int],
    *,
    model: str,
    weights_version: int,
    logprobs: bool,
    token_text: Callable[[int], str],
) -> CompletionResult:
    """A `text_completion` from sampled choices (legacy logprobs format when asked for)."""
    out, tokens = [], []
    for i, c in enumerate(choices):
        lp = None
        if logprobs:
            texts = [token_text(t) for t in c.ids]
            offsets, pos = [], 0
            for t in texts:
                offsets.append(pos)
                pos += len(t)
            lp = {
                "tokens": texts,
                "token_logprobs": c.logprobs,
                "top_logprobs": [{token_text(t): v for t, v in top} for top in c.top] if c.top else None,
                "text_offset": offsets,
            }
        out.append({"index": i, "text": c.text, "logprobs": lp, "finish_reason": c.finish_reason})
        tokens.append(ChoiceTokens(c.ids, c.logprobs, c.finish_reason, c.temperature))
    response = _envelope("cmpl", "text_completion", model, weights_version, out, prompt_ids, choices)
    return CompletionResult(response, prompt_ids, tokens, model, weights_version, trainable=True)


def _envelope(
    prefix: str,
    kind: str,
    model: str,
    weights_version: int,
    out: list[dict[str, Any]],
    prompt_ids: list[int],
    choices: list[Sampled],
) -> dict[str, Any]:
    """The OpenAI response around its choices, the same for chat and text completions."""
    return {
        "id": f"{prefix}-{uuid.uuid4().hex[:24]}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": f"boltrl-w{weights_version}",
        "choices": out,
        "usage": _usage(len(prompt_ids), choices),
    }


def _zip(c: Sampled) -> list[tuple[int, float, list[tuple[int, float]]]]:
    tops = c.top if c.top else [[] for _ in c.ids]
    return list(zip(c.ids, c.logprobs, tops, strict=True))


def _token_logprob(
    tid: int, value: float, top: list[tuple[int, float]], token_text: Callable[[int], str]
) -> dict[str, Any]:
    text = token_text(tid)
    return {
        "token": text,
        "logprob": value,
        "bytes": list(text.encode()),
        "top_logprobs": [
            {"token": token_text(t), "logprob": v, "bytes": list(token_text(t).encode())} for t, v in top
        ],
    }
