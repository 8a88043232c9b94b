"""Support for the framework tests: a scripted backend and a harness over a live server.

A random tiny model never emits a tool call, so tool-call round trips use `ScriptedBackend`: a fake
allowed here because the real thing (a model that calls tools) cannot run in a test. It renders the
prompt with the real tiny tokenizer's chat template (`ChatPrompter`, as the HF backend does), answers
with scripted text (first a `<tool_call>` when tools are offered and no tool result is in the
messages yet, then a final answer that quotes the tool result), tokenizes that text with the real
tokenizer, and builds the OpenAI response with the HF backend's own `chat_result` (which decodes the
ids and parses tool calls with the real `toolcalls` parser). Tests with no tools use the real HF
backend on the tiny random model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from boltrl.inference.base import ChatResult, CompletionResult, bad_request
from boltrl.inference.params import sampling_params
from boltrl.inference.prompts import ChatPrompter
from boltrl.inference.responses import Sampled, chat_result
from boltrl.inference.toolcalls import format_call, function_of, text_content
from boltrl.testing import LiveServer
from boltrl.types import MODEL_CALL_SPAN

SCRIPTED_ARGUMENTS: dict[str, dict[str, Any]] = {
    "add": {"a": 2, "b": 3},
    "calculator": {"expression": "2 + 3"},
}
"""The arguments the scripted model calls each tool with (tools the tests define)."""


def final_answer(tool_result: str) -> str:
    return f"The answer is {tool_result}."


class ScriptedBackend:
    """An `InferenceBackend` whose "model" follows a script, with real token ids (see the module doc)."""

    weights_version = 0

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.prompter = ChatPrompter(tokenizer)
        self.requests: list[dict[str, Any]] = []

    def script(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        tools = body.get("tools") or []
        results = [text_content(m.get("content")) for m in messages if m.get("role") == "tool"]
        if results:
            return final_answer(results[-1].strip())
        if tools:
            name = function_of(tools[0])["name"]
            return format_call(name, SCRIPTED_ARGUMENTS[name])
        return "Hello from the script."

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        self.requests.append(body)
        sampling_params(body, chat=True)  # refuse what the HF backend refuses
        prompt_ids, parse_tools = self.prompter.chat_ids(body)
        text = self.script(body)
        ids = [*self.tokenizer.encode(text, add_special_tokens=False), self.tokenizer.eos_token_id]
        decoded = self.tokenizer.decode(ids, skip_special_tokens=True)
        assert decoded == text, "the scripted text must survive the tokenizer round trip"
        sampled = Sampled(ids=ids, logprobs=[-0.5] * len(ids), text=decoded, finish_reason="stop")
        return chat_result(
            [sampled], prompt_ids, model="scripted", weights_version=self.weights_version,
            parse_tools=parse_tools, logprobs=bool(body.get("logprobs")), token_text=self._token_text,
        )  # fmt: skip

    async def complete(self, body: dict[str, Any]) -> CompletionResult:
        raise bad_request("the scripted backend answers chat only", "prompt")

    def _token_text(self, token_id: int) -> str:
        return str(self.tokenizer.decode([token_id]))

    def models(self) -> list[str]:
        return ["scripted"]

    def load_weights(self, state_dict: dict[str, Any], version: int | None = None) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


@dataclass
class Attempt:
    """One claimed attempt: what an agent is given (`base_url`, `api_key`, `model`) and its ids."""

    rollout_id: str
    attempt_id: str
    base_url: str
    api_key: str
    model: str


class Harness:
    """A live server with a backend: claim attempts, read what the gateway recorded for them."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.tokenizer = server.backend.tokenizer

    def attempt(self) -> Attempt:
        self.http.post("/v1/rollouts", json={"rollouts": [{"input": "task"}]}).raise_for_status()
        claim = self.http.post("/v1/rollouts/claim", json={"worker_id": "frameworks"}).json()
        llm = claim["resources"]["resources"]["llm"]
        return Attempt(
            claim["rollout"]["id"], claim["attempt"]["id"], llm["base_url"], llm["api_key"], llm["model"]
        )

    def calls(self, a: Attempt) -> list[dict[str, Any]]:
        """The model calls recorded on attempt `a`, in order."""
        spans = self.http.get(f"/v1/rollouts/{a.rollout_id}/spans").json()["spans"]
        assert all(s["attempt_id"] == a.attempt_id for s in spans)
        return [s["attributes"] for s in spans if s["name"] == MODEL_CALL_SPAN]

    def text(self, call: dict[str, Any]) -> str:
        """What the recorded response ids decode to (as the backends define content)."""
        return str(self.tokenizer.decode(call["response_ids"], skip_special_tokens=True))

    def check_tool_round_trip(self, a: Attempt, tool: str, final: str) -> list[dict[str, Any]]:
        """Two recorded calls: the scripted tool call, then the final answer the framework returned."""
        calls = self.calls(a)
        assert len(calls) == 2, [c["response"] for c in calls]
        first, second = calls
        assert self.text(first) == format_call(tool, SCRIPTED_ARGUMENTS[tool])
        (tool_call,) = first["response"]["choices"][0]["message"]["tool_calls"]
        assert tool_call["function"]["name"] == tool
        assert first["finish_reason"] == "tool_calls" and first["request"]["tools"]
        assert any(m["role"] == "tool" for m in second["request"]["messages"])
        assert self.text(second) == final == final_answer("5")
        for call in calls:
            assert call["trainable"] and len(call["logprobs"]) == len(call["response_ids"]) > 0
            assert call["prompt_ids"] and call["error"] is None
        return calls
