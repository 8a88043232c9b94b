"""Runners against the real HTTP server: subprocess runners, command agents, crashes of runner and server."""

from __future__ import annotations

import asyncio
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from boltrl.config import RunnerConfig, ServerConfig
from boltrl.runner import RELEASED, Runner, RunnerPool
from boltrl.store.client import StoreClient
from boltrl.testing import free_port, live_server, spawn_server, wait_healthy
from boltrl.types import REWARD_SPAN, ROLLOUT_SPAN, Reward
from tests.runner.helpers import REPO, enqueue, fast_config, run_until_terminal, start_runner, subprocess_env

pytestmark = pytest.mark.anyio


async def wait_for(predicate: object, timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s:g} s")
        await asyncio.sleep(0.05)


async def wait_exit(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int:
    await wait_for(lambda: proc.poll() is not None, timeout_s, f"exit of pid {proc.pid}")
    return proc.returncode


async def rewards(store: StoreClient, rollout_id: str) -> list[Reward]:
    return [Reward.from_span(s) for s in await store.get_spans(rollout_id) if s.name == REWARD_SPAN]


async def test_subprocess_runner_end_to_end(processes: list[subprocess.Popen[bytes]]) -> None:
    with live_server() as server:
        async with StoreClient(server.url) as store:
            ids = await enqueue(store, *({"reward": r} for r in (0.1, 0.2, 0.3)))
            proc = start_runner(
                server.url, "--agent", "tests.runner.runner_agents:scored", "-n", "2", "--max-rollouts", "3"
            )
            processes.append(proc)
            done = await store.wait(ids, 30)
            assert [r.status for r in done] == ["succeeded"] * 3
            assert await wait_exit(proc) == 0  # max_rollouts reached
            for rid, want in zip(ids, (0.1, 0.2, 0.3), strict=True):
                spans = await store.get_spans(rid)
                assert [s.name for s in spans] == ["step", REWARD_SPAN, REWARD_SPAN, ROLLOUT_SPAN]
                assert await rewards(store, rid) == [
                    Reward(value=0.25, name="partial"),
                    Reward(value=want, name="final"),
                ]
                [attempt] = await store.list_attempts(rid)
                assert attempt.worker_id.endswith(f"-{proc.pid}")
                assert {s.attempt_id for s in spans} == {attempt.id}


async def test_command_agents_report_rewards_and_otel_spans() -> None:
    with live_server() as server:
        async with StoreClient(server.url) as store:
            cli = await enqueue(store, {"q": "cli"})
            runner = Runner(
                store,
                command="sh -c 'boltrl reward 0.7 && boltrl reward 1 --name judge'",
                config=fast_config(server=server.url),
            )
            [r] = await run_until_terminal(runner, store, cli)
            assert r.status == "succeeded"
            assert await rewards(store, cli[0]) == [Reward(value=0.7), Reward(value=1.0, name="judge")]

            otel = await enqueue(store, {"q": "2+2"})
            command = f"{shlex.quote(sys.executable)} {REPO / 'tests/runner/otel_command.py'}"
            runner = Runner(store, command=command, config=fast_config(server=server.url))
            [r] = await run_until_terminal(runner, store, otel)
            assert r.status == "succeeded"
            spans = {s.name: s for s in await store.get_spans(otel[0])}
            assert set(spans) == {"solve", REWARD_SPAN, ROLLOUT_SPAN}
            [attempt] = await store.list_attempts(otel[0])
            solve, root = spans["solve"], spans[ROLLOUT_SPAN]
            assert (solve.trace_id, solve.parent_id) == (root.trace_id, root.span_id)
            assert (solve.attempt_id, solve.attributes["question"]) == (attempt.id, "2+2")
            assert Reward.from_span(spans[REWARD_SPAN]) == Reward(value=0.4, name="raw-http")


async def test_kill_9_of_a_runner_mid_rollout(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    config = ServerConfig(db="memory", heartbeat_timeout_s=1.0, reap_interval_s=0.2)
    with live_server(config=config) as server:
        async with StoreClient(server.url) as store:
            marker = tmp_path / "first-attempt"
            [rid] = await enqueue(store, {"marker": str(marker)})
            first = start_runner(
                server.url, "--agent", "tests.runner.runner_agents:hang_first", "--worker-id", "first"
            )
            processes.append(first)
            await wait_for(marker.exists, what="first attempt started")
            first.send_signal(signal.SIGKILL)
            await wait_exit(first)
            second = start_runner(
                server.url, "--agent", "tests.runner.runner_agents:hang_first", "--worker-id", "second"
            )
            processes.append(second)
            [r] = await store.wait([rid], 30)
            assert (r.status, r.attempt_count) == ("succeeded", 2)
            attempts = await store.list_attempts(rid)
            assert [(a.worker_id, a.status) for a in attempts] == [("first", "lost"), ("second", "succeeded")]
            assert "heartbeat" in (attempts[0].error or "")
            assert await rewards(store, rid) == [
                Reward(value=0.9, name="second-try"),
                Reward(value=1.0, name="final"),
            ]
            second.send_signal(signal.SIGTERM)
            assert await wait_exit(second) == 0


async def test_kill_9_of_the_server_loses_nothing(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    db, port = tmp_path / "boltrl.db", free_port()
    url = f"http://127.0.0.1:{port}"
    server = spawn_server(db, port, log_path=tmp_path / "server.log")
    processes.append(server)
    wait_healthy(url, 30, server)
    async with StoreClient(url) as store:
        ids = await enqueue(store, *({"reward": 1.0, "sleep": 0.3} for _ in range(10)))
        for name in ("a", "b"):
            argv = ["--agent", "tests.runner.runner_agents:scored", "-n", "2", "--worker-id", name]
            processes.append(start_runner(url, *argv))

        async def succeeded() -> list[str]:
            page = await store.list_rollouts(status="succeeded", limit=100)
            return [r.id for r in page.rollouts]

        await wait_for(lambda: _at_least(succeeded, 3), 30, "3 rollouts succeeded")
        before = {rid: await store.get_spans(rid) for rid in await succeeded()}
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        await asyncio.sleep(1.0)  # runners meet a dead server for a while
        server = spawn_server(db, port, log_path=tmp_path / "server.log")
        processes.append(server)
        await asyncio.to_thread(wait_healthy, url, 30, server)
        done = await store.wait(ids, 60)
        assert [r.status for r in done] == ["succeeded"] * len(ids)
        for rid, spans in before.items():  # acknowledged before the crash: still there, unchanged
            assert (await store.get_spans(rid))[: len(spans)] == spans
        for rid in ids:
            got = await rewards(store, rid)
            assert [w.name for w in got][-2:] == ["partial", "final"]
            assert (await store.get_rollout(rid)).status == "succeeded"
    for proc in processes[1:3]:
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc) == 0


async def _at_least(fetch: object, n: int) -> bool:
    return len(await fetch()) >= n  # type: ignore[operator]


async def test_sigterm_releases_in_flight_attempts(processes: list[subprocess.Popen[bytes]]) -> None:
    with live_server() as server:
        async with StoreClient(server.url) as store:
            ids = await enqueue(store, {"sleep": 30}, {"sleep": 30})
            proc = start_runner(server.url, "--agent", "tests.runner.runner_agents:sleeper", "-n", "2")
            processes.append(proc)
            await wait_for(lambda: _count(store, "running", 2), 20, "both running")
            proc.send_signal(signal.SIGTERM)
            assert await wait_exit(proc, 15) == 0
            for rid in ids:
                assert (await store.get_rollout(rid)).status == "queued"
                [a] = await store.list_attempts(rid)
                assert (a.status, a.error) == ("failed", RELEASED)


async def _count(store: StoreClient, status: str, n: int) -> bool:
    return (await store.count_rollouts())[status] >= n


async def test_runner_pool() -> None:
    with live_server() as server:
        async with StoreClient(server.url) as store:
            ids = await enqueue(store, *({"reward": 0.5, "sleep": 0.2} for _ in range(6)))
            config = RunnerConfig(
                server=server.url,
                agent="tests.runner.runner_agents:scored",
                worker_id="pool",
                poll_interval_s=0.05,
                heartbeat_interval_s=0.2,
                shutdown_grace_s=0.5,
            )
            with RunnerPool(config, 2, env=subprocess_env(), cwd=str(REPO)) as pool:
                done = await store.wait(ids, 30)
                assert [r.status for r in done] == ["succeeded"] * 6
                assert pool.alive() == 2 and pool.exits() == []
                codes = await asyncio.to_thread(pool.stop)
            assert codes == [0, 0]
            workers = {(await store.list_attempts(rid))[0].worker_id for rid in ids}
            assert workers <= {"pool-0", "pool-1"}


def test_cli_reports_a_bad_agent_clearly() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "boltrl", "runner", "--agent", "tests.runner.runner_agents:nope"],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "has no attribute 'nope'" in proc.stderr
