"""Command agents in process: the environment they get, failures with stderr, timeouts that kill."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from boltrl.agent import LLM
from boltrl.runner import Runner
from boltrl.runner.command import command_env
from boltrl.server.auth import attempt_token
from boltrl.store.memory import MemoryStore
from boltrl.types import ROLLOUT_SPAN
from tests.runner.helpers import enqueue, fast_config, run_until_terminal

pytestmark = pytest.mark.anyio

DUMP_ENV = """
import json, os, sys
task = json.loads(os.environ["BOLTRL_TASK"])
keys = [k for k in os.environ if k.startswith(("BOLTRL_", "OTEL_")) or k == "TRACEPARENT"]
with open(task["out"], "w") as f:
    json.dump({k: os.environ[k] for k in keys}, f)
"""


def python_command(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


async def test_command_gets_the_rollout_in_its_environment(tmp_path: Path) -> None:
    store = MemoryStore()
    await store.put_resources({"llm": {"base_url": "http://llm/v1", "model": "smol", "api_key": "k"}})
    out = tmp_path / "env.json"
    [rid] = await enqueue(store, {"out": str(out), "q": "2+2"})
    config = fast_config(server="http://boltrl:4747", token="s3cret")
    [r] = await run_until_terminal(
        Runner(store, command=python_command(DUMP_ENV), config=config), store, [rid]
    )
    assert r.status == "succeeded"
    env = json.loads(out.read_text())
    [attempt] = await store.list_attempts(rid)
    [root] = [s for s in await store.get_spans(rid) if s.name == ROLLOUT_SPAN]
    assert env["BOLTRL_BASE_URL"] == "http://llm/v1"
    assert (env["BOLTRL_MODEL"], env["BOLTRL_API_KEY"]) == ("smol", "k")
    assert (env["BOLTRL_ROLLOUT_ID"], env["BOLTRL_ATTEMPT_ID"]) == (rid, attempt.id)
    token = attempt_token("s3cret", rid, attempt.id)  # the attempt's own, never the runner's
    assert (env["BOLTRL_SERVER"], env["BOLTRL_TOKEN"]) == ("http://boltrl:4747", token)
    assert json.loads(env["BOLTRL_TASK"]) == {"out": str(out), "q": "2+2"}
    assert env["TRACEPARENT"] == f"00-{root.trace_id}-{root.span_id}-01"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://boltrl:4747"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "Authorization=" + quote(f"Bearer {token}")
    assert "s3cret" not in json.dumps(env)
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == f"boltrl.rollout_id={rid},boltrl.attempt_id={attempt.id}"


def test_command_env_without_token_drops_inherited_ones() -> None:
    env = command_env(
        llm=LLM(base_url="http://x/v1"),
        rollout_id="ro-1",
        attempt_id="at-1",
        server="http://s/",
        token=None,
        task_input=[1, 2],
        base={"BOLTRL_TOKEN": "old", "PATH": "/bin"},
    )
    assert "BOLTRL_TOKEN" not in env and "OTEL_EXPORTER_OTLP_HEADERS" not in env
    assert env["BOLTRL_SERVER"] == "http://s" and env["BOLTRL_TASK"] == "[1, 2]"
    assert env["PATH"].endswith("/bin")


async def test_nonzero_exit_fails_with_the_stderr_tail() -> None:
    code = "import sys\nfor i in range(50): print(f'line {i}', file=sys.stderr)\nsys.exit(3)"
    store = MemoryStore()
    [rid] = await enqueue(store, {}, max_attempts=1)
    await run_until_terminal(Runner(store, command=python_command(code), config=fast_config()), store, [rid])
    [a] = await store.list_attempts(rid)
    assert a.status == "failed"
    assert a.error is not None and a.error.startswith("command exited with status 3:")
    assert a.error.endswith("line 49") and "line 29" not in a.error


async def test_missing_program_fails_clearly() -> None:
    store = MemoryStore()
    [rid] = await enqueue(store, {}, max_attempts=1)
    runner = Runner(store, command="/nonexistent/agent --flag", config=fast_config())
    await run_until_terminal(runner, store, [rid])
    [a] = await store.list_attempts(rid)
    assert a.status == "failed" and "could not start command '/nonexistent/agent'" in (a.error or "")


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The command starts a grandchild that would outlive a kill of the command alone.
    code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    store = MemoryStore()
    [rid] = await enqueue(store, {}, timeout_s=1.0, max_attempts=1)
    started = time.monotonic()
    await run_until_terminal(Runner(store, command=python_command(code), config=fast_config()), store, [rid])
    assert time.monotonic() - started < 10
    [a] = await store.list_attempts(rid)
    assert a.status == "timed_out"
    pid = int(pidfile.read_text())
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"grandchild {pid} still running")
