"""The agent API: `@rollout` functions, the `LLM` they are given, and the rewards and events they emit.

An agent is `async def agent(task, llm) -> float | None` (or a plain `def`, run in a thread). A float
it returns is the rollout's final reward; None means it emitted its own with `emit_reward`. Inside a
rollout, `emit_reward`/`emit_event` record OpenTelemetry spans that the runner stores with the
rollout; outside one they log a warning and do nothing, because telemetry never breaks an agent
(under `BOLTRL_STRICT=1`, as in tests, they raise). Command agents, in any language, report their
reward with `boltrl reward VALUE`, i.e. `report_reward_from_env`, one HTTP call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, Field

from boltrl import tracing
from boltrl.errors import (
    ERRORS_BY_STATUS,
    BoltrlError,
    InvalidInputError,
    MissingDependencyError,
    ServerUnavailableError,
)
from boltrl.tracing import RolloutContext, current_rollout
from boltrl.types import REWARD_NAME_ATTR, REWARD_SPAN, REWARD_VALUE_ATTR, Claim, reward_span

log = logging.getLogger(__name__)

Hook = Callable[..., Any]


class LLM(BaseModel):
    """How the agent reaches the policy model: an OpenAI-compatible endpoint plus sampling parameters.

    Point your framework's OpenAI client at `base_url` with `api_key` and `model`; that is the only
    change an agent needs for its calls to be recorded and trained on.
    """

    model_config = ConfigDict(extra="ignore")

    base_url: str
    api_key: str = "boltrl"
    model: str = "default"
    sampling: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def for_attempt(cls, claim: Claim, server: str) -> LLM:
        """The claim's `llm` resource, or the server's gateway URL for this attempt when there is none.

        `{server}`, `{rollout_id}` and `{attempt_id}` in a published `base_url` are filled in, so a
        trainer can publish one URL template for every attempt. A rollout's `metadata["sampling"]`
        overrides the published sampling parameters (the trainer's validation rollouts are greedy).
        """
        server = server.rstrip("/")
        rollout_id, attempt_id = claim.rollout.id, claim.attempt.id
        spec = claim.resources.resources.get("llm") if claim.resources else None
        override = claim.rollout.metadata.get("sampling")
        override = override if isinstance(override, dict) else {}
        if not isinstance(spec, dict):
            return cls(base_url=f"{server}/gw/{rollout_id}/{attempt_id}/v1", sampling=override)
        llm = cls.model_validate(spec)
        base_url = (
            llm.base_url.replace("{server}", server)
            .replace("{rollout_id}", rollout_id)
            .replace("{attempt_id}", attempt_id)
        )
        return llm.model_copy(update={"base_url": base_url, "sampling": {**llm.sampling, **override}})

    def openai_client(self, **kwargs: Any) -> Any:
        """An `openai.AsyncOpenAI` client for this endpoint (needs the `frameworks` extra)."""
        try:
            import openai
        except ImportError:
            raise MissingDependencyError("openai", "frameworks") from None
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, **kwargs)


class RolloutAgent:
    """A function made into a boltrl agent by `@rollout`. Calling it calls the function unchanged.

    `on_rollout_start(rollout, attempt)` and `on_rollout_end(rollout, attempt, status, reward)` are
    optional hooks, plain or async, that the runner calls around each attempt.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        on_rollout_start: Hook | None = None,
        on_rollout_end: Hook | None = None,
    ) -> None:
        if not callable(fn):
            raise InvalidInputError(f"@rollout needs a function, got {fn!r}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        self.on_rollout_start = on_rollout_start
        self.on_rollout_end = on_rollout_end
        self._takes_llm = _takes_two_args(fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<RolloutAgent {self.name!r}>"

    async def run(self, task: Any, llm: LLM) -> Any:
        """Run the agent once as the runner does: a sync function in a thread (contextvars copied)."""
        args = (task, llm) if self._takes_llm else (task,)
        if inspect.iscoroutinefunction(self.fn):
            result = await self.fn(*args)
        else:
            result = await _in_thread(self.fn, *args)
        if inspect.isawaitable(result):  # a callable object with an async __call__
            result = await result
        return result


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Like `asyncio.to_thread` (contextvars copied), but on a daemon thread of its own.

    A thread cannot be interrupted: when a timeout or shutdown cancels a sync agent, its thread runs
    on, and a daemon thread at least does not keep the runner process from exiting.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            future.set_result(value) if ok else future.set_exception(value)

    def target() -> None:
        try:
            result = ctx.run(fn, *args)
        except BaseException as e:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(settle, False, e)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=target, name=f"boltrl-agent-{getattr(fn, '__name__', 'fn')}", daemon=True).start()
    return await future


def _takes_two_args(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


@overload
def rollout(fn: Callable[..., Any], /) -> RolloutAgent: ...


@overload
def rollout(
    *, name: str | None = None, on_rollout_start: Hook | None = None, on_rollout_end: Hook | None = None
) -> Callable[[Callable[..., Any]], RolloutAgent]: ...


def rollout(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    on_rollout_start: Hook | None = None,
    on_rollout_end: Hook | None = None,
) -> RolloutAgent | Callable[[Callable[..., Any]], RolloutAgent]:
    """Mark `fn(task, llm) -> float | None` as an agent; use bare or as `@rollout(name="calc")`."""

    def wrap(f: Callable[..., Any]) -> RolloutAgent:
        return RolloutAgent(f, name=name, on_rollout_start=on_rollout_start, on_rollout_end=on_rollout_end)

    return wrap(fn) if fn is not None else wrap


def as_agent(obj: Any) -> RolloutAgent:
    """A `RolloutAgent` as is, or a plain callable wrapped in one."""
    return obj if isinstance(obj, RolloutAgent) else RolloutAgent(obj)


async def call_hook(hook: Hook | None, *args: Any) -> None:
    """Call a plain or async hook."""
    if hook is None:
        return
    result = hook(*args)
    if inspect.isawaitable(result):
        await result


# ---------------------------------------------------------------- rewards and events


def _outside(what: str) -> None:
    message = f"{what}() called outside a rollout: nothing recorded (run the agent with `boltrl runner`)"
    if tracing.strict():
        raise BoltrlError(message)
    log.warning(message)


def emit_reward(value: float, name: str | None = None) -> None:
    """Record a reward for the current rollout (several are allowed; the trainer picks the rule)."""
    ctx = current_rollout()
    if ctx is None:
        _outside("emit_reward")
        return
    try:
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(value)
        attributes: dict[str, Any] = {REWARD_VALUE_ATTR: v}
        if name is not None:
            attributes[REWARD_NAME_ATTR] = str(name)
        tracing.emit_span(REWARD_SPAN, attributes)
    except Exception as e:
        if tracing.strict():
            raise
        log.warning("emit_reward(%r) failed, nothing recorded: %s", value, e)


def emit_event(name: str, **attributes: Any) -> None:
    """Record a named event (a zero-length span) with `attributes` for the current rollout."""
    ctx = current_rollout()
    if ctx is None:
        _outside("emit_event")
        return
    try:
        tracing.emit_span(name, attributes)
    except Exception as e:
        if tracing.strict():
            raise
        log.warning("emit_event(%r) failed, nothing recorded: %s", name, e)


# ---------------------------------------------------------------- command agents


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise InvalidInputError(
            f"{name} is not set: `boltrl reward` reports for a command agent and must run inside one "
            "started by `boltrl runner --command ...`"
        )
    return value


def report_reward_from_env(value: float, name: str | None = None, *, retries: int = 5) -> None:
    """Send one reward for the rollout named by BOLTRL_SERVER/ROLLOUT_ID/ATTEMPT_ID (+ BOLTRL_TOKEN).

    One `POST {server}/v1/spans`, retried on connection errors and timeouts: the span id is fixed
    before the first try and the server keeps the first span of an id, so a retry never doubles it.
    """
    import httpx

    server = _env("BOLTRL_SERVER").rstrip("/")
    rollout_id = _env("BOLTRL_ROLLOUT_ID")
    attempt_id = _env("BOLTRL_ATTEMPT_ID")
    token = os.environ.get("BOLTRL_TOKEN") or None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"reward must be a number, got {value!r}") from None
    body = {"spans": [reward_span(rollout_id, attempt_id, v, name).model_dump(mode="json")]}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    delay = 0.25
    for i in range(retries):
        try:
            response = httpx.post(f"{server}/v1/spans", json=body, headers=headers, timeout=30.0)
            break
        except httpx.TransportError as e:
            if i == retries - 1:
                raise ServerUnavailableError(f"could not reach {server}: {e}") from e
            time.sleep(delay)
            delay *= 2
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        error = ERRORS_BY_STATUS.get(response.status_code, BoltrlError)
        raise error(f"server refused the reward ({response.status_code}): {detail}")


__all__ = [
    "LLM",
    "RolloutAgent",
    "RolloutContext",
    "as_agent",
    "call_hook",
    "current_rollout",
    "emit_event",
    "emit_reward",
    "report_reward_from_env",
    "rollout",
]
