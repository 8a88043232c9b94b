"""Stores: where rollouts, attempts, spans and resources live. `open_store(url)` picks one."""

from __future__ import annotations

from boltrl.store.base import Store
from boltrl.store.memory import MemoryStore

__all__ = ["MemoryStore", "Store"]
