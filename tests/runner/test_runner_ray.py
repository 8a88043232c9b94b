"""Runners as Ray actors on a real local Ray head (loopback only, token auth on).

The head is `ray start --head --block` in its own session: SIGTERM to it stops the whole local cluster
and nothing else (`ray stop` would stop every Ray process of this user on the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boltrl.cli import main
from boltrl.config import RunnerConfig, ServerConfig
from boltrl.errors import InvalidInputError, MissingDependencyError
from boltrl.runner.ray import RayRunners, import_ray, ray_address, split
from boltrl.store.client import StoreClient
from boltrl.testing import free_port, live_server
from boltrl.types import REWARD_SPAN, ROLLOUT_SPAN, Reward
from tests.runner import runner_agents as agents
from tests.runner.helpers import REPO, enqueue, subprocess_env

pytestmark = pytest.mark.anyio
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="pip install 'boltrl[scale]'")

HEAD_START_TIMEOUT_S = 90.0
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::ffff:127\.\d+\.\d+\.\d+\]|\[::1\]):\d+$")


def ray_env(token_path: Path) -> dict[str, str]:
    """What both the head and every client need: token auth with one token, loopback only."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_path),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else Ray binds its servers on every interface
        "RAY_USAGE_STATS_ENABLED": "0",
    }


class RayHead:
    def __init__(self, address: str, env: dict[str, str], proc: subprocess.Popen[bytes]) -> None:
        self.address, self.env, self.proc = address, env, proc


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    """A real Ray head on 127.0.0.1 (2 CPUs, no dashboard) for this module, and this process's env for it."""
    # Ray's unix sockets live under --temp-dir and must stay under ~107 bytes: a short path in /tmp.
    tmp = Path(tempfile.mkdtemp(prefix="brl-ray-"))
    token = tmp / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = ray_env(token)
    port = free_port()
    log_path = tmp / "head.log"
    cmd = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--include-dashboard=false",
        "--dashboard-host=127.0.0.1",
        "--num-cpus=2",
        f"--temp-dir={tmp / 't'}",
        "--disable-usage-stats",
    ]
    # Actors inherit the head's environment: strict telemetry, and the repo importable.
    head_env = {**os.environ, **env, "BOLTRL_STRICT": "1", "PYTHONPATH": str(REPO)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, env=head_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + HEAD_START_TIMEOUT_S
        while b"block forever" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            yield RayHead(f"127.0.0.1:{port}", env, proc)
            import ray

            if ray.is_initialized():
                ray.shutdown()
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its processes on the way out
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with_leftovers = subprocess.run(
            ["ps", "-o", "pid=", "-s", str(proc.pid)], capture_output=True, text=True
        )
        for pid in with_leftovers.stdout.split():
            os.kill(int(pid), signal.SIGKILL)  # our own session's stragglers only
        shutil.rmtree(tmp, ignore_errors=True)


def listeners_of_session(session: int) -> list[str]:
    """Local addresses of the TCP listeners of this process and of the processes in `session`."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        ours = os.getpid() in pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                ours = ours or os.getsid(pid) == session
        if ours:
            found.append(line.split()[3])
    return found


def fast(**fields: object) -> RunnerConfig:
    values: dict[str, object] = dict(
        poll_interval_s=0.05, heartbeat_interval_s=0.2, shutdown_grace_s=0.5, worker_id="ray"
    )
    values.update(fields)
    return RunnerConfig(**values)  # type: ignore[arg-type]


async def wait_for(predicate: object, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s:g} s")
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------- without a cluster


def test_addresses_and_shares() -> None:
    assert ray_address("ray://10.0.0.5:6379") == "10.0.0.5:6379"
    assert ray_address("127.0.0.1:6379") == "127.0.0.1:6379"
    assert ray_address("ray") is None and ray_address("auto") is None and ray_address(None) is None
    with pytest.raises(InvalidInputError, match="ray://HOST:PORT"):
        ray_address("ray://nowhere")
    assert split(64, 8) == [8] * 8
    assert split(10, 4) == [3, 3, 2, 2]
    assert split(2, 4) == [1, 1]
    cfg = RunnerConfig(agent="m:f", n=10, ray_actors=4, worker_id="w", max_rollouts=3)
    shares = RayRunners(cfg, "127.0.0.1:1").configs()
    assert [(c.n, c.max_rollouts, c.worker_id) for c in shares] == [
        (3, 1, "w-0"),
        (3, 1, "w-1"),
        (2, 1, "w-2"),
    ]
    assert len(RayRunners(RunnerConfig(agent="m:f", n=64), "ray").configs()) == 8  # one actor per 8 slots


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'boltrl\[scale\]'"):
        import_ray("10.0.0.5:6379")


# ---------------------------------------------------------------- on a real head


@needs_ray
async def test_rollouts_run_on_ray_actors(ray_head: RayHead) -> None:
    with live_server(config=ServerConfig(db="memory", token="s3cret")) as server:
        async with StoreClient(server.url, "s3cret") as store:
            ids = await enqueue(store, *({"reward": i / 10} for i in range(8)))
            agent = "tests.runner.runner_agents:scored"
            config = fast(server=server.url, token="s3cret", agent=agent, n=4, ray_actors=2)
            with RayRunners(config, ray_head.address) as runners:
                assert runners.worker_ids == ["ray-0", "ray-1"]
                done = await store.wait(ids, 60)
                assert [r.status for r in done] == ["succeeded"] * 8
                # Every listener of the cluster (head, raylet, workers) and of this driver is on loopback.
                if shutil.which("ss"):
                    addresses = listeners_of_session(ray_head.proc.pid)
                    assert addresses, "found no Ray listeners"
                    assert all(LOOPBACK.match(a) for a in addresses), addresses
                    print("ray listeners:", sorted(addresses))
                assert runners.alive() == 2
            assert runners.endings and all(e.startswith("stopped after") for e in runners.endings.values())
            for i, rid in enumerate(ids):
                spans = await store.get_spans(rid)
                assert [s.name for s in spans] == ["step", REWARD_SPAN, REWARD_SPAN, ROLLOUT_SPAN]
                got = [Reward.from_span(s) for s in spans if s.name == REWARD_SPAN]
                assert got == [Reward(value=0.25, name="partial"), Reward(value=i / 10, name="final")]
                [attempt] = await store.list_attempts(rid)
                assert attempt.worker_id in ("ray-0", "ray-1")


@needs_ray
async def test_a_killed_actor_loses_only_its_attempts(ray_head: RayHead) -> None:
    import ray

    config = ServerConfig(db="memory", heartbeat_timeout_s=1.0, reap_interval_s=0.2)
    with live_server(config=config) as server:
        async with StoreClient(server.url) as store:
            ids = await enqueue(store, *({"sleep": 2} for _ in range(4)), max_attempts=2)
            config_r = fast(server=server.url, agent="tests.runner.runner_agents:sleeper", n=4, ray_actors=2)
            with RayRunners(config_r, ray_head.address) as runners:

                async def all_running() -> bool:
                    return len((await store.list_rollouts(status="running")).rollouts) == 4

                await wait_for(all_running, 30, "4 rollouts running")
                first = {rid: (await store.list_attempts(rid))[0].worker_id for rid in ids}
                assert sorted(first.values()) == ["ray-0", "ray-0", "ray-1", "ray-1"]  # 2 slots each
                ray.kill(runners.actors[0], no_restart=True)
                done = await store.wait(ids, 60)
                assert [r.status for r in done] == ["succeeded"] * 4
                await wait_for(lambda: runners.alive() == 1, 10, "actor 0 reported dead")
                [(index, how)] = runners.exits()
                assert index == 0 and how.startswith("died")
            for rid in ids:
                attempts = await store.list_attempts(rid)
                if first[rid] == "ray-0":  # lost with its actor, then run by the survivor
                    assert [(a.status, a.worker_id) for a in attempts] == [
                        ("lost", "ray-0"),
                        ("succeeded", "ray-1"),
                    ]
                else:
                    assert [(a.status, a.worker_id) for a in attempts] == [("succeeded", "ray-1")]


@needs_ray
def test_the_head_refuses_a_client_without_its_token(ray_head: RayHead, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    code = f"import ray; ray.init(address={ray_head.address!r})"
    err = tmp_path / "stderr"
    with open(err, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=f)
    try:
        deadline = time.monotonic() + 60
        while b"InvalidAuthToken" not in err.read_bytes():  # Ray retries for a minute; seeing one is enough
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()


@needs_ray
async def test_an_agent_that_does_not_import_is_an_error(ray_head: RayHead) -> None:
    config = fast(server="http://127.0.0.1:9", agent="tests.runner.no_such_module:agent", n=2)
    with pytest.raises(InvalidInputError, match="no_such_module"):
        RayRunners(config, ray_head.address).start()


@needs_ray
async def test_cli_runs_actors_until_max_rollouts_then_sigterm_stops_it(ray_head: RayHead) -> None:
    env = subprocess_env(**ray_head.env)
    with live_server() as server:
        async with StoreClient(server.url) as store:
            ids = await enqueue(store, *({"reward": 1.0} for _ in range(4)))
            argv = ["runner", "--server", server.url, "--ray-address", f"ray://{ray_head.address}"]
            argv += ["--agent", "tests.runner.runner_agents:scored", "-n", "4", "--ray-actors", "2"]
            cli = [sys.executable, "-m", "boltrl", *argv]
            proc = subprocess.Popen([*cli, "--max-rollouts", "4"], cwd=REPO, env=env)
            try:
                assert proc.wait(timeout=90) == 0  # 2 actors x 2 rollouts each, then they end
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert [r.status for r in await store.wait(ids, 5)] == ["succeeded"] * 4

            proc = subprocess.Popen(cli, cwd=REPO, env=env)
            try:
                more = await enqueue(store, {"reward": 0.5})
                assert [r.status for r in await store.wait(more, 60)] == ["succeeded"]
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=60) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()


def runner_actors(session: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(session)], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "ray::RunnerActor" in line]


@needs_ray
async def test_the_actors_go_with_a_killed_cli(ray_head: RayHead) -> None:
    env = subprocess_env(**ray_head.env)
    with live_server() as server:
        async with StoreClient(server.url) as store:
            ids = await enqueue(store, {"reward": 1.0})
            argv = ["runner", "--server", server.url, "--ray-address", ray_head.address, "-n", "2"]
            argv += ["--agent", "tests.runner.runner_agents:scored", "--worker-id", "doomed"]
            proc = subprocess.Popen([sys.executable, "-m", "boltrl", *argv], cwd=REPO, env=env)
            try:
                assert [r.status for r in await store.wait(ids, 60)] == ["succeeded"]
                assert runner_actors(ray_head.proc.pid)
            finally:
                proc.kill()  # SIGKILL: no chance to stop its actors
                proc.wait()
            # Ray fate-shares actors with their owner: the driver's death takes them down.
            await wait_for(lambda: not runner_actors(ray_head.proc.pid), 30, "the actors to be gone")


@needs_ray
def test_cli_bad_ray_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["runner", "--ray-address", "ray://nowhere", "--agent", "tests.runner.runner_agents:scored"]
    assert main(argv) == 2
    assert "ray://HOST:PORT" in capsys.readouterr().err


@needs_ray
async def test_trainer_runners_option_starts_ray_actors(ray_head: RayHead) -> None:
    from boltrl.training.trainer import Trainer

    with live_server() as server:
        async with StoreClient(server.url) as store:
            ids = await enqueue(store, *({"reward": 0.5} for _ in range(3)))
            trainer = Trainer("tiny-random", runners=f"ray://{ray_head.address}", n_runners=3)
            with contextlib.ExitStack() as stack:
                trainer._start_runners(stack, agents.scored, server.url)  # shipped pickled
                assert [r.status for r in await store.wait(ids, 60)] == ["succeeded"] * 3
