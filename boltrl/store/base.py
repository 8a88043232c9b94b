"""The `Store` protocol: the one interface to rollouts, attempts, spans and resources.

Every implementation (SQLite, memory, the HTTP `StoreClient`, later PostgreSQL) passes the same
conformance suite in `tests/store/test_conformance.py`, so the server, runners and trainer never know
which one they hold. All methods are coroutines: the server and runners are asyncio programs, and the
HTTP client must not block them.

Semantics every store keeps:
- `enqueue` is idempotent on caller ids: an id that exists returns the stored rollout unchanged.
- `claim` is atomic: under any number of concurrent claimers a queued rollout is claimed once. It takes
  the oldest queued rollout, opens attempt n+1 and returns the resources current at that moment.
- `finish_attempt(succeeded)` ends the rollout `succeeded`; `failed`/`timed_out` requeue it while
  `attempt_count < max_attempts`, else end it `failed`. Finishing an attempt that is not running is a
  `ConflictError` (409); so is a heartbeat on one, which tells its worker to stop.
- `reap` marks running attempts whose heartbeat is older than `heartbeat_timeout_s` `lost`, and
  those running past their rollout's `timeout_s` (plus the same grace) `timed_out`, and requeues or
  fails their rollouts by the same rule.
- `add_spans` gives each span the next `seq` of its rollout (0, 1, 2, ...), in the order given; a span
  whose `(rollout_id, span_id)` is already stored is not added again (retries are safe): the stored
  copy is returned in its place.
- Unknown ids raise `NotFoundError`; forbidden status changes raise `ConflictError`.
- `list_rollouts(order="desc")` pages newest first (the dashboard and `boltrl rollouts`).
- `add_run_metrics` keeps one row per `(run_id, step)`: a row posted again replaces the stored one.
- `list_workers` and `count_finished` are derived from attempts and rollouts: nothing else to keep.
- `import_rollout` writes a recorded rollout as it is (ids, statuses, times); a rollout id that exists
  is left unchanged and only its spans not yet stored (by `span_id`) are added, so a replay repeats
  safely.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Protocol, get_args, runtime_checkable

from boltrl.errors import InvalidInputError
from boltrl.types import (
    ROLLOUT_STATUSES,
    TERMINAL_STATUSES,
    Attempt,
    Claim,
    Mode,
    Resources,
    Rollout,
    RolloutCreate,
    RolloutPage,
    Run,
    Span,
    SpanCreate,
    Worker,
)

ORDERS = ("asc", "desc")
MAX_METRIC_KEY = 200


@runtime_checkable
class Store(Protocol):
    async def enqueue(self, rollouts: list[RolloutCreate]) -> list[Rollout]: ...

    async def get_rollout(self, rollout_id: str) -> Rollout: ...

    async def list_rollouts(
        self,
        *,
        status: str | None = None,
        group_id: str | None = None,
        mode: str | None = None,
        limit: int = 100,
        after: str | None = None,
        order: str = "asc",
    ) -> RolloutPage:
        """Rollouts in queue order (`order="desc"`: newest first), filtered, by pages of `limit`."""
        ...

    async def cancel(self, rollout_id: str) -> Rollout: ...

    async def claim(self, worker_id: str) -> Claim | None: ...

    async def heartbeat(self, attempt_id: str) -> Attempt: ...

    async def finish_attempt(self, attempt_id: str, status: str, error: str | None = None) -> Attempt: ...

    async def get_attempt(self, attempt_id: str) -> Attempt: ...

    async def list_attempts(self, rollout_id: str) -> list[Attempt]: ...

    async def wait(self, rollout_ids: list[str], timeout_s: float) -> list[Rollout]:
        """Return the rollouts of `rollout_ids` that are terminal, as soon as all of them are, or at
        `timeout_s` with whichever are by then. Unknown ids raise `NotFoundError`."""
        ...

    async def add_spans(self, spans: list[SpanCreate]) -> list[Span]: ...

    async def get_spans(self, rollout_id: str, *, attempt_id: str | None = None) -> list[Span]: ...

    async def get_resources(self, version: int | None = None) -> Resources | None: ...

    async def put_resources(self, resources: dict[str, object]) -> Resources: ...

    async def reap(self, heartbeat_timeout_s: float) -> list[Attempt]: ...

    async def count_rollouts(self) -> dict[str, int]:
        """Number of rollouts by status (every status present, zero included)."""
        ...

    async def count_finished(self, since: float) -> dict[str, int]:
        """Rollouts that ended at or after `since` (Unix seconds), by terminal status (zeros included)."""
        ...

    async def list_workers(self) -> list[Worker]:
        """Every worker that ever claimed, from its attempts; the most recently heard from first."""
        ...

    async def add_run_metrics(self, run_id: str, rows: list[dict[str, Any]]) -> Run:
        """Store a training run's metric rows (each with an int `step`); a step posted again is replaced."""
        ...

    async def get_run_metrics(self, run_id: str) -> list[dict[str, Any]]:
        """A run's rows in `step` order; an unknown run raises `NotFoundError`."""
        ...

    async def list_runs(self) -> list[Run]:
        """Every run that posted metrics, the most recently updated first."""
        ...

    async def import_rollout(
        self, rollout: Rollout, attempts: list[Attempt], spans: list[SpanCreate]
    ) -> Rollout:
        """Write a recorded rollout with its attempts and spans as they are (a replayed dump). Spans get
        `seq` in the order given. If the rollout id exists, the stored rollout and attempts are kept and
        only spans whose `span_id` is new are added. Returns the stored rollout."""
        ...

    async def close(self) -> None: ...


async def notify(changed: asyncio.Condition | None, loop: asyncio.AbstractEventLoop | None) -> None:
    """Wake the `wait()` calls of a store; a condition no waiter of this loop made needs no wake-up."""
    if changed is not None and loop is asyncio.get_running_loop():
        async with changed:
            changed.notify_all()


def check_query(status: str | None, mode: str | None, limit: int, order: str = "asc") -> None:
    """Reject `list_rollouts` filters that could only ever match nothing, or never end a pagination."""
    if order not in ORDERS:
        raise InvalidInputError(f"order must be one of {list(ORDERS)}, got {order!r}")
    if status is not None and status not in ROLLOUT_STATUSES:
        raise InvalidInputError(f"status must be one of {list(ROLLOUT_STATUSES)}, got {status!r}")
    if mode is not None and mode not in get_args(Mode):
        raise InvalidInputError(f"mode must be one of {list(get_args(Mode))}, got {mode!r}")
    if limit < 1:
        raise InvalidInputError(f"limit must be at least 1, got {limit}")


def parse_cursor(after: str | None, order: str = "asc") -> int:
    """Stores page by an opaque cursor that is, inside, the position of the last rollout returned."""
    if after is None or after == "":
        return -1 if order == "asc" else 2**62
    try:
        return int(after)
    except ValueError:
        raise InvalidInputError(
            f"cursor 'after' must be a previous page's next_cursor, got {after!r}"
        ) from None


def finished_counts() -> dict[str, int]:
    return dict.fromkeys(sorted(TERMINAL_STATUSES), 0)


def check_metric_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate metric rows (an int `step` >= 0 each, string keys) and return them with non-finite floats
    as None (JSON has no NaN). A bad row is an `InvalidInputError` naming its index."""
    clean: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInputError(f"rows.{i}: must be an object, got {type(row).__name__}")
        step = row.get("step")
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise InvalidInputError(f"rows.{i}.step: must be an integer >= 0, got {row.get('step')!r}")
        for key in row:
            if not isinstance(key, str) or not 0 < len(key) <= MAX_METRIC_KEY:
                raise InvalidInputError(f"rows.{i}: keys must be strings of 1 to {MAX_METRIC_KEY} characters")
        out = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        out["step"] = step
        clean.append(out)
    return clean


def check_import(
    rollout: Rollout, attempts: list[Attempt], spans: list[SpanCreate], known: set[str] | None = None
) -> None:
    """The attempts and spans of an imported rollout must be its own. `known`: the attempt ids spans may
    name (default: those given; for a rollout already stored, its stored attempts)."""
    attempt_ids = {a.id for a in attempts}
    known = attempt_ids if known is None else known
    for a in attempts:
        if a.rollout_id != rollout.id:
            raise InvalidInputError(
                f"attempt {a.id!r} belongs to rollout {a.rollout_id!r}, not {rollout.id!r}"
            )
    if len(attempt_ids) != len(attempts):
        raise InvalidInputError(f"attempts of rollout {rollout.id!r} repeat an id")
    for s in spans:
        if s.rollout_id != rollout.id:
            raise InvalidInputError(
                f"span {s.span_id!r} belongs to rollout {s.rollout_id!r}, not {rollout.id!r}"
            )
        if s.attempt_id is not None and s.attempt_id not in known:
            raise InvalidInputError(
                f"span {s.span_id!r} names attempt {s.attempt_id!r}, not one of rollout {rollout.id!r}"
            )


def creatable(span: SpanCreate) -> SpanCreate:
    """A `Span` (with its old `seq`) as the `SpanCreate` it was; the store gives it a new `seq`."""
    if type(span) is SpanCreate:
        return span
    return SpanCreate.model_validate(span.model_dump(exclude={"seq"}))


def worker_sort_key(w: Worker) -> tuple[float, str]:
    return (-w.last_heartbeat, w.id)
