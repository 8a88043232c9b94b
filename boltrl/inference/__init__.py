"""Inference backends: what the gateway calls to answer OpenAI-compatible requests.

`HFBackend` (transformers, in-process, batched) is imported lazily so that importing this package
never imports torch; see `docs/models.md`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from boltrl.inference.base import BackendError, ChatResult, ChoiceTokens, CompletionResult, InferenceBackend

if TYPE_CHECKING:
    from boltrl.inference.hf import HFBackend

__all__ = [
    "BackendError",
    "ChatResult",
    "ChoiceTokens",
    "CompletionResult",
    "HFBackend",
    "InferenceBackend",
    "open_backend",
]

BACKENDS = ("hf", "vllm", "openai")


def open_backend(
    kind: str,
    model: str,
    *,
    upstream: str | None = None,
    api_key: str | None = None,
    device: str = "cpu",
    max_batch_size: int = 16,
) -> InferenceBackend:
    """The backend `kind` serving `model`: what `boltrl serve --model M --backend K` runs."""
    if kind == "hf":
        from boltrl.inference.hf import HFBackend

        return HFBackend(model, device=device, max_batch_size=max_batch_size)
    if kind == "vllm":
        from boltrl.inference.remote import VLLMBackend

        return VLLMBackend(upstream, model=model) if upstream else VLLMBackend.launch(model)
    if kind == "openai":
        from boltrl.errors import InvalidInputError
        from boltrl.inference.remote import OpenAIBackend

        if not upstream:
            raise InvalidInputError("backend 'openai' needs upstream: the endpoint's base URL, ending in /v1")
        return OpenAIBackend(upstream, api_key=api_key, model=model)
    from boltrl.errors import InvalidInputError

    raise InvalidInputError(f"backend must be one of {', '.join(BACKENDS)}, got {kind!r}")


def __getattr__(name: str) -> Any:
    if name == "HFBackend":
        from boltrl.inference.hf import HFBackend

        return HFBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
