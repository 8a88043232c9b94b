"""The calc agent: an AutoGen `AssistantAgent` that solves word problems with a calculator tool.

Written as AutoGen's own documentation writes an agent for an OpenAI-compatible endpoint. The only
boltrl parts are `@boltrl.rollout`, the `llm` fields the client is built from, and the reward: 1.0
when the agent's final answer equals the task's answer, else 0.0.

A small model needs to see a tool call before it makes one (docs/models.md), so the model context
starts with one example: a question and the calculator call that solves it.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_core import FunctionCall
from autogen_core.model_context import UnboundedChatCompletionContext
from autogen_core.models import AssistantMessage, LLMMessage, UserMessage
from autogen_ext.models.openai import OpenAIChatCompletionClient

import boltrl

SYSTEM = (
    "You solve math word problems. Use the calculator tool to compute, then reply with the result "
    "as 'Answer: <number>'."
)
MAX_DIGITS = 30  # larger results are refused: nobody needs them, and they cost CPU to make

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression: numbers, + - * / // % ** and parentheses, nothing else.

    Parsed with `ast` and walked by hand (no `eval`): names, calls, attributes and anything else are
    refused with a ValueError, as are exponents over 100 and results over MAX_DIGITS digits.
    """
    if len(expression) > 200:
        raise ValueError("expression too long")
    text = expression.replace("\u00d7", "*").replace("\u00f7", "/")  # multiplication and division signs
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234 -> 1234
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None
    return _eval(tree.body)


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value  # type: ignore[no-any-return]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))  # type: ignore[no-any-return]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponent too large")
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ValueError("division by zero") from None
        except OverflowError:
            raise ValueError("result too large") from None
        if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError("result is not a finite real number")
        if abs(value) >= 10**MAX_DIGITS:
            raise ValueError("result too large")
        return value  # type: ignore[no-any-return]
    raise ValueError(f"only numbers and + - * / // % ** are allowed, not {type(node).__name__}")


def format_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value) if isinstance(value, int) else f"{value:.6g}"


async def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as '37 * 24 + 5' and return the result."""
    try:
        return format_number(evaluate(expression))
    except ValueError as e:
        return f"Error: {e}"


_NUMBER = r"-?\d[\d,]*(?:\.\d+)?"


def parse_answer(text: str) -> float | None:
    """The number after the last 'Answer:' in `text`, else its last number; None if there is none."""
    marked = re.findall(r"answer\s*(?:is)?\s*[:=]?\s*\**\s*(" + _NUMBER + ")", text, re.IGNORECASE)
    found = marked or re.findall(_NUMBER, text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def reward(final: str, answer: float) -> float:
    """1.0 for an exact numeric match of the final answer, else 0.0."""
    value = parse_answer(final)
    return 1.0 if value is not None and math.isclose(value, float(answer), abs_tol=1e-6) else 0.0


def example_messages() -> list[LLMMessage]:
    """A question and the calculator call that solves it, to open the conversation.

    Only the call, not its result and a final answer: on 32 test problems (greedy) SmolLM2-135M
    calls the tool 29 times after this opening, but 0 times after the full round trip (result and
    "Answer: 414" turns too), where it imitates the tool-result turn instead.
    """
    call = FunctionCall(id="call_example", name="calculator", arguments='{"expression": "23 * 18"}')
    question = "A baker fills 23 trays with 18 buns each. How many buns is that?"
    return [UserMessage(content=question, source="user"), AssistantMessage(content=[call], source="calc")]


@boltrl.rollout
async def agent(task: dict[str, Any], llm: boltrl.LLM) -> float:
    model_client = OpenAIChatCompletionClient(
        model=llm.model,
        base_url=llm.base_url,
        api_key=llm.api_key,
        model_info={
            "vision": False,
            "function_calling": True,
            "json_output": False,
            "family": "unknown",
            "structured_output": False,
        },
        **llm.sampling,
    )
    try:
        assistant = AssistantAgent(
            "calc",
            model_client=model_client,
            tools=[calculator],
            system_message=SYSTEM,
            model_context=UnboundedChatCompletionContext(initial_messages=example_messages()),
            reflect_on_tool_use=True,  # after the tool result, one more call writes the answer
        )
        result = await assistant.run(task=task["question"])
    finally:
        await model_client.close()
    final = result.messages[-1]
    return reward(str(getattr(final, "content", "")), float(task["answer"]))
