"""LangChain (`ChatOpenAI(...).bind_tools`) and a LangGraph graph (StateGraph with a model node and a
ToolNode), written as their documentation writes them; only base_url, api_key and model are ours."""

from __future__ import annotations

from typing import Any

from fw_harness import Harness
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

seen: list[dict[str, Any]] = []


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    seen.append({"a": a, "b": b})
    return a + b


def test_langchain_bind_tools(scripted: Harness) -> None:
    a = scripted.attempt()
    seen.clear()
    llm = ChatOpenAI(model=a.model, base_url=a.base_url, api_key=a.api_key)
    llm_with_tools = llm.bind_tools([add])
    messages: list[Any] = [HumanMessage("What is 2 + 3?")]
    ai = llm_with_tools.invoke(messages)
    messages.append(ai)
    for call in ai.tool_calls:
        messages.append(ToolMessage(str(add.invoke(call["args"])), tool_call_id=call["id"]))
    final = llm_with_tools.invoke(messages)
    assert seen == [{"a": 2, "b": 3}]
    scripted.check_tool_round_trip(a, "add", str(final.content))


def test_langgraph_agent_with_a_tool_node(scripted: Harness) -> None:
    a = scripted.attempt()
    seen.clear()
    llm = ChatOpenAI(model=a.model, base_url=a.base_url, api_key=a.api_key).bind_tools([add])

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode([add]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    graph = builder.compile()

    result = graph.invoke({"messages": [HumanMessage("What is 2 + 3?")]})
    assert seen == [{"a": 2, "b": 3}]
    scripted.check_tool_round_trip(a, "add", str(result["messages"][-1].content))


def test_langchain_on_the_real_model_invoke_and_stream(hf: Harness) -> None:
    a = hf.attempt()
    llm = ChatOpenAI(model=a.model, base_url=a.base_url, api_key=a.api_key, max_tokens=12)
    reply = llm.invoke("Say hello.")
    streamed = "".join(str(chunk.content) for chunk in llm.stream("Say hello again."))
    first, second = hf.calls(a)
    assert hf.text(first) == reply.content
    assert hf.text(second) == streamed and second["request"]["stream"] is True
    assert all(c["trainable"] and len(c["logprobs"]) == len(c["response_ids"]) for c in (first, second))
