"""`GuardMiddleware`: the bearer-token check and the request-body size limit, in front of every route.

The server's token opens every route. An attempt's token (`boltrl.server.auth`) opens only that
attempt's gateway and the span routes (which then refuse spans of any other attempt); on any other
route it gets 403. A wrong or missing token gets 401, before routing.

A pure ASGI middleware rather than a FastAPI dependency: it rejects a request before routing, body
parsing or validation cost anything, and adds one header scan to each request that passes.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from boltrl.server import auth

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/"})
"""Routes that need no token: liveness probes carry no credentials, and the dashboard page holds no
data (it asks for the token and sends it on its own API calls)."""


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self._max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = content_length = chunked = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = value
        if self._token is not None and scope["path"] not in OPEN_PATHS:
            granted = self._authorize(authorization)
            if granted is None:
                await send_error(
                    send,
                    401,
                    "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                    "UnauthorizedError",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
            if isinstance(granted, tuple):
                if not auth.allowed(scope["method"], scope["path"], granted):
                    await send_error(send, 403, auth.forbidden_message(granted), "ForbiddenError")
                    return
                scope.setdefault("state", {})[auth.STATE_KEY] = granted
        if content_length is not None:
            # The HTTP server enforces Content-Length framing, so the header is the body's size.
            try:
                size = int(content_length)
            except ValueError:
                await send_error(send, 400, "Content-Length is not a number", "InvalidInputError")
                return
            if size > self._max:
                await send_error(send, 413, self._too_large(size), "PayloadTooLargeError")
                return
        elif chunked is not None:
            body = await self._read_limited(receive)
            if body is None:
                await send_error(send, 413, self._too_large(None), "PayloadTooLargeError")
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _authorize(self, header: bytes | None) -> tuple[str, str] | bool | None:
        """True for the server's token, `(rollout_id, attempt_id)` for an attempt's, None otherwise."""
        if header is None or self._token is None:
            return None
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        token = token.strip()
        if hmac.compare_digest(token, self._token):
            return True
        return auth.parse_attempt_token(self._token, token)

    def _too_large(self, size: int | None) -> str:
        got = f" ({size} bytes)" if size is not None else ""
        return f"request body is over the server's limit of {self._max} bytes{got}: send smaller batches"

    async def _read_limited(self, receive: Receive) -> bytes | None:
        """Read a body sent without Content-Length (chunked), giving up as soon as it is too big."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # later calls wait for the disconnect, as the app expects
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def error_body(message: str, kind: str) -> bytes:
    """The one error shape of the API: `{"error": {"message": ..., "type": ...}}`."""
    return json.dumps({"error": {"message": message, "type": kind}}).encode()


async def send_error(
    send: Send, status: int, message: str, kind: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = error_body(message, kind)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
