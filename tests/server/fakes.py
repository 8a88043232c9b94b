"""A small scripted inference backend for the gateway tests that need no model.

It answers every chat request with the last user message echoed back; a request whose `model` is
`"broken"` fails as a backend refuses (an OpenAI-style 503), `"crash"` as a backend with a bug (a
`RuntimeError`, which the gateway turns into a 500 `server_error`).
"""

from __future__ import annotations

from typing import Any

from boltrl.inference.base import BackendError, ChatResult, ChoiceTokens, CompletionResult


class EchoBackend:
    weights_version = 1

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        self.calls += 1
        model = body.get("model")
        if model == "broken":
            raise BackendError(503, "the model is reloading", "server_error")
        if model == "crash":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        messages = body.get("messages") or [{}]
        text = str(messages[-1].get("content", ""))[:200]
        response = {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "echo",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
        tokens = ChoiceTokens([7, 8], [-0.1, -0.2], "stop")
        return ChatResult(response, [1, 2, 3], [tokens], "echo", self.weights_version)

    async def complete(self, body: dict[str, Any]) -> CompletionResult:
        raise BackendError(400, "completions are not scripted", param="prompt")

    def models(self) -> list[str]:
        return ["echo"]

    def load_weights(self, state_dict: dict[str, Any], version: int | None = None) -> None:
        return None

    async def close(self) -> None:
        return None
