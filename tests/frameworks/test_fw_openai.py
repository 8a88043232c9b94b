"""The plain `openai` client, written as OpenAI's function-calling guide writes it; only base_url,
api_key and model come from the claim."""

from __future__ import annotations

import asyncio
import json

import openai
from fw_harness import Harness


def add(a: int, b: int) -> int:
    return a + b


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]


def test_openai_function_calling_loop(scripted: Harness) -> None:
    a = scripted.attempt()
    seen: list[dict[str, int]] = []
    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key)
    messages: list[dict] = [{"role": "user", "content": "What is 2 + 3?"}]
    response = client.chat.completions.create(model=a.model, messages=messages, tools=TOOLS)
    message = response.choices[0].message
    while message.tool_calls:
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            args = json.loads(call.function.arguments)
            seen.append(args)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": str(add(**args))})
        response = client.chat.completions.create(model=a.model, messages=messages, tools=TOOLS)
        message = response.choices[0].message
    assert seen == [{"a": 2, "b": 3}]
    scripted.check_tool_round_trip(a, "add", message.content or "")


def test_openai_client_on_the_real_model(hf: Harness) -> None:
    a = hf.attempt()
    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key)
    reply = client.chat.completions.create(
        model=a.model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=16
    )

    async def concurrently() -> list[str]:
        aclient = openai.AsyncOpenAI(base_url=a.base_url, api_key=a.api_key)
        replies = await asyncio.gather(
            *(
                aclient.chat.completions.create(
                    model=a.model, messages=[{"role": "user", "content": f"Count to {i}."}], max_tokens=8
                )
                for i in range(4)
            )
        )
        await aclient.close()
        return [r.choices[0].message.content or "" for r in replies]

    texts = [reply.choices[0].message.content or "", *asyncio.run(concurrently())]
    calls = hf.calls(a)
    assert len(calls) == 5
    assert sorted(hf.text(c) for c in calls) == sorted(texts)
    assert all(c["trainable"] and len(c["logprobs"]) == len(c["response_ids"]) for c in calls)
