"""boltrl: train AI agents with reinforcement learning without rewriting them.

The agent API (`rollout`, `LLM`, `emit_reward`, `emit_event`) and the data model import at once; the
server, stores, runner and backends load on first use, so an agent host imports little.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from boltrl.agent import LLM, RolloutAgent, emit_event, emit_reward, rollout
from boltrl.errors import (
    BoltrlError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    MissingDependencyError,
    NotFoundError,
    ServerUnavailableError,
    UnauthorizedError,
)
from boltrl.tracing import current_rollout
from boltrl.types import (
    Attempt,
    Claim,
    ModelCall,
    Resources,
    Reward,
    Rollout,
    RolloutCreate,
    Span,
    Transition,
)

if TYPE_CHECKING:
    from boltrl.algorithms import LightningRL
    from boltrl.runner import Runner, RunnerPool
    from boltrl.server.app import create_app
    from boltrl.store import MemoryStore, SQLiteStore, Store, open_store
    from boltrl.store.client import StoreClient
    from boltrl.training.trainer import Trainer

__version__ = "0.1.0"

_LAZY = {
    "LightningRL": "boltrl.algorithms",
    "MemoryStore": "boltrl.store",
    "Runner": "boltrl.runner",
    "RunnerPool": "boltrl.runner",
    "SQLiteStore": "boltrl.store",
    "Store": "boltrl.store",
    "StoreClient": "boltrl.store.client",
    "Trainer": "boltrl.training.trainer",
    "create_app": "boltrl.server.app",
    "open_store": "boltrl.store",
}

__all__ = [
    "LLM",
    "Attempt",
    "BoltrlError",
    "Claim",
    "ConflictError",
    "ForbiddenError",
    "InvalidInputError",
    "LightningRL",
    "MemoryStore",
    "MissingDependencyError",
    "ModelCall",
    "NotFoundError",
    "Resources",
    "Reward",
    "Rollout",
    "RolloutAgent",
    "RolloutCreate",
    "Runner",
    "RunnerPool",
    "SQLiteStore",
    "ServerUnavailableError",
    "Span",
    "Store",
    "StoreClient",
    "Trainer",
    "Transition",
    "UnauthorizedError",
    "create_app",
    "current_rollout",
    "emit_event",
    "emit_reward",
    "open_store",
    "rollout",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'boltrl' has no attribute {name!r}")
