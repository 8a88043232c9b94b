"""Spans -> transitions: selection, trajectory aggregation and reward steps on crafted token sequences."""

from __future__ import annotations

from typing import Any

from boltrl.adapters import AdapterStats, model_calls, rewards, rollout_transitions
from boltrl.types import MODEL_CALL_SPAN, REWARD_SPAN, ModelCall, Span, reward_span

RID, GID = "r1", "g1"


class Spans:
    """Builds a rollout's spans with seq assigned in order, as the store would."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    def _add(self, name: str, attributes: dict[str, Any]) -> Span:
        span = Span(rollout_id=RID, name=name, attributes=attributes, seq=len(self.spans))
        self.spans.append(span)
        return span

    def call(
        self,
        prompt: list[int],
        response: list[int],
        logprobs: list[float] | None = None,
        **kw: Any,
    ) -> Span:
        lps = logprobs if logprobs is not None else [-0.1 * (i + 1) for i in range(len(response))]
        call = ModelCall(prompt_ids=prompt, response_ids=response, logprobs=lps, **kw)
        return self._add(MODEL_CALL_SPAN, call.model_dump())

    def reward(self, value: float, step: int | None = None) -> Span:
        attributes = reward_span(RID, None, value).attributes
        if step is not None:
            attributes["boltrl.reward.step"] = step
        return self._add(REWARD_SPAN, attributes)

    def other(self) -> Span:
        return self._add("agent.step", {"x": 1})


def test_two_calls_merge_when_prompt_extends_previous_prompt_and_response() -> None:
    s = Spans()
    s.call([1, 2, 3], [10, 11], [-0.5, -0.25])
    # next prompt = previous prompt + response + tool result/template [7, 8, 9]
    s.call([1, 2, 3, 10, 11, 7, 8, 9], [20, 21, 22], [-1.0, -2.0, -3.0])
    s.reward(1.0)
    out = rollout_transitions(RID, GID, s.spans)
    assert len(out.transitions) == 1
    t = out.transitions[0]
    assert t.prompt_ids == [1, 2, 3]
    assert t.response_ids == [10, 11, 7, 8, 9, 20, 21, 22]
    assert t.response_mask == [1, 1, 0, 0, 0, 1, 1, 1]
    assert t.old_logprobs == [-0.5, -0.25, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0]
    assert (t.rollout_id, t.group_id, t.index, t.reward, t.advantage) == (RID, GID, 0, 0.0, 0.0)
    assert out.stats.n_calls == 2 and out.stats.n_merged == 1 and out.stats.n_transitions == 1
    assert out.stats.n_tokens == 3 + 8 and out.stats.n_trainable_tokens == 5
    assert out.stats.metrics()["adapter/merged_calls"] == 1.0


def test_prefix_mismatch_starts_a_new_sample() -> None:
    s = Spans()
    s.call([1, 2, 3], [10, 11])
    s.call([1, 2, 3, 10, 99, 7], [20])  # the agent rewrote the previous response: no merge
    s.call([1, 2], [30])  # shorter than prompt + response of the previous sample: no merge
    out = rollout_transitions(RID, GID, s.spans)
    assert [t.prompt_ids for t in out.transitions] == [[1, 2, 3], [1, 2, 3, 10, 99, 7], [1, 2]]
    assert [t.index for t in out.transitions] == [0, 1, 2]
    assert all(t.response_mask == [1] * len(t.response_ids) for t in out.transitions)
    assert out.stats.n_merged == 0 and out.stats.n_transitions == 3


def test_prompt_equal_to_prefix_with_nothing_between_merges() -> None:
    s = Spans()
    s.call([1, 2], [3])
    s.call([1, 2, 3], [4, 5])  # no tokens in between: responses are just concatenated
    t = rollout_transitions(RID, GID, s.spans).transitions[0]
    assert (t.response_ids, t.response_mask) == ([3, 4, 5], [1, 1, 1])


def test_three_calls_merge_into_one_sample() -> None:
    s = Spans()
    s.call([1], [2, 3], [-0.1, -0.2])
    s.call([1, 2, 3, 4], [5], [-0.3])
    s.call([1, 2, 3, 4, 5, 6, 7], [8, 9], [-0.4, -0.5])
    out = rollout_transitions(RID, GID, s.spans)
    (t,) = out.transitions
    assert t.prompt_ids == [1]
    assert t.response_ids == [2, 3, 4, 5, 6, 7, 8, 9]
    assert t.response_mask == [1, 1, 0, 1, 0, 0, 1, 1]
    assert t.old_logprobs == [-0.1, -0.2, 0.0, -0.3, 0.0, 0.0, -0.4, -0.5]
    assert len(t.response_ids) == len(t.response_mask) == len(t.old_logprobs)
    assert out.stats.n_merged == 2
    # without aggregation: three samples that forward the shared prefix three times
    flat = rollout_transitions(RID, GID, s.spans, merge=False)
    assert [len(t.prompt_ids) + len(t.response_ids) for t in flat.transitions] == [3, 5, 9]
    assert flat.stats.n_tokens == 17 and out.stats.n_tokens == 9
    assert flat.stats.n_trainable_tokens == out.stats.n_trainable_tokens == 5


def test_merge_requires_same_agent_and_temperature() -> None:
    s = Spans()
    s.call([1], [2], agent="writer")
    s.call([1, 2, 3], [4], agent="rewriter")  # prefix matches, but another agent speaks
    s.call([1, 2, 3, 4], [5], agent="rewriter", temperature=0.5)  # another temperature
    s.call([1, 2, 3, 4, 5], [6], agent="rewriter", temperature=0.5)
    out = rollout_transitions(RID, GID, s.spans)
    assert [t.agent for t in out.transitions] == ["writer", "rewriter", "rewriter"]
    assert out.temperatures == [1.0, 1.0, 0.5]
    assert out.transitions[2].response_ids == [5, 6]


def test_agent_filter_keeps_only_selected_agents() -> None:
    s = Spans()
    s.call([1], [2], agent="planner")
    s.call([5], [6], agent="writer")
    s.call([7], [8], agent="rewriter")
    s.call([9], [10])  # no agent name
    out = rollout_transitions(RID, GID, s.spans, agents=["writer", "rewriter"])
    assert [t.agent for t in out.transitions] == ["writer", "rewriter"]
    assert out.stats.dropped == {"agent": 2} and out.stats.n_dropped == 2
    calls, dropped = model_calls(s.spans, agents=["writer"])
    assert [c.agent for c in calls] == ["writer"] and dropped == {"agent": 3}


def test_untrainable_error_and_broken_calls_are_dropped_with_reasons() -> None:
    s = Spans()
    s.call([1], [2])
    s.call([1, 2], [3], trainable=False)  # e.g. a remote API without the policy's logprobs
    s.call([1, 2], [], error="backend overloaded", trainable=True)
    s.call([1, 2], [])  # empty response
    s.call([1, 2], [3, 4], [-0.1])  # one logprob for two tokens
    s._add(MODEL_CALL_SPAN, {"prompt_ids": "not a list"})
    out = rollout_transitions(RID, GID, s.spans)
    assert len(out.transitions) == 1
    assert out.stats.dropped == {
        "untrainable": 1,
        "error": 1,
        "empty_response": 1,
        "logprobs_mismatch": 1,
        "invalid": 1,
    }
    assert out.stats.n_calls == 6 and out.stats.n_dropped == 5
    metrics = out.stats.metrics()
    assert metrics["adapter/dropped_calls"] == 5.0 and metrics["adapter/dropped_untrainable"] == 1.0


def test_spans_out_of_seq_order_are_sorted() -> None:
    s = Spans()
    s.call([1], [2], [-0.2])
    s.other()
    s.call([1, 2, 3], [4], [-0.4])
    s.reward(0.5)
    s.reward(1.0)
    shuffled = list(reversed(s.spans))
    out = rollout_transitions(RID, GID, shuffled)
    (t,) = out.transitions
    assert t.response_ids == [2, 3, 4] and t.old_logprobs == [-0.2, 0.0, -0.4]
    assert [r.value for r in out.rewards] == [0.5, 1.0]
    assert [r.value for r in rewards(shuffled)] == [0.5, 1.0]
    calls, dropped = model_calls(shuffled)
    assert [c.response_ids for c in calls] == [[2], [4]] and dropped == {}


def test_reward_steps_map_to_the_transition_holding_the_call() -> None:
    s = Spans()
    s.reward(0.1)  # before any call: step 0
    s.call([1], [2])  # call 0 -> transition 0
    s.reward(0.2)  # after call 0: step 0
    s.call([5], [6])  # call 1 -> transition 1
    s.call([5, 6, 7], [8])  # call 2 merges into transition 1
    s.reward(0.3)  # after call 2: step 1
    s.call([9], [10], trainable=False)  # call 3 dropped -> latest kept: transition 1
    s.reward(0.4)  # after the dropped call: step 1
    s.reward(0.5, step=0)  # the agent's own call index 0 -> transition 0
    s.reward(0.6, step=2)  # call 2 -> transition 1
    s.reward(0.7, step=99)  # past the end: the last transition
    out = rollout_transitions(RID, GID, s.spans)
    assert len(out.transitions) == 2
    assert [(r.value, r.step) for r in out.rewards] == [
        (0.1, 0),
        (0.2, 0),
        (0.3, 1),
        (0.4, 1),
        (0.5, 0),
        (0.6, 1),
        (0.7, 1),
    ]


def test_rollout_without_calls_keeps_its_rewards() -> None:
    s = Spans()
    s.reward(1.0)
    out = rollout_transitions(RID, None, s.spans)
    assert out.transitions == [] and [(r.value, r.step) for r in out.rewards] == [(1.0, 0)]
    assert out.stats.n_transitions == 0 and out.stats.n_rewards == 1


def test_stats_add_up_over_a_batch() -> None:
    a = AdapterStats(n_calls=2, n_merged=1, n_transitions=1, dropped={"agent": 1}, n_dropped=1)
    b = AdapterStats(n_calls=3, n_transitions=3, dropped={"agent": 2, "error": 1}, n_dropped=3)
    total = a + b
    assert (total.n_calls, total.n_merged, total.n_transitions, total.n_dropped) == (5, 1, 4, 4)
    assert total.dropped == {"agent": 3, "error": 1}
