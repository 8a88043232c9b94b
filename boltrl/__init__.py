"""boltrl: train AI agents with reinforcement learning without rewriting them."""

from __future__ import annotations

__version__ = "0.1.0"
