"""What the server exposes by default: it binds loopback only, and no token ever reaches a log."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from boltrl.config import ServerConfig
from boltrl.server.auth import attempt_token
from boltrl.testing import free_port, live_server, spawn_server, wait_healthy
from tests.server.fakes import EchoBackend
from tests.server.helpers import claim, enqueue

TOKEN = "never-log-me-4c1d"

psutil = pytest.importorskip("psutil")


def _listening(pid: int, port: int, timeout_s: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [
            c.laddr.ip
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]
        if found:
            return found
        time.sleep(0.05)
    raise TimeoutError(f"pid {pid} is not listening on port {port}")


def test_serve_binds_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    assert ServerConfig().host == "127.0.0.1"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("BOLTRL_HOST", "BOLTRL_TOKEN")}
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "boltrl", "serve", "--port", str(port), "--db", "memory"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _listening(proc.pid, port) == ["127.0.0.1"]
    finally:
        proc.terminate()
        proc.wait(15)


def test_no_token_in_the_server_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = spawn_server(tmp_path / "db.sqlite", port, token=TOKEN, log_path=log)
    try:
        wait_healthy(url, 30, proc)
        good = {"authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, timeout=10) as c, httpx.Client(base_url=url, headers=good) as ok:
            for headers in ({}, {"authorization": "Bearer " + TOKEN[:-1]}, {"authorization": TOKEN}):
                assert c.get("/v1/stats", headers=headers).status_code == 401
            enqueue(ok, {"id": "r1", "input": 1})
            key = attempt_token(TOKEN, "r1", claim(ok)["attempt"]["id"])
            assert c.get("/v1/stats", headers={"authorization": f"Bearer {key}"}).status_code == 403
            assert ok.post("/v1/rollouts", content=b"{", headers={"content-type": "x"}).status_code == 415
            assert ok.get("/v1/rollouts/nope").status_code == 404
    finally:
        proc.terminate()
        proc.wait(15)
    text = log.read_text()
    assert "boltrl server on" in text and "bearer token required" in text  # the log was captured
    assert TOKEN not in text and TOKEN[:-1] not in text and key.rsplit("/", 1)[1] not in text


def test_no_token_in_any_log_record_of_the_app(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with (
        live_server(config=ServerConfig(token=TOKEN), backend=EchoBackend()) as server,
        httpx.Client(base_url=server.url, timeout=10, headers={"authorization": f"Bearer {TOKEN}"}) as c,
    ):
        enqueue(c, {"id": "r1", "input": 1})
        got = claim(c)
        key = got["resources"]["resources"]["llm"]["api_key"]
        gw = f"/gw/r1/{got['attempt']['id']}/v1/chat/completions"
        for model in ("echo", "broken", "crash"):  # the crash is logged with its traceback
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            c.post(gw, json=body, headers={"authorization": f"Bearer {key}"})
        c.get("/v1/stats", headers={"authorization": f"Bearer {key}"})
        c.get("/v1/stats", headers={"authorization": "Bearer nope"})
    assert "the inference backend failed" in caplog.text
    assert TOKEN not in caplog.text and key.rsplit("/", 1)[1] not in caplog.text
