"""The data model: every record that crosses a boundary (HTTP body, stored row, span, transition).

Inputs are named `...Create` / `...Request` and forbid unknown fields, so a typo in a client is a 4xx
naming the field rather than silently dropped data. Timestamps are Unix seconds (float, UTC).
The rollout lifecycle is one table, `ROLLOUT_TRANSITIONS`, checked by `check_transition` only.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from boltrl.errors import ConflictError, InvalidInputError

RolloutStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
AttemptStatus = Literal["running", "succeeded", "failed", "timed_out", "lost"]
Mode = Literal["train", "val", "test"]

ROLLOUT_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

# The whole rollout lifecycle. `running -> queued` is a retry after a failed or lost attempt.
ROLLOUT_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "queued"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

# What a worker may report when it finishes an attempt ("lost" is the store's own verdict).
FINISH_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out"})

MODEL_CALL_SPAN = "boltrl.model_call"
REWARD_SPAN = "boltrl.reward"
ROLLOUT_SPAN = "boltrl.rollout"
ROLLOUT_ID_ATTR = "boltrl.rollout_id"
ATTEMPT_ID_ATTR = "boltrl.attempt_id"
REWARD_VALUE_ATTR = "boltrl.reward.value"
REWARD_NAME_ATTR = "boltrl.reward.name"
REWARD_STEP_ATTR = "boltrl.reward.step"

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


def check_transition(old: str, new: str) -> None:
    """Raise `ConflictError` unless the lifecycle table allows `old -> new`."""
    if new not in ROLLOUT_TRANSITIONS.get(old, frozenset()):
        raise ConflictError(f"rollout status cannot change from {old!r} to {new!r}")


def check_finish_status(status: str) -> None:
    if status not in FINISH_STATUSES:
        raise InvalidInputError(f"finish status must be one of {sorted(FINISH_STATUSES)}, got {status!r}")


def attempt_outcome(attempt_status: str, attempt_count: int, max_attempts: int) -> str:
    """The rollout status that follows an attempt ending in `attempt_status`: retry while attempts remain."""
    if attempt_status == "succeeded":
        return "succeeded"
    return "queued" if attempt_count < max_attempts else "failed"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def now() -> float:
    return time.time()


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- tasks and rollouts


class Task(_Record):
    """One item of a dataset: the input an agent receives."""

    id: str
    input: Any
    metadata: dict[str, Any] = Field(default_factory=dict)


class RolloutCreate(_Input):
    """Enqueue one rollout. A caller-supplied `id` makes the enqueue idempotent."""

    id: Id | None = None
    input: Any
    group_id: Id | None = None
    mode: Mode = "train"
    max_attempts: int = Field(default=3, ge=1, le=100)
    timeout_s: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Rollout(_Record):
    """One execution of the agent on one task input, across all of its attempts."""

    id: str
    input: Any
    group_id: str | None = None
    mode: Mode = "train"
    status: RolloutStatus = "queued"
    attempt_count: int = 0
    max_attempts: int = 3
    timeout_s: float = 600.0
    resources_version: int | None = None
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Attempt(_Record):
    """One try of a rollout by one worker."""

    id: str
    rollout_id: str
    n: int
    worker_id: str
    status: AttemptStatus = "running"
    started_at: float
    heartbeat_at: float
    ended_at: float | None = None
    error: str | None = None


class RolloutWithAttempts(Rollout):
    attempts: list[Attempt] = Field(default_factory=list)


class RolloutPage(_Record):
    """A page of a rollout query; pass `next_cursor` as `after` for the next page (None: last page)."""

    rollouts: list[Rollout]
    next_cursor: str | None = None


class EnqueueRequest(_Input):
    rollouts: list[RolloutCreate] = Field(min_length=1, max_length=10_000)


class EnqueueResponse(_Record):
    rollouts: list[Rollout]


class ClaimRequest(_Input):
    worker_id: Id


class FinishRequest(_Input):
    status: Literal["succeeded", "failed", "timed_out"]
    error: str | None = Field(default=None, max_length=100_000)


class WaitRequest(_Input):
    ids: list[Id] = Field(min_length=1, max_length=10_000)
    timeout_s: float = Field(default=30.0, ge=0, le=300)


class WaitResponse(_Record):
    rollouts: list[Rollout]


# ---------------------------------------------------------------- resources


class LLMResource(_Record):
    """How an agent reaches the model: an OpenAI-compatible endpoint and sampling parameters."""

    base_url: str
    model: str = "default"
    api_key: str = "boltrl"
    sampling: dict[str, Any] = Field(default_factory=dict)


class ResourcesUpdate(_Input):
    """Publish a new version of the named resources (e.g. `{"llm": {...}, "prompt": "..."}`)."""

    resources: dict[str, Any]


class Resources(_Record):
    version: int
    resources: dict[str, Any] = Field(default_factory=dict)
    created_at: float


class Claim(_Record):
    """What a worker gets atomically: the rollout, its new attempt, the resources current now."""

    rollout: Rollout
    attempt: Attempt
    resources: Resources | None = None


# ---------------------------------------------------------------- spans


class SpanEvent(_Input):
    name: str
    time: float = Field(default_factory=now)
    attributes: dict[str, Any] = Field(default_factory=dict)


class SpanCreate(_Input):
    """An OpenTelemetry-shaped span to add; the store assigns `seq` per rollout."""

    rollout_id: Id
    attempt_id: Id | None = None
    trace_id: str = Field(default_factory=lambda: uuid.uuid4().hex, max_length=64)
    span_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:16], max_length=32)
    parent_id: str | None = Field(default=None, max_length=32)
    name: str = Field(min_length=1, max_length=1024)
    start: float = Field(default_factory=now)
    end: float | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    events: list[SpanEvent] = Field(default_factory=list)
    status: Literal["unset", "ok", "error"] = "unset"


class Span(SpanCreate):
    model_config = ConfigDict(extra="ignore")

    seq: int


class SpansRequest(_Input):
    spans: list[SpanCreate] = Field(min_length=1, max_length=10_000)


class SpansResponse(_Record):
    spans: list[Span]


class Reward(_Record):
    """A reward read back from a `boltrl.reward` span."""

    value: float
    name: str | None = None
    step: int | None = None

    @classmethod
    def from_span(cls, span: Span) -> Reward:
        a = span.attributes
        return cls(value=a[REWARD_VALUE_ATTR], name=a.get(REWARD_NAME_ATTR), step=a.get(REWARD_STEP_ATTR))


def reward_span(rollout_id: str, attempt_id: str | None, value: float, name: str | None = None) -> SpanCreate:
    """The span that records one reward; what `boltrl reward` and the runner send."""
    attributes: dict[str, Any] = {REWARD_VALUE_ATTR: float(value)}
    if name is not None:
        attributes[REWARD_NAME_ATTR] = name
    t = now()
    return SpanCreate(
        rollout_id=rollout_id, attempt_id=attempt_id, name=REWARD_SPAN, start=t, end=t, attributes=attributes
    )


# ---------------------------------------------------------------- model calls and transitions


class ModelCall(_Record):
    """A recorded LLM call (the attributes of a `boltrl.model_call` span)."""

    request: dict[str, Any] = Field(default_factory=dict)
    response: dict[str, Any] = Field(default_factory=dict)
    prompt_ids: list[int] = Field(default_factory=list)
    response_ids: list[int] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list)
    model: str = ""
    weights_version: int | None = None
    agent: str | None = None
    latency_ms: float = 0.0
    finish_reason: str | None = None
    temperature: float = 1.0
    """The temperature `logprobs` were computed at (log_softmax(logits / T)); 1.0 for greedy calls."""
    trainable: bool = True
    error: str | None = None


class Transition(_Record):
    """The MDP unit the trainer consumes: one (merged) model call with its credit."""

    rollout_id: str
    group_id: str | None
    index: int
    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]
    old_logprobs: list[float]
    reward: float
    advantage: float = 0.0
    agent: str | None = None
    weights_version: int | None = None
    temperature: float = 1.0
    """The sampling temperature of the recorded `old_logprobs`; the trainer recomputes at the same T."""


# ---------------------------------------------------------------- operations: runs, workers, import


class RunMetricsRequest(_Input):
    """Rows of training metrics, one per step: `{"step": 3, "rollout/reward_mean": 0.5, ...}`."""

    rows: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class Run(_Record):
    """A training run known to the store by the metrics it posted."""

    id: str
    steps: int
    """How many rows (steps) are stored."""
    last_step: int
    last: dict[str, Any] = Field(default_factory=dict)
    """The row of `last_step`."""
    created_at: float
    updated_at: float


class RunList(_Record):
    runs: list[Run]


class RunMetrics(_Record):
    run_id: str
    rows: list[dict[str, Any]]


WORKER_ACTIVE_S = 60.0
"""A worker counts as active while it has a running attempt or was heard from this recently."""


class Worker(_Record):
    """A worker as its attempts show it: how many of each outcome, and when it was last heard from."""

    id: str
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    lost: int = 0
    first_seen: float
    """When its first attempt started."""
    last_heartbeat: float
    """The latest heartbeat (or start) of any of its attempts."""

    def is_active(self, now: float) -> bool:
        """Working on an attempt, or heard from within `WORKER_ACTIVE_S`."""
        return self.running > 0 or now - self.last_heartbeat < WORKER_ACTIVE_S


class WorkerList(_Record):
    workers: list[Worker]


class FinishedCounts(_Record):
    since: float
    rollouts: dict[str, int]
    """Rollouts that ended at or after `since`, by terminal status (every one present)."""


class ImportRequest(_Input):
    """A recorded rollout to write as it is (see `Store.import_rollout`)."""

    rollout: Rollout
    attempts: list[Attempt] = Field(default_factory=list, max_length=100)
    spans: list[SpanCreate] = Field(default_factory=list, max_length=10_000)
