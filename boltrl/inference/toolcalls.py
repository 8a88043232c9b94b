"""Tool calls for models whose chat template has no tool support, as plain text (pure, no torch).

The format is the Hermes/Qwen one, one call per line:

    <tool_call>{"name": "calculator", "arguments": {"expression": "2 + 3"}}</tool_call>

`to_plain_messages` renders the OpenAI `tools` into the system prompt (instruction, JSON schemas, one
example call) and turns earlier assistant `tool_calls` and `tool` results into plain text turns in
that same format (results as a user turn `<tool_response>...</tool_response>`). `parse_tool_calls`
turns generated text back into OpenAI `tool_calls`; a block that is not valid JSON with a `name`
stays in the content as text, and text outside the blocks is kept as content.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"

_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_PLACEHOLDER = {"string": "text", "number": 1, "integer": 1, "boolean": True, "array": [], "object": {}}


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def function_of(tool: dict[str, Any]) -> dict[str, Any]:
    """The `function` part of an OpenAI tool (also accepts a bare function schema)."""
    fn = tool.get("function", tool)
    return fn if isinstance(fn, dict) else {}


def example_arguments(parameters: dict[str, Any]) -> dict[str, Any]:
    """Example arguments from a JSON schema: a schema example, default or enum value, else a placeholder."""
    props = parameters.get("properties") or {}
    names = parameters.get("required") or list(props)
    args: dict[str, Any] = {}
    for name in names:
        schema = props.get(name) or {}
        if schema.get("examples"):
            args[name] = schema["examples"][0]
        elif "example" in schema:
            args[name] = schema["example"]
        elif "default" in schema:
            args[name] = schema["default"]
        elif schema.get("enum"):
            args[name] = schema["enum"][0]
        else:
            kind = schema.get("type", "string")
            args[name] = _PLACEHOLDER.get(kind if isinstance(kind, str) else kind[0], "text")
    return args


def arguments_of(function: dict[str, Any]) -> Any:
    """A call's arguments as an object: OpenAI sends a JSON string; one that does not parse stays a string."""
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            return json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return arguments
    return arguments


def format_call(name: str, arguments: Any) -> str:
    """One call in the text format; `arguments` is an object (or a string that was not JSON)."""
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


def render_tools_prompt(tools: list[dict[str, Any]], tool_choice: Any = "auto") -> str:
    """The system-prompt section that teaches a model without tool support how to call `tools`."""
    schemas = "\n".join(json.dumps(function_of(t), ensure_ascii=False) for t in tools)
    first = function_of(tools[0])
    example = format_call(first.get("name", "tool"), example_arguments(first.get("parameters") or {}))
    lines = [
        "You can call the following tools. Each tool is described by a JSON schema:",
        schemas,
        "",
        "To call a tool, reply with one line per call in exactly this format:",
        TOOL_CALL_OPEN + '{"name": <tool name>, "arguments": <arguments as a JSON object>}' + TOOL_CALL_CLOSE,
        "For example:",
        example,
        "",
        f"Each result comes back to you in a {TOOL_RESPONSE_OPEN}{TOOL_RESPONSE_CLOSE} block.",
    ]
    if tool_choice == "required":
        lines.append("You must call at least one tool.")
    elif isinstance(tool_choice, dict):
        lines.append(f"You must call the tool {function_of(tool_choice).get('name')}.")
    else:
        lines.append("If no tool is needed, answer directly.")
    return "\n".join(lines)


def text_content(content: Any) -> str:
    """A message's content as text: a string, None, or a list of `{"type": "text"}` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                raise ValueError("only text content parts are supported")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise ValueError("message content must be a string, null or a list of text parts")


def assistant_text(message: Mapping[str, Any]) -> str:
    """An assistant message as text: its content, then one `<tool_call>` line per call (what a model
    without template tool support generates, and what `parse_tool_calls` reads back)."""
    content = text_content(message.get("content"))
    calls = [
        format_call(function_of(c).get("name", ""), arguments_of(function_of(c)))
        for c in message.get("tool_calls") or []
    ]
    return "\n".join(([content] if content else []) + calls)


def to_plain_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, tool_choice: Any = "auto"
) -> list[dict[str, str]]:
    """Messages with only `role` and string `content`, tools and tool calls rendered as text.

    The tool section is appended to the first system message (or becomes a new first one); consecutive
    `tool` messages become one user turn of `<tool_response>` blocks, in order.
    """
    out: list[dict[str, str]] = []
    prev_tool = False
    for msg in messages:
        role, content = msg.get("role", "user"), text_content(msg.get("content"))
        if role == "tool":
            block = f"{TOOL_RESPONSE_OPEN}\n{content}\n{TOOL_RESPONSE_CLOSE}"
            if prev_tool:
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block})
            prev_tool = True
            continue
        prev_tool = False
        if role == "assistant" and msg.get("tool_calls"):
            content = assistant_text(msg)
        out.append({"role": "system" if role == "developer" else role, "content": content})
    if tools and tool_choice != "none":
        section = render_tools_prompt(tools, tool_choice)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{section}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": section})
    return out


def _parse_call(raw: str, new_id: Callable[[], str]) -> dict[str, Any] | None:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models double-encode; keep it only if it is a JSON object
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    arguments = json.dumps(args, ensure_ascii=False)
    return {"id": new_id(), "type": "function", "function": {"name": obj["name"], "arguments": arguments}}


def parse_tool_calls(
    text: str, new_id: Callable[[], str] = new_call_id
) -> tuple[str | None, list[dict[str, Any]]]:
    """Split generated text into (content, OpenAI tool_calls).

    Without a valid call the text is returned unchanged as content. With calls, the valid blocks are
    cut out, the rest (stripped) is the content, None when empty. An unclosed final block counts when
    its JSON is complete (generation stopped at `</tool_call>`).
    """
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    pos = 0
    for m in _BLOCK.finditer(text):
        call = _parse_call(m.group(1).strip(), new_id)
        if call is None:
            continue
        calls.append(call)
        kept.append(text[pos : m.start()])
        pos = m.end()
    if not calls:
        return text, []
    kept.append(text[pos:])
    content = "\n".join(s.strip() for s in kept if s.strip())
    return content or None, calls


def template_supports_tools(
    render: Callable[[list[dict[str, Any]], list[dict[str, Any]] | None], str],
) -> bool:
    """Whether a chat template renders `tools`: a probe prompt must change when tools are given."""
    probe = [{"role": "user", "content": "What is 2 + 3?"}]
    tool = {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression.",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
        },
    }
    try:
        return render(probe, [tool]) != render(probe, None)
    except Exception:  # a template that fails on tools does not support them
        return False
