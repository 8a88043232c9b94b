"""Request validation: every refusal is a 400 BackendError naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from boltrl.inference.base import BackendError, ChatResult, ChoiceTokens
from boltrl.inference.params import sampling_params
from boltrl.inference.responses import Sampled, chat_result


def test_defaults_and_fields() -> None:
    p = sampling_params({"messages": [], "temperature": 0, "top_p": 0.9, "n": 2, "stop": "X", "seed": 3})
    assert (p.temperature, p.top_p, p.n, p.stop, p.seed, p.max_tokens) == (0.0, 0.9, 2, ("X",), 3, None)
    assert sampling_params({"max_tokens": 5, "max_completion_tokens": 7}).max_tokens == 7
    assert sampling_params({"max_tokens": 5}).max_tokens == 5


def test_choice_seeds_are_reproducible_and_distinct() -> None:
    p = sampling_params({"seed": 1, "n": 2})
    assert p.choice_seed(0) == sampling_params({"seed": 1}).choice_seed(0)
    assert p.choice_seed(0) != p.choice_seed(1)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"stop": [1]}, "stop"),
        ({"seed": 1.5}, "seed"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"top_logprobs": 2}, "top_logprobs"),
    ],
)
def test_bad_parameters_are_400s_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BackendError) as e:
        sampling_params(body)
    assert (e.value.status, e.value.param) == (400, param)
    assert e.value.to_openai()["error"]["param"] == param


def test_neutral_values_and_unknown_fields_pass() -> None:
    sampling_params(
        {"presence_penalty": 0, "logit_bias": {}, "response_format": {"type": "text"}, "user": "u"}
    )


def test_completion_logprobs_is_a_count() -> None:
    p = sampling_params({"logprobs": 2}, chat=False)
    assert (p.logprobs, p.top_logprobs) == (True, 2)
    with pytest.raises(BackendError):
        sampling_params({"echo": True}, chat=False)


def test_chat_result_parses_tool_calls_and_sets_finish_reason() -> None:
    text = '<tool_call>{"name": "calculator", "arguments": {"expression": "2"}}</tool_call>'
    sampled = Sampled(ids=[5, 6], logprobs=[-0.1, -0.2], text=text, finish_reason="stop")
    r = chat_result(
        [sampled], [1, 2, 3], model="m", weights_version=4, parse_tools=True, logprobs=False, token_text=str
    )
    choice = r.response["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "calculator"
    assert r.choices == [ChoiceTokens([5, 6], [-0.1, -0.2], "tool_calls", 1.0)]
    assert r.response["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_model_calls_one_per_choice() -> None:
    a, b = Sampled([1], [-1.0], text="a", finish_reason="stop"), Sampled([2, 3], [-1.0, -2.0], text="bc")
    r: ChatResult = chat_result(
        [a, b], [9], model="m", weights_version=2, parse_tools=False, logprobs=False, token_text=str
    )
    calls = r.model_calls({"messages": []}, latency_ms=3.0, agent="solver")
    assert [(c.response_ids, c.finish_reason, c.weights_version, c.agent) for c in calls] == [
        ([1], "stop", 2, "solver"),
        ([2, 3], "length", 2, "solver"),
    ]
    assert calls[1].response["choices"][0]["message"]["content"] == "bc"
