"""AutoGen AgentChat (`AssistantAgent` with a tool on `OpenAIChatCompletionClient`), written as its
documentation writes it for an OpenAI-compatible endpoint (base_url, api_key and model_info)."""

from __future__ import annotations

import asyncio
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_ext.models.openai import OpenAIChatCompletionClient
from fw_harness import Harness

seen: list[dict[str, Any]] = []


async def add(a: int, b: int) -> int:
    """Add two integers."""
    seen.append({"a": a, "b": b})
    return a + b


def test_autogen_assistant_agent_with_a_tool(scripted: Harness) -> None:
    a = scripted.attempt()
    seen.clear()

    async def main() -> str:
        model_client = OpenAIChatCompletionClient(
            model=a.model,
            base_url=a.base_url,
            api_key=a.api_key,
            model_info={
                "vision": False,
                "function_calling": True,
                "json_output": False,
                "family": "unknown",
                "structured_output": False,
            },
        )
        agent = AssistantAgent("assistant", model_client=model_client, tools=[add], reflect_on_tool_use=True)
        result = await agent.run(task="What is 2 + 3?")
        await model_client.close()
        return str(result.messages[-1].content)

    final = asyncio.run(main())
    assert seen == [{"a": 2, "b": 3}]
    scripted.check_tool_round_trip(a, "add", final)
