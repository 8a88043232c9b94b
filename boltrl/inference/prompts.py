"""OpenAI request bodies to prompt token ids, through a tokenizer's own chat template (no torch).

A template that renders `tools` gets them natively (arguments as objects, as HF templates expect);
one that ignores them (SmolLM2, the tiny test model) gets the plain-text form of `toolcalls.py`.
The prompt is rendered to text by the template, then encoded without adding special tokens (the
template already has them), which is what `apply_chat_template(tokenize=True)` does too.
"""

from __future__ import annotations

from typing import Any

from boltrl.inference import toolcalls
from boltrl.inference.base import bad_request

ROLES = ("system", "developer", "user", "assistant", "tool")


class ChatPrompter:
    """Renders chat requests for one tokenizer; detects once whether its template supports tools."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.template_tools = toolcalls.template_supports_tools(self.render)

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, **kw: Any) -> str:
        text = self.tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=True, **kw
        )
        return str(text)

    def chat_ids(self, body: dict[str, Any]) -> tuple[list[int], bool]:
        """The prompt token ids and whether tool calls should be parsed from the answer."""
        messages, tools = body.get("messages"), body.get("tools") or None
        if not isinstance(messages, list) or not messages:
            raise bad_request("messages must be a non-empty list", "messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise bad_request(f"messages[{i}] needs a role, one of {list(ROLES)}", f"messages[{i}]")
        if tools is not None and not (
            isinstance(tools, list)
            and all(isinstance(toolcalls.function_of(t).get("name"), str) for t in tools)
        ):
            raise bad_request("tools must be a list of {type: function, function: {name, ...}}", "tools")
        tool_choice = body.get("tool_choice") or "auto"
        use_tools = bool(tools) and tool_choice != "none"
        extra = body.get("chat_template_kwargs") or {}
        try:
            if self.template_tools:
                msgs = [native_message(m) for m in messages]
                text = self.render(msgs, tools if use_tools else None, **extra)
            else:
                text = self.render(toolcalls.to_plain_messages(messages, tools, tool_choice), None, **extra)
        except ValueError as e:
            raise bad_request(f"messages: {e}", "messages") from e
        except Exception as e:  # a jinja error raised by the chat template
            raise bad_request(f"the chat template rejected the messages: {e}", "messages") from e
        return list(self.tokenizer.encode(text, add_special_tokens=False)), use_tools

    def completion_ids(self, prompt: Any) -> list[int]:
        """A completions `prompt`: a string (encoded as the tokenizer does by default) or token ids."""
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
            prompt = prompt[0]  # a batch of one prompt
        if isinstance(prompt, str):
            return list(self.tokenizer.encode(prompt))
        if isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            vocab = len(self.tokenizer)
            if any(not 0 <= t < vocab for t in prompt):
                raise bad_request(f"prompt token ids must be in [0, {vocab})", "prompt")
            return list(prompt)
        raise bad_request(
            "prompt must be a string or a list of token ids (send one request per prompt; "
            "concurrent requests are batched by the backend)",
            "prompt",
        )


def native_message(m: dict[str, Any]) -> dict[str, Any]:
    """A message for a template with tool support: text content, arguments as objects."""
    out = dict(m, content=toolcalls.text_content(m.get("content")))
    if out["role"] == "developer":
        out["role"] = "system"
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {**c, "function": {**c["function"], "arguments": toolcalls.arguments_of(c["function"])}}
            for c in m["tool_calls"]
        ]
    return out
