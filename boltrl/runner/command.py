"""Command agents: a program in any language, run once per rollout, that talks to boltrl over HTTP.

The runner starts `command` (split with `shlex`) in its own process group, with the rollout in its
environment: the model endpoint (BOLTRL_BASE_URL, BOLTRL_API_KEY, BOLTRL_MODEL), the ids and server
(BOLTRL_ROLLOUT_ID, BOLTRL_ATTEMPT_ID, BOLTRL_SERVER, and BOLTRL_TOKEN: the attempt's own token,
which writes spans for this attempt only, never the runner's), the task input as JSON
(BOLTRL_TASK), and OpenTelemetry settings (TRACEPARENT of the rollout's root span,
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_RESOURCE_ATTRIBUTES) so an OTel-instrumented program sends its
spans to the server's OTLP route tagged with the rollout. Exit 0 is success; any other exit fails
the attempt with the tail of stderr as its error. Cancelling (timeout, lost attempt, shutdown)
kills the whole process group.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import shlex
import signal
import sys
from typing import Any
from urllib.parse import quote

from boltrl.agent import LLM
from boltrl.errors import BoltrlError, InvalidInputError

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 20
KILL_GRACE_S = 2.0


class CommandFailedError(BoltrlError):
    """The command agent exited with a non-zero status."""


def command_env(
    *,
    llm: LLM,
    rollout_id: str,
    attempt_id: str,
    server: str,
    token: str | None,
    task_input: Any,
    traceparent: str | None = None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment a command agent runs with: `base` (default os.environ) plus the rollout's."""
    env = dict(os.environ if base is None else base)
    server = server.rstrip("/")
    env.update(
        BOLTRL_BASE_URL=llm.base_url,
        BOLTRL_API_KEY=llm.api_key,
        BOLTRL_MODEL=llm.model,
        BOLTRL_SAMPLING=json.dumps(llm.sampling),
        BOLTRL_ROLLOUT_ID=rollout_id,
        BOLTRL_ATTEMPT_ID=attempt_id,
        BOLTRL_SERVER=server,
        BOLTRL_TASK=json.dumps(task_input),
        OTEL_EXPORTER_OTLP_ENDPOINT=server,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_RESOURCE_ATTRIBUTES=f"boltrl.rollout_id={rollout_id},boltrl.attempt_id={attempt_id}",
    )
    env.pop("BOLTRL_TOKEN", None)
    env.pop("OTEL_EXPORTER_OTLP_HEADERS", None)
    if token:
        env["BOLTRL_TOKEN"] = token
        env["OTEL_EXPORTER_OTLP_HEADERS"] = "Authorization=" + quote(f"Bearer {token}")
    if traceparent:
        env["TRACEPARENT"] = traceparent
    # `boltrl reward` must work in the command even when the runner's venv is not on PATH.
    bindir = os.path.dirname(sys.executable)
    if os.path.exists(os.path.join(bindir, "boltrl")):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


async def run_command(command: str, env: dict[str, str]) -> None:
    """Run `command` to completion; raise `CommandFailedError` on a non-zero exit."""
    argv = shlex.split(command)
    if not argv:
        raise InvalidInputError("the runner's command is empty")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        raise CommandFailedError(f"could not start command {argv[0]!r}: {e}") from e
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    reader = asyncio.create_task(_read_stderr(proc, tail))
    try:
        returncode = await proc.wait()
        await reader
    except BaseException:  # cancelled: timeout, lost attempt or shutdown
        await _kill_group(proc)
        reader.cancel()
        raise
    if returncode != 0:
        stderr = "\n".join(tail)
        raise CommandFailedError(
            f"command exited with status {returncode}" + (f":\n{stderr}" if stderr else "")
        )


async def _read_stderr(proc: asyncio.subprocess.Process, tail: collections.deque[str]) -> None:
    assert proc.stderr is not None
    async for raw in proc.stderr:
        line = raw.decode(errors="replace").rstrip()
        tail.append(line)
        log.debug("[command %d] %s", proc.pid, line)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after a short grace."""
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), wait_s)
            break
        except TimeoutError:
            continue
    # Children that ignored SIGTERM but outlived the leader.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


__all__ = ["CommandFailedError", "command_env", "run_command"]
