"""The OpenAI Agents SDK (`Agent`, `function_tool`, `OpenAIChatCompletionsModel`, `Runner.run`), written
as its documentation writes an agent on a custom OpenAI-compatible provider."""

from __future__ import annotations

import asyncio
from typing import Any

from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from fw_harness import Harness
from openai import AsyncOpenAI

set_tracing_disabled(True)  # the SDK would otherwise export its traces to OpenAI

seen: list[dict[str, Any]] = []


@function_tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    seen.append({"a": a, "b": b})
    return a + b


def test_openai_agents_sdk_with_a_function_tool(scripted: Harness) -> None:
    a = scripted.attempt()
    seen.clear()

    async def main() -> str:
        client = AsyncOpenAI(base_url=a.base_url, api_key=a.api_key)
        agent = Agent(
            name="Calculator",
            instructions="Use the add tool to answer.",
            tools=[add],
            model=OpenAIChatCompletionsModel(model=a.model, openai_client=client),
        )
        result = await Runner.run(agent, "What is 2 + 3?")
        await client.close()
        return str(result.final_output)

    final = asyncio.run(main())
    assert seen == [{"a": 2, "b": 3}]
    scripted.check_tool_round_trip(a, "add", final)
