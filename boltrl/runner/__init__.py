"""Runners: processes that claim rollouts from a server and run an agent on them (see docs/runner.md)."""

from __future__ import annotations

from boltrl.runner.pool import RunnerPool
from boltrl.runner.ray import RayRunners
from boltrl.runner.runner import RELEASED, Runner, default_worker_id, load_agent, run_runner

__all__ = ["RELEASED", "RayRunners", "Runner", "RunnerPool", "default_worker_id", "load_agent", "run_runner"]
