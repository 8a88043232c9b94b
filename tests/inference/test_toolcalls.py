"""The plain-text tool-call format: rendering tools and history, parsing generated text back."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from boltrl.inference import toolcalls as tc

CALC = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "examples": ["2 + 3"]}},
            "required": ["expression"],
        },
    },
}
CALC_JSON = json.dumps(CALC["function"])

TOOLS_PROMPT = f"""You can call the following tools. Each tool is described by a JSON schema:
{CALC_JSON}

To call a tool, reply with one line per call in exactly this format:
<tool_call>{{"name": <tool name>, "arguments": <arguments as a JSON object>}}</tool_call>
For example:
<tool_call>{{"name": "calculator", "arguments": {{"expression": "2 + 3"}}}}</tool_call>

Each result comes back to you in a <tool_response></tool_response> block.
If no tool is needed, answer directly."""


def ids() -> Any:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


def call(i: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def test_render_tools_prompt_is_the_documented_text() -> None:
    assert tc.render_tools_prompt([CALC]) == TOOLS_PROMPT


def test_tool_choice_required_and_named_change_the_last_line() -> None:
    assert tc.render_tools_prompt([CALC], "required").endswith("\nYou must call at least one tool.")
    named = {"type": "function", "function": {"name": "calculator"}}
    assert tc.render_tools_prompt([CALC], named).endswith("\nYou must call the tool calculator.")


def test_example_arguments_from_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"enum": ["x", "y"]},
            "c": {"type": "string", "default": "d"},
            "e": {"type": "boolean"},
            "f": {"type": "string"},
        },
        "required": ["a", "b", "c", "e"],
    }
    assert tc.example_arguments(schema) == {"a": 1, "b": "x", "c": "d", "e": True}


def test_history_becomes_plain_text_turns() -> None:
    messages = [
        {"role": "system", "content": "You solve math."},
        {"role": "user", "content": [{"type": "text", "text": "What is 2+3 and 4*5?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                call(1, "calculator", {"expression": "2+3"}),
                call(2, "calculator", {"expression": "4*5"}),
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "5"},
        {"role": "tool", "tool_call_id": "call_2", "content": "20"},
        {"role": "assistant", "content": "5 and 20."},
    ]
    assert tc.to_plain_messages(messages, [CALC]) == [
        {"role": "system", "content": "You solve math.\n\n" + TOOLS_PROMPT},
        {"role": "user", "content": "What is 2+3 and 4*5?"},
        {
            "role": "assistant",
            "content": '<tool_call>{"name": "calculator", "arguments": {"expression": "2+3"}}</tool_call>\n'
            '<tool_call>{"name": "calculator", "arguments": {"expression": "4*5"}}</tool_call>',
        },
        {
            "role": "user",
            "content": "<tool_response>\n5\n</tool_response>\n<tool_response>\n20\n</tool_response>",
        },
        {"role": "assistant", "content": "5 and 20."},
    ]


def test_no_system_message_gets_one_and_tool_choice_none_renders_no_tools() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    assert tc.to_plain_messages(msgs, [CALC]) == [{"role": "system", "content": TOOLS_PROMPT}, msgs[0]]
    assert tc.to_plain_messages(msgs, [CALC], "none") == msgs


def test_assistant_text_before_calls_is_kept() -> None:
    msg = {"role": "assistant", "content": "Let me compute.", "tool_calls": [call(1, "calc", {"x": 1})]}
    assert tc.to_plain_messages([msg]) == [
        {
            "role": "assistant",
            "content": 'Let me compute.\n<tool_call>{"name": "calc", "arguments": {"x": 1}}</tool_call>',
        }
    ]


def test_non_text_content_is_refused() -> None:
    with pytest.raises(ValueError, match="only text"):
        tc.to_plain_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])


def test_parse_one_call() -> None:
    text = '<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 3"}}</tool_call>'
    assert tc.parse_tool_calls(text, ids()) == (
        None,
        [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "2 + 3"}'},
            }
        ],
    )


def test_parse_several_calls_with_text_around() -> None:
    text = (
        "I will compute both.\n"
        '<tool_call>{"name": "a", "arguments": {"x": 1}}</tool_call>\n'
        '<tool_call> {"name": "b", "arguments": {}} </tool_call>\nDone.'
    )
    content, calls = tc.parse_tool_calls(text, ids())
    assert content == "I will compute both.\nDone."
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("call_0", "a", '{"x": 1}'),
        ("call_1", "b", "{}"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>{"name": "a", "arguments": {"x": 1}</tool_call>',  # unbalanced JSON
        "<tool_call>not json</tool_call>",
        '<tool_call>{"arguments": {"x": 1}}</tool_call>',  # no name
        '<tool_call>{"name": "a", "arguments": [1, 2]}</tool_call>',  # arguments not an object
        '<tool_call>{"name": "a", "arguments": {"x": 1}',  # unclosed and incomplete
        "The answer is 5.",
        "",
    ],
)
def test_malformed_output_is_plain_content(text: str) -> None:
    assert tc.parse_tool_calls(text, ids()) == (text, [])


def test_a_malformed_block_stays_in_content_next_to_a_valid_one() -> None:
    text = '<tool_call>oops</tool_call>\n<tool_call>{"name": "a", "arguments": {}}</tool_call>'
    content, calls = tc.parse_tool_calls(text, ids())
    assert content == "<tool_call>oops</tool_call>"
    assert [c["function"]["name"] for c in calls] == ["a"]


def test_unclosed_final_call_with_complete_json_counts() -> None:
    # What a model leaves when generation stops at the stop string "</tool_call>".
    content, calls = tc.parse_tool_calls('Sure. <tool_call>{"name": "a", "arguments": {"q": "x"}}', ids())
    assert content == "Sure."
    assert calls[0]["function"] == {"name": "a", "arguments": '{"q": "x"}'}


def test_parameters_alias_and_string_arguments_are_accepted() -> None:
    text = (
        '<tool_call>{"name": "a", "parameters": {"q": 1}}</tool_call>'
        '<tool_call>{"name": "b", "arguments": "{\\"q\\": 2}"}</tool_call>'
    )
    _, calls = tc.parse_tool_calls(text, ids())
    assert [c["function"]["arguments"] for c in calls] == ['{"q": 1}', '{"q": 2}']


def test_default_ids_look_like_openai_ones() -> None:
    _, calls = tc.parse_tool_calls('<tool_call>{"name": "a", "arguments": {}}</tool_call>')
    assert calls[0]["id"].startswith("call_") and len(calls[0]["id"]) == 29


def test_parse_round_trips_a_rendered_call() -> None:
    rendered = tc.format_call("calculator", tc.arguments_of({"arguments": '{"expression": "1+1"}'}))
    _, calls = tc.parse_tool_calls(rendered, ids())
    assert json.loads(calls[0]["function"]["arguments"]) == {"expression": "1+1"}


def test_template_support_detection() -> None:
    ignores = lambda msgs, tools: "same"  # noqa: E731
    renders = lambda msgs, tools: f"tools={tools}"  # noqa: E731

    def fails(msgs: Any, tools: Any) -> str:
        if tools:
            raise RuntimeError("template error")
        return "x"

    assert tc.template_supports_tools(ignores) is False
    assert tc.template_supports_tools(renders) is True
    assert tc.template_supports_tools(fails) is False
