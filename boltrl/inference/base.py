"""The inference backend interface: what the gateway calls to answer an OpenAI-compatible request.

A backend takes the request body exactly as the agent sent it (`/v1/chat/completions` or
`/v1/completions`) and returns the OpenAI response JSON *together with* what the trainer needs and
cannot get from text: the prompt token ids, the sampled response token ids and the log-probability of
each sampled token under the policy that sampled it. The gateway sends `result.response` back to the
agent and records `result.model_calls(...)` as `boltrl.model_call` spans.

Log-probabilities are `log_softmax(logits / T)[token]` where `T` is the request's temperature (the
distribution the token was actually sampled from, before top-p truncation); for greedy requests
(`T == 0`) they are `log_softmax(logits)`. `ChoiceTokens.temperature` records the `T` used, so the
trainer can recompute the same quantity under the current policy for the PPO ratio.

A request the backend cannot serve raises `BackendError`, which the gateway turns into an OpenAI
error body with the same HTTP status; this module imports neither torch nor transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from boltrl.errors import BoltrlError
from boltrl.types import ModelCall


class BackendError(BoltrlError):
    """A request the backend refuses or failed on, to be returned to the agent as an OpenAI error.

    `status` is the HTTP status (400 bad parameter or prompt longer than the context, 404 unknown
    model, 503 backend closed, 500 internal), `type` the OpenAI error type, `param` the offending field.
    """

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.http_status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI error body: `{"error": {"message", "type", "param", "code"}}`."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> BackendError:
    return BackendError(400, message, "invalid_request_error", param, code)


@dataclass
class ChoiceTokens:
    """The token-level record of one choice: exactly what was sampled, never re-tokenized text."""

    response_ids: list[int]
    """Sampled token ids, including the EOS token when the model ended its turn with it."""
    logprobs: list[float]
    """One per response token: log_softmax(logits / temperature) of the sampled token."""
    finish_reason: str
    """"stop" (EOS or stop string), "length" (max_tokens or context) or "tool_calls"."""
    temperature: float = 1.0
    """The temperature the logprobs were computed at (1.0 for greedy requests)."""


@dataclass
class ChatResult:
    """A backend's answer to one `/v1/chat/completions` request."""

    response: dict[str, Any]
    """The OpenAI ChatCompletion JSON returned to the agent."""
    prompt_ids: list[int]
    """Token ids of the rendered prompt (chat template and tool instructions included)."""
    choices: list[ChoiceTokens]
    """Token ids and logprobs per choice, in the order of `response["choices"]`."""
    model: str
    weights_version: int
    """Version of the weights that produced every token of this result."""
    trainable: bool = True
    """False when token ids or logprobs are not the policy's own (e.g. a remote OpenAI API)."""

    @property
    def response_ids(self) -> list[int]:
        """The first choice's response ids (the only one when n == 1)."""
        return self.choices[0].response_ids if self.choices else []

    @property
    def logprobs(self) -> list[float]:
        return self.choices[0].logprobs if self.choices else []

    def model_calls(
        self, request: dict[str, Any], *, latency_ms: float = 0.0, agent: str | None = None
    ) -> list[ModelCall]:
        """One `ModelCall` per choice; each carries the response restricted to its own choice."""
        calls = []
        for i, tokens in enumerate(self.choices):
            response = dict(self.response)
            response["choices"] = [self.response["choices"][i]]
            calls.append(
                ModelCall(
                    request=request,
                    response=response,
                    prompt_ids=self.prompt_ids,
                    response_ids=tokens.response_ids,
                    logprobs=tokens.logprobs,
                    model=self.model,
                    weights_version=self.weights_version,
                    agent=agent,
                    latency_ms=latency_ms,
                    finish_reason=tokens.finish_reason,
                    temperature=tokens.temperature,
                    trainable=self.trainable,
                )
            )
        return calls


class CompletionResult(ChatResult):
    """A backend's answer to one `/v1/completions` request (`response` is a text_completion)."""


@runtime_checkable
class InferenceBackend(Protocol):
    """What the gateway calls. Every method may be called concurrently from one event loop."""

    weights_version: int
    """Version of the weights now loaded; results carry the version that produced them."""

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        """Answer an OpenAI chat.completions request body (non-streaming; `stream` is ignored).

        Honours messages, tools, tool_choice, n, stop, seed, max_tokens / max_completion_tokens,
        temperature, top_p, logprobs and top_logprobs. Any `model` name is accepted and answered by
        this backend's model. Raises `BackendError` for a request it cannot serve.
        """
        ...

    async def complete(self, body: dict[str, Any]) -> CompletionResult:
        """Answer an OpenAI completions request body; `prompt` is a string or a list of token ids."""
        ...

    def models(self) -> list[str]:
        """Names served, for `/v1/models`."""
        ...

    def load_weights(self, state_dict: dict[str, Any], version: int | None = None) -> None:
        """Swap in new weights between batches and set `weights_version` (HF backend only)."""
        ...

    async def close(self) -> None:
        """Finish in-flight requests, refuse new ones with a 503 `BackendError`, free resources."""
        ...
