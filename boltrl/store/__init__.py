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
    `postgresql://USER:PASSWORD@HOST:PORT/DB` (or `postgres://`, `postgresql+psycopg://`): a
    `PostgresStore`, which needs `pip install 'boltrl[scale]'`; several servers may share its database.
    Anything else raises `InvalidInputError`.
    """
    url = url.strip()
    if url in ("memory", "memory://", ":memory:"):
        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://", "postgresql+")):
        from boltrl.store.postgres import PostgresStore  # psycopg is optional: the `scale` extra

        return PostgresStore(url)
    if url.startswith("sqlite://"):
        # SQLAlchemy's spelling wins: sqlite:///runs/a.db is relative, sqlite:////tmp/a.db absolute.
        path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url[len("sqlite://") :]
    elif "://" in url or not url:
        raise InvalidInputError(
            f"store URL {url!r} is not understood: use a file path, sqlite:///PATH, postgresql://... "
            "or 'memory'"
        )
    else:
        path = url
    if not path:
        raise InvalidInputError(f"store URL {url!r} names no file: use sqlite:///PATH")
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(str(Path(path).expanduser()))
