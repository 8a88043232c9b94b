"""The runner: claim a rollout, run the agent on it with a timeout and heartbeats, store its spans, finish.

`Runner(store, agent).run()` runs `config.n` slots concurrently. Each slot loops: claim (sleeping
`poll_interval_s`, with jitter, while the queue is empty), open the root span, call
`on_rollout_start`, run the agent under the rollout's `timeout_s` while a side task heartbeats, then
flush the spans and finish the attempt:

| what happened                          | attempt finished as                        |
|----------------------------------------|--------------------------------------------|
| returned (a float is emitted "final")  | `succeeded`                                |
| raised                                 | `failed`, error = last traceback lines     |
| ran past `timeout_s`                   | `timed_out`                                |
| heartbeat answered 409 (lost/cancelled)| not finished: the store already ended it   |
| runner stopping, grace spent           | `failed`, "released: runner shutting down" |

The store requeues failed and timed-out rollouts while attempts remain. A store that is away raises
`ServerUnavailableError` after the client's own retries; the runner logs it and keeps trying, and
never drops a finish: it retries until the finish lands or the store answers that it is moot (409).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import os
import random
import re
import signal
import socket
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from boltrl.agent import LLM, RolloutAgent, as_agent, call_hook, emit_reward
from boltrl.config import RunnerConfig
from boltrl.errors import BoltrlError, ConflictError, InvalidInputError, NotFoundError, UnauthorizedError
from boltrl.runner.command import CommandFailedError, command_env, run_command
from boltrl.server.auth import attempt_token
from boltrl.store.base import Store
from boltrl.tracing import RolloutContext, Tracing, rollout_scope, traceparent
from boltrl.types import Claim

log = logging.getLogger(__name__)

RELEASED = "released: runner shutting down"
ERROR_TAIL_LINES = 15
ERROR_MAX_CHARS = 8000
MAX_BACKOFF_S = 10.0
CANCEL_WAIT_S = 5.0


def default_worker_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.:\-]", "-", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


@dataclass
class _Active:
    """One in-flight attempt: the agent task and why, if anyone cancelled it."""

    claim: Claim
    task: asyncio.Task[Any] | None = None
    cancel_reason: str | None = None  # "lost" | "released"
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None and self.task is not None and not self.task.done():
            self.cancel_reason = reason
            self.task.cancel()


class Runner:
    """Runs an agent (a `@rollout` function, a plain function, or a command line) on claimed rollouts."""

    def __init__(
        self,
        store: Store,
        agent: RolloutAgent | Any | None = None,
        *,
        command: str | None = None,
        config: RunnerConfig | None = None,
    ) -> None:
        self.store = store
        self.config = config or RunnerConfig()
        if agent is not None and command:
            raise InvalidInputError("give the Runner an agent or a command, not both")
        command = command if command is not None else (None if agent is not None else self.config.command)
        if agent is None and not command:
            raise InvalidInputError("Runner needs an agent (a @rollout function) or a command")
        if self.config.n < 1:
            raise InvalidInputError(f"RunnerConfig.n must be at least 1, got {self.config.n}")
        self.agent: RolloutAgent | None = as_agent(agent) if agent is not None else None
        self.command = command
        self.worker_id = self.config.worker_id or default_worker_id()
        self.completed = 0
        self._claimed = 0
        self._active: dict[str, _Active] = {}
        self._stopping: asyncio.Event | None = None
        self._stop_requested = False
        self._grace_s = self.config.shutdown_grace_s
        self._tracing: Tracing | None = None

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run until stopped or `max_rollouts` are done; flush and detach tracing on the way out."""
        self._stopping = asyncio.Event()
        if self._stop_requested:
            self._stopping.set()
        self._tracing = Tracing(self.store)
        log.info("runner %s: %d slot(s) on %s", self.worker_id, self.config.n, self._agent_name())
        releaser = asyncio.create_task(self._release_after_grace())
        try:
            await asyncio.gather(*(self._slot(i) for i in range(self.config.n)))
        finally:
            releaser.cancel()
            await self._tracing.flush()
            await self._tracing.shutdown()
        log.info("runner %s: stopped after %d rollout(s)", self.worker_id, self.completed)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; in-flight rollouts get `grace_s` (default shutdown_grace_s), then are released."""
        if grace_s is not None:
            self._grace_s = grace_s
        self._stop_requested = True
        if self._stopping is not None:
            self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    async def _release_after_grace(self) -> None:
        assert self._stopping is not None
        await self._stopping.wait()
        if self._active:
            log.info("runner stopping: %d rollout(s) in flight, grace %g s", len(self._active), self._grace_s)
        pending = [a.done.wait() for a in self._active.values()]
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending), self._grace_s)
        for active in list(self._active.values()):
            active.cancel("released")

    # ------------------------------------------------------------ slots

    async def _slot(self, index: int) -> None:
        assert self._stopping is not None
        backoff = self.config.poll_interval_s
        while not self._stopping.is_set():
            if self.config.max_rollouts is not None and self._claimed >= self.config.max_rollouts:
                return
            self._claimed += 1  # reserved before the await, so slots never overshoot max_rollouts
            try:
                claim = await self.store.claim(self.worker_id)
            except UnauthorizedError:
                raise
            except Exception as e:
                self._claimed -= 1
                log.warning("claim failed (%s: %s); retrying in %.1f s", type(e).__name__, e, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = self.config.poll_interval_s
            if claim is None:
                self._claimed -= 1
                await self._sleep(self.config.poll_interval_s * random.uniform(0.5, 1.5))
                continue
            if self._stopping.is_set():  # stopped while the claim was on its way: hand it back
                await self._finish(claim.attempt.id, "failed", RELEASED)
                return
            await self._run_claim(claim)
            self.completed += 1

    async def _sleep(self, seconds: float) -> None:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # ------------------------------------------------------------ one attempt

    async def _run_claim(self, claim: Claim) -> None:
        assert self._tracing is not None
        rollout, attempt = claim.rollout, claim.attempt
        ctx = RolloutContext(rollout.id, attempt.id, attempt_n=attempt.n, mode=rollout.mode)
        active = _Active(claim)
        self._active[attempt.id] = active
        root = self._tracing.start_rollout(ctx, {"boltrl.agent": self._agent_name()})
        llm = LLM.for_attempt(claim, self.config.server)
        status, error, reward = "failed", None, None
        log.info("rollout %s attempt %d (%s): started", rollout.id, attempt.n, attempt.id)
        try:
            with rollout_scope(ctx, root):
                # The task copies this context: the agent sees the rollout and its root span.
                active.task = asyncio.create_task(self._execute(claim, llm, root))
            active.task.add_done_callback(_retrieve)  # read below, or (after a timeout) nowhere
            heartbeat = asyncio.create_task(self._heartbeat(active))
            try:
                done, _ = await asyncio.wait({active.task}, timeout=rollout.timeout_s)
            finally:
                heartbeat.cancel()
            if not done:
                active.cancel("timeout")
                # An agent that swallows the cancellation must not hold the slot forever.
                await asyncio.wait({active.task}, timeout=CANCEL_WAIT_S)
                status, error = "timed_out", f"rollout timed out after {rollout.timeout_s:g} s"
            elif active.task.cancelled():
                status = "lost" if active.cancel_reason == "lost" else "failed"
                error = RELEASED if active.cancel_reason == "released" else "agent task was cancelled"
            elif (exc := active.task.exception()) is not None:
                status, error = "failed", _error_text(exc)
            else:
                status, reward = "succeeded", active.task.result()
                if reward is not None:
                    with rollout_scope(ctx, root):
                        emit_reward(reward, name="final")
        finally:
            root.set_attribute("boltrl.status", status)
            self._tracing.end_rollout(ctx)
            await self._flush()
            if status != "lost":
                await self._finish(attempt.id, status, error)
            else:
                status = await self._attempt_status(attempt.id, default="lost")
            self._active.pop(attempt.id, None)
            active.done.set()
        log.info("rollout %s attempt %d: %s%s", rollout.id, attempt.n, status, f" ({error})" if error else "")
        if self.agent is not None:
            try:
                await call_hook(self.agent.on_rollout_end, rollout, attempt, status, reward)
            except Exception:
                log.exception("on_rollout_end hook failed for rollout %s", rollout.id)

    async def _execute(self, claim: Claim, llm: LLM, root: Any) -> float | None:
        """The agent task: start hook, agent, and a check that it returned a reward or None."""
        if self.agent is None:
            assert self.command is not None
            env = command_env(
                llm=llm,
                rollout_id=claim.rollout.id,
                attempt_id=claim.attempt.id,
                server=self.config.server,
                # The attempt's own token, never the runner's: the command is the code under training.
                token=attempt_token(self.config.token, claim.rollout.id, claim.attempt.id)
                if self.config.token
                else None,
                task_input=claim.rollout.input,
                traceparent=traceparent(root),
            )
            await run_command(self.command, env)
            return None
        await call_hook(self.agent.on_rollout_start, claim.rollout, claim.attempt)
        result = await self.agent.run(claim.rollout.input, llm)
        if result is None:
            return None
        if isinstance(result, int | float) and math.isfinite(result):
            return float(result)
        raise InvalidInputError(
            f"agent {self.agent.name!r} returned {result!r:.80}; return a finite float reward, or None "
            "after emit_reward()"
        )

    async def _heartbeat(self, active: _Active) -> None:
        attempt_id = active.claim.attempt.id
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            try:
                await self.store.heartbeat(attempt_id)
            except (ConflictError, NotFoundError) as e:
                log.warning("attempt %s is no longer ours (%s): stopping its agent", attempt_id, e)
                active.cancel("lost")
                return
            except Exception as e:  # the store is away: keep working, keep trying
                log.warning("heartbeat for attempt %s failed: %s", attempt_id, e)

    async def _flush(self) -> None:
        assert self._tracing is not None
        for _ in range(3):
            if await self._tracing.flush():
                return
        log.error("spans could not all be stored before finishing")

    async def _finish(self, attempt_id: str, status: str, error: str | None) -> None:
        delay = self.config.poll_interval_s
        while True:
            try:
                await self.store.finish_attempt(attempt_id, status, error)
                return
            except (ConflictError, NotFoundError) as e:
                log.warning("attempt %s was not finished as %s: %s", attempt_id, status, e)
                return
            except Exception as e:
                log.warning("finishing attempt %s failed (%s); retrying in %.1f s", attempt_id, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    async def _attempt_status(self, attempt_id: str, default: str) -> str:
        try:
            return str((await self.store.get_attempt(attempt_id)).status)
        except Exception:
            return default

    def _agent_name(self) -> str:
        return self.agent.name if self.agent is not None else f"command {self.command!r}"


def load_agent(spec: str) -> RolloutAgent:
    """Import the agent named `module:function` (a `@rollout` function or a plain callable)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInputError(f"agent must be given as module:function, got {spec!r}")
    if os.getcwd() not in sys.path:  # like `python -m`, find modules in the current directory
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise InvalidInputError(
                f"agent module {module_name!r} not found: run from the directory that contains it, "
                "or add that directory to PYTHONPATH"
            ) from None
        raise
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidInputError(f"module {module_name!r} has no attribute {attr!r} (agent {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InvalidInputError(f"agent {spec!r} is a {type(obj).__name__}, not a function")
    return as_agent(obj)


def run_runner(config: RunnerConfig) -> None:
    """`boltrl runner`: run against the server in `config` until SIGTERM/SIGINT or max_rollouts."""
    from boltrl.store.client import StoreClient

    if config.agent and config.command:
        raise InvalidInputError("give the runner --agent or --command, not both")
    agent = load_agent(config.agent) if config.agent else None
    if agent is None and not config.command:
        raise InvalidInputError("give the runner an agent (module:function) or a command")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is noise here

    async def main() -> None:
        store = StoreClient(config.server, token=config.token)
        runner = Runner(store, agent, command=None if agent else config.command, config=config)
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()

        def on_signal(sig: signal.Signals) -> None:
            if runner.stopping and main_task is not None:
                log.warning("second %s: stopping now", sig.name)
                main_task.cancel()
                return
            log.info(
                "%s: stopping (grace %g s; send it again to stop now)", sig.name, config.shutdown_grace_s
            )
            runner.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await runner.run()
        finally:
            await store.close()

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        raise BoltrlError(
            "runner stopped before its in-flight attempts were finished; the server requeues them "
            "once their heartbeats time out"
        ) from None


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _error_text(exc: BaseException) -> str:
    """What a failed attempt records: a command's own message, else the traceback's last lines."""
    if isinstance(exc, CommandFailedError | InvalidInputError):
        text = str(exc)
    else:
        lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
        text = "\n".join(lines[-ERROR_TAIL_LINES:])
    return text[-ERROR_MAX_CHARS:]


__all__ = ["RELEASED", "Runner", "default_worker_id", "load_agent", "run_runner"]
