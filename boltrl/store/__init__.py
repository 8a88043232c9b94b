"""Stores: where rollouts, attempts, spans and resources live. `open_store(url)` picks one."""

from __future__ import annotations

from pathlib import Path

from boltrl.errors import InvalidInputError
from boltrl.store.base import Store
from boltrl.store.memory import MemoryStore
from boltrl.store.sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """Open the store a `--db` value names.

    `memory` or `memory://`: a `MemoryStore` (gone when the process ends).
    `sqlite:///PATH`, `sqlite://PATH` or a plain path: a `SQLiteStore`, its parent folders created
    (`sqlite:///runs/a.db` is relative to the working directory, `sqlite:////tmp/a.db` absolute).
    Anything else raises `InvalidInputError`; PostgreSQL is not built yet.
    """
    url = url.strip()
    if url in ("memory", "memory://", ":memory:"):
        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://", "postgresql+")):
        raise InvalidInputError(
            f"PostgreSQL stores are not built yet (got {url!r}): use a SQLite file path or 'memory'"
        )
    if url.startswith("sqlite://"):
        # SQLAlchemy's spelling wins: sqlite:///runs/a.db is relative, sqlite:////tmp/a.db absolute.
        path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url[len("sqlite://") :]
    elif "://" in url or not url:
        raise InvalidInputError(
            f"store URL {url!r} is not understood: use a file path, sqlite:///PATH or 'memory'"
        )
    else:
        path = url
    if not path:
        raise InvalidInputError(f"store URL {url!r} names no file: use sqlite:///PATH")
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(str(Path(path).expanduser()))
