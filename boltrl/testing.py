"""Test helpers that ship with boltrl, so users test their own agents the way boltrl tests itself.

- `live_server()`: the real app on a free loopback port, in a background thread with its own loop.
- `spawn_server()` / `wait_healthy()`: a real `python -m boltrl serve` process, for tests that kill it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from boltrl.config import ServerConfig
from boltrl.store.base import Store

T = TypeVar("T")
StoreOrFactory = Store | Callable[[], Store]


@dataclasses.dataclass
class LiveServer:
    """A running server: `url` to reach it, its `config`, and its `store` (owned by the server's loop)."""

    url: str
    config: ServerConfig
    store: Store
    loop: asyncio.AbstractEventLoop
    backend: Any = None

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        """Run a coroutine (e.g. a store method) on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)


@contextlib.contextmanager
def live_server(
    store: StoreOrFactory | None = None,
    config: ServerConfig | None = None,
    *,
    port: int | None = None,
    backend: Any = None,
) -> Iterator[LiveServer]:
    """Serve `create_app(store, config, backend=...)` on 127.0.0.1 (a free port unless `port` is given).

    `store` is a Store or a zero-argument factory; a factory (and the default, a `MemoryStore`) is called
    inside the server's loop, which asyncio-based stores need. `backend` (an `InferenceBackend` or a
    zero-argument factory, called in the loop too) turns the gateway on. The server closes both on exit.
    """
    import uvicorn

    from boltrl.server.app import create_app, uvicorn_config

    sock = _bind("127.0.0.1", port or 0)
    cfg = dataclasses.replace(
        config or ServerConfig(db="memory"), host="127.0.0.1", port=sock.getsockname()[1]
    )
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        st = _make_store(store)
        be = backend() if callable(backend) and not hasattr(backend, "chat") else backend
        server = uvicorn.Server(
            uvicorn_config(
                create_app(st, cfg, backend=be),
                cfg,
                log_config=None,
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
        )
        state.update(store=st, server=server, loop=asyncio.get_running_loop(), backend=be)
        started.set()
        await server.serve(sockets=[sock])

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as e:
            state["error"] = e
        finally:
            started.set()

    thread = threading.Thread(target=run, name=f"boltrl-live-server-{cfg.port}", daemon=True)
    thread.start()
    try:
        started.wait()
        while thread.is_alive() and not state["server"].started:
            time.sleep(0.005)
        if not thread.is_alive() or "error" in state:
            raise RuntimeError(f"the test server did not start: {state.get('error')!r}")
        yield LiveServer(
            url=f"http://127.0.0.1:{cfg.port}",
            config=cfg,
            store=state["store"],
            loop=state["loop"],
            backend=state["backend"],
        )
    finally:
        if "server" in state:
            state["server"].should_exit = True
        thread.join(timeout=30)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the test server did not stop within 30 s")


def _make_store(store: StoreOrFactory | None) -> Store:
    if store is None:
        from boltrl.store.memory import MemoryStore

        return MemoryStore()
    if isinstance(store, type) or not hasattr(store, "claim"):  # a class or a factory function
        return store()
    return store  # type: ignore[return-value]


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio turns Nagle off only on sockets that say they are TCP, and with
    # Nagle on every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may take it before you bind it)."""
    with contextlib.closing(_bind("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


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
