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
"""

from __future__ import annotations

import asyncio
from typing import Protocol, get_args, runtime_checkable

from boltrl.errors import InvalidInputError
from boltrl.types import (
    ROLLOUT_STATUSES,
    Attempt,
    Claim,
    Mode,
    Resources,
    Rollout,
    RolloutCreate,
    RolloutPage,
    Span,
    SpanCreate,
)


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
    ) -> RolloutPage: ...

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

    async def close(self) -> None: ...


async def notify(changed: asyncio.Condition | None, loop: asyncio.AbstractEventLoop | None) -> None:
    """Wake the `wait()` calls of a store; a condition no waiter of this loop made needs no wake-up."""
    if changed is not None and loop is asyncio.get_running_loop():
        async with changed:
            changed.notify_all()


def check_query(status: str | None, mode: str | None, limit: int) -> None:
    """Reject `list_rollouts` filters that could only ever match nothing, or never end a pagination."""
    if status is not None and status not in ROLLOUT_STATUSES:
        raise InvalidInputError(f"status must be one of {list(ROLLOUT_STATUSES)}, got {status!r}")
    if mode is not None and mode not in get_args(Mode):
        raise InvalidInputError(f"mode must be one of {list(get_args(Mode))}, got {mode!r}")
    if limit < 1:
        raise InvalidInputError(f"limit must be at least 1, got {limit}")


def parse_cursor(after: str | None) -> int:
    """Stores page by an opaque cursor that is, inside, the position of the last rollout returned."""
    if after is None or after == "":
        return -1
    try:
        return int(after)
    except ValueError:
        raise InvalidInputError(
            f"cursor 'after' must be a previous page's next_cursor, got {after!r}"
        ) from None
