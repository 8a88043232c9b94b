"""Test helpers that ship with boltrl, so users test their own agents the way boltrl tests itself.

- `live_server()`: the real app on a free loopback port, in a background thread with its own loop.
- `spawn_server()` / `wait_healthy()`: a real `python -m boltrl serve` process, for tests that kill it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from boltrl.server.thread import LiveServer, free_port, serve_in_thread

live_server = serve_in_thread
"""The real app on a free loopback port in a background thread (see `serve_in_thread`)."""


def spawn_server(
    db_path: str | Path, port: int, token: str | None = None, *, log_path: str | Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `python -m boltrl serve` on 127.0.0.1:`port` over `db_path` (a path, URL or "memory").

    The token travels in the environment, not argv, where other users of the machine could read it.
    The caller owns the process: `proc.kill(); proc.wait()` (or `terminate()`) when done.
    """
    # The child imports this same boltrl, whatever its working directory.
    source = str(Path(__file__).resolve().parent.parent)
    pythonpath = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "BOLTRL_TOKEN": token or ""}
    cmd = [
        sys.executable,
        "-m",
        "boltrl",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        str(db_path),
    ]
    out: Any = subprocess.DEVNULL
    if log_path is not None:
        out = open(log_path, "ab")  # noqa: SIM115 - the child keeps it; ours closes right after
    try:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if log_path else out)
    finally:
        if log_path is not None:
            out.close()


def wait_healthy(url: str, timeout_s: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url/healthz` until it answers 200; fail early if `proc` (the server) has exited."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {proc.returncode} before it was healthy")
            try:
                if client.get(f"{url.rstrip('/')}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} was not healthy within {timeout_s:g} s")
            time.sleep(0.05)


__all__ = ["LiveServer", "free_port", "live_server", "spawn_server", "wait_healthy"]
