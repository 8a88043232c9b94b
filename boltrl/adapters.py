"""Spans to transitions: the rollout's recorded model calls become the samples LightningRL trains on.

One finished rollout is a list of spans. Its `boltrl.model_call` spans, in `seq` order, are the steps of
the agent's Markov decision process; its `boltrl.reward` spans are the rewards. This module turns them
into `Transition`s (DESIGN §5.1) and imports no torch, so it runs anywhere spans can be read.

Selection. A call is kept when it is `trainable` (its token ids and logprobs are the policy's own), has
no `error`, has response ids with exactly one logprob each, and, when `agents` is given, was made by one
of those agents (`LightningRL(agents=["writer", "rewriter"])`). Every other call is dropped and counted
under its reason (`DROP_REASONS`).

Trajectory aggregation. A multi-turn agent sends, on turn k+1, the whole conversation so far: the
previous prompt, the model's previous response, then new tokens (tool results, the chat template's
turn markers). When the next call's `prompt_ids` begin exactly with the previous sample's prompt +
response ids, the call is appended to that sample instead of starting a new one:

    sample:  prompt_ids = P1
             response_ids  = R1            | T                  | R2
             response_mask = 1 ... 1       | 0 ... 0            | 1 ... 1
             old_logprobs  = logprobs(R1)  | 0 ... 0            | logprobs(R2)
    where P2 = P1 + R1 + T (T: the tokens between, never sampled by the policy, so never trained on)

Otherwise (the agent rewrote its history, a different agent spoke, or the sampling temperature changed)
a new sample starts. Merging trains on exactly the same response tokens with the same logprobs, but
forwards the shared prefix once instead of once per turn.

Reward steps. For per-step credit every reward belongs to a transition. `Reward.step` set by the agent
is a 0-based model-call index (counting every model call of the rollout, kept or not); without it, a
reward belongs to the latest model call recorded before it (by `seq`). Either way the call index is
mapped to the transition that holds that call (a dropped call maps to the latest kept call before it;
none before: transition 0), and `AdaptedRollout.rewards` carry that transition index as `step`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from boltrl.types import MODEL_CALL_SPAN, REWARD_SPAN, ModelCall, Reward, Span, Transition

DROP_REASONS = ("invalid", "untrainable", "error", "empty_response", "logprobs_mismatch", "agent")
"""Why a model call is not trained on: its attributes do not parse as a `ModelCall`; the backend
could not give the policy's own ids and logprobs; the call failed; no response tokens; not one logprob
per response token; its agent is not among `agents`."""


@dataclass
class AdapterStats:
    """What the adapter did to one rollout (or, summed with `+`, to a batch)."""

    n_calls: int = 0
    """Model-call spans read."""
    n_merged: int = 0
    """Kept calls appended to the previous sample by trajectory aggregation."""
    n_dropped: int = 0
    """Calls not trained on; `dropped` says why."""
    n_transitions: int = 0
    """Samples produced (kept calls minus merged ones)."""
    n_tokens: int = 0
    """Tokens the trainer forwards: prompt + response ids of every transition."""
    n_trainable_tokens: int = 0
    """Response tokens with mask 1 (sampled by the policy; the loss is taken over these)."""
    n_rewards: int = 0
    """Reward spans read."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Dropped calls per reason (keys from `DROP_REASONS`)."""

    def __add__(self, other: AdapterStats) -> AdapterStats:
        return AdapterStats(
            n_calls=self.n_calls + other.n_calls,
            n_merged=self.n_merged + other.n_merged,
            n_dropped=self.n_dropped + other.n_dropped,
            n_transitions=self.n_transitions + other.n_transitions,
            n_tokens=self.n_tokens + other.n_tokens,
            n_trainable_tokens=self.n_trainable_tokens + other.n_trainable_tokens,
            n_rewards=self.n_rewards + other.n_rewards,
            dropped=dict(Counter(self.dropped) + Counter(other.dropped)),
        )

    def metrics(self) -> dict[str, float]:
        """Namespaced metrics: `adapter/calls`, `adapter/merged_calls`, `adapter/dropped_<reason>`, ..."""
        out = {
            "adapter/calls": float(self.n_calls),
            "adapter/merged_calls": float(self.n_merged),
            "adapter/dropped_calls": float(self.n_dropped),
            "adapter/transitions": float(self.n_transitions),
            "adapter/tokens": float(self.n_tokens),
            "adapter/trainable_tokens": float(self.n_trainable_tokens),
            "adapter/rewards": float(self.n_rewards),
        }
        out.update({f"adapter/dropped_{k}": float(v) for k, v in sorted(self.dropped.items())})
        return out


@dataclass
class AdaptedRollout:
    """One rollout made ready for credit assignment: transitions (reward, advantage still 0) and rewards."""

    rollout_id: str
    group_id: str | None
    transitions: list[Transition]
    rewards: list[Reward]
    """In `seq` order, each with `step` = index of the transition it belongs to (see module docstring)."""
    temperatures: list[float]
    """Per transition, the sampling temperature its logprobs were computed at (recompute at the same)."""
    stats: AdapterStats


def calls_in_order(spans: Iterable[Span]) -> list[Span]:
    """The rollout's `boltrl.model_call` spans sorted by `seq`."""
    return sorted((s for s in spans if s.name == MODEL_CALL_SPAN), key=lambda s: s.seq)


def model_calls(
    spans: Iterable[Span], agents: Sequence[str] | None = None
) -> tuple[list[ModelCall], dict[str, int]]:
    """The trainable model calls of a rollout in `seq` order, and the count of dropped calls per reason."""
    kept: list[ModelCall] = []
    dropped: Counter[str] = Counter()
    for span in calls_in_order(spans):
        call, reason = _parse(span, agents)
        if call is None:
            dropped[reason] += 1
        else:
            kept.append(call)
    return kept, dict(dropped)


def rewards(spans: Iterable[Span]) -> list[Reward]:
    """The rollout's rewards in `seq` order, as recorded (`step` as the agent gave it, or None)."""
    return [Reward.from_span(s) for s in sorted(spans, key=lambda s: s.seq) if s.name == REWARD_SPAN]


def rollout_transitions(
    rollout_id: str,
    group_id: str | None,
    spans: Iterable[Span],
    *,
    agents: Sequence[str] | None = None,
    merge: bool = True,
) -> AdaptedRollout:
    """Turn one rollout's spans into transitions (reward and advantage 0) plus its step-resolved rewards."""
    ordered = sorted(spans, key=lambda s: s.seq)
    transitions: list[Transition] = []
    temperatures: list[float] = []
    stats = AdapterStats()
    dropped: Counter[str] = Counter()
    call_to_transition: list[int] = []  # model-call index -> transition index (-1: none kept yet)
    reward_calls: list[tuple[Reward, int]] = []  # reward and the model-call index it belongs to
    for span in ordered:
        if span.name == REWARD_SPAN:
            r = Reward.from_span(span)
            reward_calls.append((r, r.step if r.step is not None else len(call_to_transition) - 1))
            continue
        if span.name != MODEL_CALL_SPAN:
            continue
        stats.n_calls += 1
        call, reason = _parse(span, agents)
        if call is None:
            dropped[reason] += 1
            call_to_transition.append(len(transitions) - 1)
            continue
        temperature = _temperature(call)
        prev = transitions[-1] if transitions else None
        if merge and prev is not None and temperatures[-1] == temperature and _extends(prev, call):
            tail = call.prompt_ids[len(prev.prompt_ids) + len(prev.response_ids) :]
            prev.response_ids += tail + call.response_ids
            prev.response_mask += [0] * len(tail) + [1] * len(call.response_ids)
            prev.old_logprobs += [0.0] * len(tail) + list(call.logprobs)
            stats.n_merged += 1
        else:
            transitions.append(
                Transition(
                    rollout_id=rollout_id,
                    group_id=group_id,
                    index=len(transitions),
                    prompt_ids=list(call.prompt_ids),
                    response_ids=list(call.response_ids),
                    response_mask=[1] * len(call.response_ids),
                    old_logprobs=list(call.logprobs),
                    reward=0.0,
                    agent=call.agent,
                    weights_version=call.weights_version,
                    temperature=temperature,
                )
            )
            temperatures.append(temperature)
        call_to_transition.append(len(transitions) - 1)

    last = len(transitions) - 1
    resolved = []
    for r, call_index in reward_calls:
        if not call_to_transition or call_index < 0:
            step = 0
        else:
            step = max(call_to_transition[min(call_index, len(call_to_transition) - 1)], 0)
        resolved.append(r.model_copy(update={"step": min(step, max(last, 0))}))

    stats.n_dropped = sum(dropped.values())
    stats.dropped = dict(dropped)
    stats.n_transitions = len(transitions)
    stats.n_tokens = sum(len(t.prompt_ids) + len(t.response_ids) for t in transitions)
    stats.n_trainable_tokens = sum(sum(t.response_mask) for t in transitions)
    stats.n_rewards = len(resolved)
    return AdaptedRollout(rollout_id, group_id, transitions, resolved, temperatures, stats)


def _parse(span: Span, agents: Sequence[str] | None) -> tuple[ModelCall | None, str]:
    """The span's `ModelCall` if it is trained on, else None and the reason."""
    try:
        call = ModelCall.model_validate(span.attributes)
    except ValidationError:
        return None, "invalid"
    if not call.trainable:
        return None, "untrainable"
    if call.error is not None:
        return None, "error"
    if not call.response_ids:
        return None, "empty_response"
    if len(call.logprobs) != len(call.response_ids):
        return None, "logprobs_mismatch"
    if agents is not None and call.agent not in agents:
        return None, "agent"
    return call, ""


def _extends(prev: Transition, call: ModelCall) -> bool:
    """True when `call`'s prompt begins with `prev`'s prompt + response and both come from one agent."""
    n_prompt, n_resp = len(prev.prompt_ids), len(prev.response_ids)
    return (
        call.agent == prev.agent
        and len(call.prompt_ids) >= n_prompt + n_resp
        and call.prompt_ids[:n_prompt] == prev.prompt_ids
        and call.prompt_ids[n_prompt : n_prompt + n_resp] == prev.response_ids
    )


def _temperature(call: ModelCall) -> float:
    """The temperature the call's logprobs were computed at, as the backend recorded it."""
    return call.temperature
