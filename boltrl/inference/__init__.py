"""Inference backends: what the gateway calls to answer OpenAI-compatible requests.

`HFBackend` (transformers, in-process, batched) is imported lazily so that importing this package
never imports torch; see `docs/models.md`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from boltrl.inference.base import BackendError, ChatResult, ChoiceTokens, CompletionResult, InferenceBackend

if TYPE_CHECKING:
    from boltrl.inference.hf import HFBackend

__all__ = ["BackendError", "ChatResult", "ChoiceTokens", "CompletionResult", "HFBackend", "InferenceBackend"]


def __getattr__(name: str) -> Any:
    if name == "HFBackend":
        from boltrl.inference.hf import HFBackend

        return HFBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
