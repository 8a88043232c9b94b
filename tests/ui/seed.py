"""Real rollouts on a live server, for the dashboard, CLI, dump and metrics tests.

Rollouts go through the real path: enqueue, claim, the gateway (with a small scripted backend in place
of a model, the one thing faked), spans and rewards posted over HTTP, finish. A training run posts its
metrics the way the trainer does.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from boltrl.inference.base import BackendError, ChatResult, ChoiceTokens, CompletionResult

QUESTION = "What is 17 * 23?"
TOOL_ANSWER = "391"


class ScriptedBackend:
    """Answers the first turn with a calculator tool call and the second with the result, like an agent
    solving a word problem; a request with `"model": "broken"` fails as a backend would."""

    weights_version = 3

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        await asyncio.sleep(0.02)  # a model takes time: the waterfall shows it
        if body.get("model") == "broken":
            raise BackendError(503, "the model is reloading")
        messages = body.get("messages") or []
        prompt_ids = list(range(10, 10 + 7 * len(messages)))
        if messages and messages[-1].get("role") == "tool":
            message: dict[str, Any] = {
                "role": "assistant",
                "content": f"The answer is {messages[-1]['content']}.",
            }
            finish = "stop"
        else:
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "17 * 23"}'},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        n_tokens = 5 if finish == "stop" else 9
        response = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "policy",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": len(prompt_ids),
                "completion_tokens": n_tokens,
                "total_tokens": len(prompt_ids) + n_tokens,
            },
        }
        tokens = ChoiceTokens(list(range(100, 100 + n_tokens)), [-0.5] * n_tokens, finish)
        return ChatResult(response, prompt_ids, [tokens], "policy", self.weights_version)

    async def complete(self, body: dict[str, Any]) -> CompletionResult:
        raise BackendError(400, "completions are not scripted")

    def models(self) -> list[str]:
        return ["policy"]

    def load_weights(self, state_dict: dict[str, Any], version: int | None = None) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class Seeded:
    solved: str
    """Succeeded after a failed first attempt: two model calls (a tool call, then the answer), reward 1."""
    failed: str
    """Failed on its only attempt: one model call, reward 0."""
    running: str
    queued: list[str] = field(default_factory=list)
    run_id: str = "calc-grpo"


def seed(url: str, token: str | None = None, n_queued: int = 3) -> Seeded:
    """Fill the server at `url` (started with `ScriptedBackend`) with rollouts in every state."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=10, trust_env=False) as http:

        def post(path: str, body: Any = None) -> Any:
            r = http.post(path, json=body)
            assert r.status_code == 200, (path, r.status_code, r.text)
            return r.json()

        rollouts = [
            {"id": "calc-0001", "group_id": "task-17x23", "input": {"question": QUESTION}, "max_attempts": 2},
            {"id": "calc-0002", "group_id": "task-17x23", "input": {"question": QUESTION}, "max_attempts": 1},
            {
                "id": "calc-0003",
                "group_id": "task-9x9",
                "mode": "val",
                "input": {"question": "What is 9 * 9?"},
            },
        ]
        rollouts += [
            {"id": f"calc-q{i:03d}", "group_id": "task-2x2", "input": {"question": "2*2?"}}
            for i in range(n_queued)
        ]
        post("/v1/rollouts", {"rollouts": rollouts})

        # calc-0001: attempt 1 is lost by its worker (fails), attempt 2 solves it with the tool.
        first = post("/v1/rollouts/claim", {"worker_id": "runner-a"})
        post(
            f"/v1/attempts/{first['attempt']['id']}/finish",
            {"status": "failed", "error": "agent crashed: KeyError 'x'"},
        )
        second = post("/v1/rollouts/claim", {"worker_id": "runner-b"})
        assert second["rollout"]["id"] == "calc-0001"
        solve(http, second, tool_turn=True)
        post("/v1/spans", {"spans": [reward(second, 1.0)]})
        post(f"/v1/attempts/{second['attempt']['id']}/finish", {"status": "succeeded"})

        # calc-0002: one wrong answer (no tool), reward 0, the agent reports failure.
        third = post("/v1/rollouts/claim", {"worker_id": "runner-a"})
        solve(http, third, tool_turn=False)
        post("/v1/spans", {"spans": [reward(third, 0.0)]})
        post(f"/v1/attempts/{third['attempt']['id']}/finish", {"status": "failed", "error": "wrong answer"})

        # calc-0003 stays running on runner-b.
        running = post("/v1/rollouts/claim", {"worker_id": "runner-b"})
        post(f"/v1/attempts/{running['attempt']['id']}/heartbeat")

        rows = [
            {
                "step": s,
                "rollout/reward_mean": 0.1 + 0.08 * s,
                "train/loss": 1.2 - 0.1 * s,
                "val/reward_mean": 0.2 + 0.05 * s,
            }
            for s in range(8)
        ]
        post("/v1/runs/calc-grpo/metrics", {"rows": rows})
    return Seeded(
        solved="calc-0001", failed="calc-0002", running="calc-0003", queued=[r["id"] for r in rollouts[3:]]
    )


def solve(http: httpx.Client, claim: dict[str, Any], *, tool_turn: bool) -> None:
    """The agent's turns through the gateway the claim points it at."""
    base = claim["resources"]["resources"]["llm"]["base_url"]
    tools = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You solve arithmetic with the calculator tool."},
        {"role": "user", "content": claim["rollout"]["input"]["question"]},
    ]
    answer = chat(http, base, messages, tools)
    if tool_turn:
        messages += [answer, {"role": "tool", "tool_call_id": "call_1", "content": TOOL_ANSWER}]
        chat(http, base, messages, tools)


def chat(http: httpx.Client, base: str, messages: list[dict[str, Any]], tools: list[Any]) -> dict[str, Any]:
    body = {"model": "policy", "messages": messages, "tools": tools}
    r = http.post(
        f"{base}/chat/completions", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["choices"][0]["message"])


def reward(claim: dict[str, Any], value: float) -> dict[str, Any]:
    return {
        "rollout_id": claim["rollout"]["id"],
        "attempt_id": claim["attempt"]["id"],
        "name": "boltrl.reward",
        "attributes": {"boltrl.reward.value": value, "boltrl.reward.name": "exact_match"},
    }
