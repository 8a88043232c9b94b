"""Dump rollouts with their attempts and spans to JSON Lines, read a dump back, replay it into a store.

A dump has one JSON object per line, `{"rollout": {...}, "attempts": [...], "spans": [...]}`, in queue
order; a name ending in `.gz` is gzip-compressed. Dumping pages through the store (`page_size`
rollouts at a time), so memory stays flat however big the store. Replaying writes each rollout with
`Store.import_rollout`: ids, statuses and times as recorded, spans de-duplicated by `span_id`, so a
replay can be repeated or resumed. `read_dump` is what training from recorded rollouts reads.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from pydantic import BaseModel, Field, ValidationError

from boltrl.errors import InvalidInputError
from boltrl.store.base import Store
from boltrl.types import Attempt, Rollout, Span

PAGE_SIZE = 50
"""Rollouts read per page while dumping (their attempts and spans are fetched concurrently)."""
REPLAY_CONCURRENCY = 8
"""Rollouts imported at once while replaying."""


class DumpRecord(BaseModel):
    """One line of a dump."""

    rollout: Rollout
    attempts: list[Attempt] = Field(default_factory=list)
    spans: list[Span] = Field(default_factory=list)


def _open(path: str | Path, mode: str) -> IO[bytes]:
    if str(path).endswith(".gz"):
        return gzip.open(path, mode + "b")  # type: ignore[return-value]
    return open(path, mode + "b")


async def dump(
    store: Store,
    out: str | Path,
    *,
    status: str | None = None,
    mode: str | None = None,
    group_id: str | None = None,
    page_size: int = PAGE_SIZE,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the rollouts that match the filters to `out`; returns how many. `progress(n)` after each page."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with _open(out, "w") as f:
        after: str | None = None
        while True:
            page = await store.list_rollouts(
                status=status, mode=mode, group_id=group_id, limit=page_size, after=after
            )
            records = await asyncio.gather(*(_record(store, r) for r in page.rollouts))
            for record in records:
                f.write(record.__pydantic_serializer__.to_json(record) + b"\n")
            written += len(records)
            if progress is not None:
                progress(len(records))
            if page.next_cursor is None:
                return written
            after = page.next_cursor


async def _record(store: Store, rollout: Rollout) -> DumpRecord:
    attempts, spans = await asyncio.gather(store.list_attempts(rollout.id), store.get_spans(rollout.id))
    return DumpRecord.model_construct(rollout=rollout, attempts=attempts, spans=spans)


def read_dump(path: str | Path) -> Iterator[tuple[Rollout, list[Attempt], list[Span]]]:
    """Yield `(rollout, attempts, spans)` for each line of a dump, one line in memory at a time.
    A line that is not a record raises `InvalidInputError` naming the file and line."""
    for record, _ in _records(path):
        yield record.rollout, record.attempts, record.spans


def _records(path: str | Path) -> Iterator[tuple[DumpRecord, int]]:
    """Each record and the bytes its line took."""
    with _open(path, "r") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield DumpRecord.model_validate_json(line), len(line)
            except ValidationError as e:
                problem = "; ".join(
                    f"{'.'.join(str(x) for x in err['loc']) or 'line'}: {err['msg']}"
                    for err in e.errors()[:3]
                )
                raise InvalidInputError(f"{path}:{number}: not a boltrl dump record: {problem}") from None


class ReplayResult(BaseModel):
    rollouts: int = 0
    """Rollouts in the dump (each is now in the store)."""
    spans: int = 0
    """Spans in the dump (the store keeps one of each `span_id` per rollout)."""


async def replay(
    store: Store,
    path: str | Path,
    *,
    concurrency: int = REPLAY_CONCURRENCY,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Import every rollout of the dump at `path` into `store`. `progress(bytes)` after each batch."""
    result = ReplayResult()
    batch: list[tuple[DumpRecord, int]] = []

    async def flush() -> None:
        await asyncio.gather(*(store.import_rollout(r.rollout, r.attempts, list(r.spans)) for r, _ in batch))
        result.rollouts += len(batch)
        result.spans += sum(len(r.spans) for r, _ in batch)
        if progress is not None:
            progress(sum(n for _, n in batch))
        batch.clear()

    for item in _records(path):
        batch.append(item)
        if len(batch) >= concurrency:
            await flush()
    if batch:
        await flush()
    return result


def dump_size(path: str | Path) -> int | None:
    """The byte total `replay` reports progress against (None for a compressed dump)."""
    return None if str(path).endswith(".gz") else Path(path).stat().st_size


__all__ = ["DumpRecord", "ReplayResult", "dump", "dump_size", "read_dump", "replay"]
