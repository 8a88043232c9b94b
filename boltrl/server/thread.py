"""Run the boltrl server inside this process, in a background thread with its own event loop.

The trainer uses it to host the store, the REST API and the gateway next to the policy (so new
weights reach the in-process backend without a copy over the network); tests use it through
`boltrl.testing.live_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

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
def serve_in_thread(
    store: StoreOrFactory | None = None,
    config: ServerConfig | None = None,
    *,
    port: int | None = None,
    backend: Any = None,
    host: str = "127.0.0.1",
) -> Iterator[LiveServer]:
    """Serve `create_app(store, config, backend=...)` on `host` (a free port unless `port` is given).

    `store` is a Store or a zero-argument factory; a factory (and the default, a `MemoryStore`) is called
    inside the server's loop, which asyncio-based stores need. `backend` (an `InferenceBackend` or a
    zero-argument factory, called in the loop too) turns the gateway on. The server closes both on exit.
    """
    import uvicorn

    from boltrl.server.app import create_app, uvicorn_config

    sock = _bind(host, port or 0)
    cfg = dataclasses.replace(config or ServerConfig(db="memory"), host=host, port=sock.getsockname()[1])
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

    thread = threading.Thread(target=run, name=f"boltrl-server-{cfg.port}", daemon=True)
    thread.start()
    try:
        started.wait()
        while thread.is_alive() and not state["server"].started:
            time.sleep(0.005)
        if not thread.is_alive() or "error" in state:
            raise RuntimeError(f"the in-process server did not start: {state.get('error')!r}")
        yield LiveServer(
            url=cfg.url(),
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
            raise RuntimeError("the in-process server did not stop within 30 s")


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
