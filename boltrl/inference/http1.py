"""A lean keep-alive HTTP/1.1 client for JSON POSTs to an inference upstream over plain `http://`.

Why not httpx for this one job: it costs 0.3-0.5 ms of CPU per request, and its pool checks every
connection on every request, so at 64 concurrent agents it was half of the gateway's CPU. This client
sends a POST, reads the whole response (Content-Length or chunked, parsed by httptools, the parser
uvicorn already uses) and puts the connection back in a pool. `http1_client()` returns None where it
does not apply (https, a proxy configured for the host, no httptools): the caller uses httpx then.

A request that fails on a reused idle connection before any byte of the answer came back (the
upstream closed it while idle) is sent once more on a new connection, as browsers and httpx do.
"""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any
from urllib.parse import urlsplit

try:
    import httptools
except ImportError:  # pragma: no cover - uvicorn[standard] brings it on CPython
    httptools = None  # type: ignore[assignment]


class UpstreamUnreachable(ConnectionError):
    """The upstream could not be reached, or dropped the connection before answering."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.open = True
        self.answered = False  # some of the current answer has arrived (then no retry)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(UpstreamUnreachable(f"malformed HTTP response: {e}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(UpstreamUnreachable(f"connection closed by the upstream{f': {exc}' if exc else ''}"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.open = False  # answered with Connection: close (or HTTP/1.0)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), b"".join(self.chunks)))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.chunks, self.answered = [], False
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await self.waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()


class Http1Client:
    """POST JSON bodies to `base_url` (plain http) over at most `max_connections` kept-alive connections."""

    def __init__(
        self, base_url: str, headers: dict[str, str], *, timeout_s: float, max_connections: int
    ) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.prefix = url.path.rstrip("/")
        lines = {
            "Host": url.netloc,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "boltrl",
            **headers,
        }
        self._head = "".join(f"{k}: {v}\r\n" for k, v in lines.items()).encode("latin-1")
        self.timeout_s, self.max_connections = timeout_s, max_connections
        self._idle: list[_Connection] = []
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of `POST prefix+path`; raises UpstreamUnreachable or TimeoutError."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections belong to one loop; a new loop starts a new pool
            self._drop_idle()
            self._loop, self._slots = loop, asyncio.Semaphore(self.max_connections)
        assert self._slots is not None
        data = b"".join(
            (
                f"POST {self.prefix}{path} HTTP/1.1\r\n".encode(),
                self._head,
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        async with self._slots, asyncio.timeout(self.timeout_s):
            while True:
                conn = self._take_idle()
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(loop)
                try:
                    reply = await conn.request(data)
                except UpstreamUnreachable:
                    conn.close()
                    if reused and not conn.answered:
                        continue  # closed while idle: send again on a new connection
                    raise
                except BaseException:  # timeout or cancellation mid-request: the connection is spent
                    conn.close()
                    raise
                if conn.open:
                    self._idle.append(conn)
                else:
                    conn.close()
                return reply

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()  # the most recently used is the least likely to have timed out
            if conn.open:
                return conn
            conn.close()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        try:
            _, conn = await loop.create_connection(_Connection, self.host, self.port)
        except OSError as e:
            raise UpstreamUnreachable(f"cannot connect to {self.host}:{self.port}: {e}") from e
        return conn

    def _drop_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def aclose(self) -> None:
        self._drop_idle()


def http1_client(base_url: str, headers: dict[str, str], **kwargs: Any) -> Http1Client | None:
    """An `Http1Client` for `base_url`, or None where httpx must be used (https, a proxy, no httptools)."""
    url = urlsplit(base_url)
    if httptools is None or url.scheme != "http":
        return None
    proxies = urllib.request.getproxies()
    if "http" in proxies and not urllib.request.proxy_bypass(url.hostname or ""):
        return None
    return Http1Client(base_url, headers, **kwargs)
