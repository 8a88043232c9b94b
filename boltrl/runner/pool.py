"""`RunnerPool`: several local runner processes, each `boltrl runner` with `config.n` slots.

Processes sidestep the GIL for CPU-heavy agents and isolate crashes: a runner that dies loses only
its in-flight attempts, which the server marks lost and requeues. The pool restarts nothing by
itself; `exits()` reports the processes that ended, so the owner (the trainer) can decide.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import TracebackType

from boltrl.config import RunnerConfig
from boltrl.errors import InvalidInputError
from boltrl.runner.runner import default_worker_id

log = logging.getLogger(__name__)


class RunnerPool:
    """`processes` runner subprocesses with the same config; `with RunnerPool(...) as pool:`."""

    def __init__(
        self,
        config: RunnerConfig,
        processes: int,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        if processes < 1:
            raise InvalidInputError(f"processes must be at least 1, got {processes}")
        if not config.agent and not config.command:
            raise InvalidInputError("RunnerPool needs config.agent (module:function) or config.command")
        self.config = config
        self.processes = processes
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.procs: list[subprocess.Popen[bytes]] = []
        self._reported: set[int] = set()

    def argv(self, index: int) -> list[str]:
        """The command line of runner `index` (the token travels in the environment, not in argv)."""
        c = self.config
        base = c.worker_id or default_worker_id()
        argv = [sys.executable, "-m", "boltrl", "runner", "--server", c.server, "-n", str(c.n)]
        argv += ["--worker-id", f"{base}-{index}"]
        argv += ["--agent", c.agent] if c.agent else ["--command", c.command or ""]
        if c.max_rollouts is not None:
            argv += ["--max-rollouts", str(c.max_rollouts)]
        return argv

    def child_env(self) -> dict[str, str]:
        c = self.config
        env = dict(self.env)
        env.update(
            BOLTRL_POLL_INTERVAL_S=str(c.poll_interval_s),
            BOLTRL_HEARTBEAT_INTERVAL_S=str(c.heartbeat_interval_s),
            BOLTRL_SHUTDOWN_GRACE_S=str(c.shutdown_grace_s),
        )
        if c.token:
            env["BOLTRL_TOKEN"] = c.token
        return env

    def start(self) -> RunnerPool:
        if self.procs:
            raise InvalidInputError("this RunnerPool is already started")
        env = self.child_env()
        for i in range(self.processes):
            self.procs.append(subprocess.Popen(self.argv(i), env=env, cwd=self.cwd))
        log.info("started %d runner process(es): pids %s", self.processes, [p.pid for p in self.procs])
        return self

    def alive(self) -> int:
        """How many runner processes are still running."""
        return sum(p.poll() is None for p in self.procs)

    def exits(self) -> list[tuple[int, int]]:
        """(index, exit code) of processes that ended since the last call; each is logged once."""
        out = []
        for i, p in enumerate(self.procs):
            code = p.poll()
            if code is not None and i not in self._reported:
                self._reported.add(i)
                (log.info if code == 0 else log.warning)("runner %d (pid %d) exited with %d", i, p.pid, code)
                out.append((i, code))
        return out

    def stop(self, grace_s: float | None = None) -> list[int | None]:
        """SIGTERM every runner, wait for them (their own grace plus `grace_s`), SIGKILL stragglers.

        Returns the exit codes, in process order.
        """
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 10.0  # the runners' own grace, then their final flush
        for p in self.procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("runner pid %d did not stop in time: killing it", p.pid)
                p.kill()
                p.wait()
        self.exits()
        return [p.returncode for p in self.procs]

    def __enter__(self) -> RunnerPool:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["RunnerPool"]
