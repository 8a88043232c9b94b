"""`StoreClient`: the `Store` protocol over the boltrl HTTP API, with retries that are safe to repeat.

It retries connection errors, timeouts and 502/503/504 with exponential backoff and jitter for up to
`ClientConfig.retry_for_s` (so a server restart is ridden out), then raises `ServerUnavailableError`.
Error responses become the same `boltrl.errors` classes a local store raises, with the server's message.

A retried request may already have landed the first time. What makes each method safe to repeat:
- `enqueue`: ids are assigned here before sending, so a repeat returns the stored rollouts unchanged.
- `add_spans`: span ids are assigned here (`SpanCreate` defaults); the server keeps the first of a
  `(rollout_id, span_id)` pair, so a repeat does not duplicate them.
- `finish_attempt` / `cancel`: a 409 on a repeat whose attempt (rollout) now has exactly the status we
  asked for means the first try landed; the stored record is returned instead of raising.
- `heartbeat`, reads, `wait`, `reap`: repeating them changes nothing a caller can tell.
- `claim`: a claim whose reply was lost opens an attempt nobody works on; it misses its heartbeats
  and the reaper requeues the rollout (costing one of its `max_attempts`).
- `put_resources`: a repeat may publish the same resources twice, as two versions.
- `add_run_metrics`: a step posted again replaces the same row. `import_rollout`: spans go in batches
  of at most `_IMPORT_BATCH_BYTES`; each batch after the first finds the rollout stored and adds only
  spans it lacks, so a repeat of any of them changes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from boltrl.config import DEFAULT_SERVER, ClientConfig
from boltrl.errors import (
    ERRORS_BY_STATUS,
    BoltrlError,
    ConflictError,
    InvalidInputError,
    ServerUnavailableError,
)
from boltrl.types import (
    Attempt,
    Claim,
    EnqueueRequest,
    EnqueueResponse,
    FinishedCounts,
    ImportRequest,
    Resources,
    ResourcesUpdate,
    Rollout,
    RolloutCreate,
    RolloutPage,
    Run,
    RunList,
    RunMetrics,
    RunMetricsRequest,
    Span,
    SpanCreate,
    SpansRequest,
    SpansResponse,
    WaitRequest,
    WaitResponse,
    Worker,
    WorkerList,
    new_id,
)

log = logging.getLogger("boltrl.client")

M = TypeVar("M", bound=BaseModel)

_RETRY_STATUSES = frozenset({502, 503, 504})
KEEPALIVE_EXPIRY_S = 30.0
"""How long the client keeps an idle connection: under the server's keep-alive (75 s), so the client
never sends on a connection the server is closing."""
_RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 2.0
_MAX_BATCH = 10_000  # the server's limit on rollouts or spans per request
_MAX_WAIT_S = 300.0  # the server's limit on one long poll
_IMPORT_BATCH_BYTES = 8 * 1024 * 1024  # well under the server's default body limit (32 MiB)


class _Attempts(BaseModel):
    attempts: list[Attempt]


class _Stats(BaseModel):
    rollouts: dict[str, int]


class StoreClient:
    """A `Store` that is a boltrl server. One `httpx.AsyncClient`, created on first use."""

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        token: str | None = None,
        *,
        config: ClientConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`config` supplies what `server` and `token` leave at their defaults. `transport` replaces the
        network (e.g. `httpx.ASGITransport(app)` to test against an app in process)."""
        config = config or ClientConfig()
        self.config = dataclasses.replace(
            config,
            server=(server if server != DEFAULT_SERVER else config.server).rstrip("/"),
            token=token if token is not None else config.token,
        )
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"StoreClient({self.config.server!r})"  # never the token

    async def __aenter__(self) -> StoreClient:
        self._client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    # ------------------------------------------------------------ rollouts

    async def enqueue(self, rollouts: list[RolloutCreate]) -> list[Rollout]:
        with_ids = [rc if rc.id else rc.model_copy(update={"id": new_id("ro")}) for rc in rollouts]
        out: list[Rollout] = []
        for batch in _batches(with_ids):
            body = EnqueueRequest.model_construct(rollouts=batch)
            out += _parse(await self._send("POST", "/v1/rollouts", body), EnqueueResponse).rollouts
        return out

    async def get_rollout(self, rollout_id: str) -> Rollout:
        return _parse(await self._send("GET", f"/v1/rollouts/{_q(rollout_id)}"), Rollout)

    async def list_rollouts(
        self,
        *,
        status: str | None = None,
        group_id: str | None = None,
        mode: str | None = None,
        limit: int = 100,
        after: str | None = None,
        order: str = "asc",
    ) -> RolloutPage:
        params = {"status": status, "group_id": group_id, "mode": mode, "limit": limit, "after": after}
        params["order"] = order if order != "asc" else None
        query = {k: v for k, v in params.items() if v is not None}
        return _parse(await self._send("GET", "/v1/rollouts", params=query), RolloutPage)

    async def cancel(self, rollout_id: str) -> Rollout:
        try:
            return _parse(await self._send("POST", f"/v1/rollouts/{_q(rollout_id)}/cancel"), Rollout)
        except _LandedConflict:
            rollout = await self.get_rollout(rollout_id)
            if rollout.status != "cancelled":
                raise ConflictError(f"rollout {rollout_id!r} is {rollout.status}, not cancellable") from None
            return rollout

    async def count_rollouts(self) -> dict[str, int]:
        return _parse(await self._send("GET", "/v1/stats"), _Stats).rollouts

    async def count_finished(self, since: float) -> dict[str, int]:
        response = await self._send("GET", "/v1/stats/finished", params={"since": since})
        return _parse(response, FinishedCounts).rollouts

    async def import_rollout(
        self, rollout: Rollout, attempts: list[Attempt], spans: list[SpanCreate]
    ) -> Rollout:
        batches = _byte_batches([_span_json(s) for s in spans], _IMPORT_BATCH_BYTES) or [[]]
        head = ImportRequest.model_construct(rollout=rollout, attempts=attempts, spans=[])
        prefix = head.__pydantic_serializer__.to_json(head)[: -len(b"[]}")]  # ...,"spans":
        stored = rollout
        for batch in batches:
            body = prefix + b"[" + b",".join(batch) + b"]}"
            stored = _parse(await self._send("POST", "/v1/rollouts/import", raw=body), Rollout)
        return stored

    # ------------------------------------------------------------ attempts

    async def claim(self, worker_id: str) -> Claim | None:
        response = await self._send("POST", "/v1/rollouts/claim", {"worker_id": worker_id})
        return None if response.status_code == 204 else _parse(response, Claim)

    async def heartbeat(self, attempt_id: str) -> Attempt:
        return _parse(await self._send("POST", f"/v1/attempts/{_q(attempt_id)}/heartbeat"), Attempt)

    async def finish_attempt(self, attempt_id: str, status: str, error: str | None = None) -> Attempt:
        body = {"status": status, "error": error}
        try:
            return _parse(await self._send("POST", f"/v1/attempts/{_q(attempt_id)}/finish", body), Attempt)
        except _LandedConflict as conflict:
            attempt = await self.get_attempt(attempt_id)
            if attempt.status != status:
                raise ConflictError(str(conflict)) from None
            return attempt

    async def get_attempt(self, attempt_id: str) -> Attempt:
        return _parse(await self._send("GET", f"/v1/attempts/{_q(attempt_id)}"), Attempt)

    async def list_attempts(self, rollout_id: str) -> list[Attempt]:
        return _parse(await self._send("GET", f"/v1/rollouts/{_q(rollout_id)}/attempts"), _Attempts).attempts

    async def wait(self, rollout_ids: list[str], timeout_s: float) -> list[Rollout]:
        """Long-poll the server, in polls of at most 300 s (its limit) until `timeout_s` is spent."""
        if not rollout_ids:
            return []
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            poll_s = min(max(deadline - time.monotonic(), 0.0), _MAX_WAIT_S)
            body = WaitRequest.model_construct(ids=rollout_ids, timeout_s=poll_s)
            response = await self._send(
                "POST", "/v1/rollouts/wait", body, timeout_s=self.config.timeout_s + poll_s
            )
            done = _parse(response, WaitResponse).rollouts
            if len(done) >= len(set(rollout_ids)) or time.monotonic() >= deadline:
                return done

    async def reap(self, heartbeat_timeout_s: float) -> list[Attempt]:
        body = {"heartbeat_timeout_s": heartbeat_timeout_s}
        return _parse(await self._send("POST", "/v1/admin/reap", body), _Attempts).attempts

    # ------------------------------------------------------------ spans

    async def add_spans(self, spans: list[SpanCreate]) -> list[Span]:
        out: list[Span] = []
        for batch in _batches(spans):
            body = SpansRequest.model_construct(spans=batch)
            out += _parse(await self._send("POST", "/v1/spans", body), SpansResponse).spans
        return out

    async def get_spans(self, rollout_id: str, *, attempt_id: str | None = None) -> list[Span]:
        params = {"attempt_id": attempt_id} if attempt_id is not None else None
        response = await self._send("GET", f"/v1/rollouts/{_q(rollout_id)}/spans", params=params)
        return _parse(response, SpansResponse).spans

    # ------------------------------------------------------------ workers and runs

    async def list_workers(self) -> list[Worker]:
        return _parse(await self._send("GET", "/v1/workers"), WorkerList).workers

    async def add_run_metrics(self, run_id: str, rows: list[dict[str, Any]]) -> Run:
        run = None
        for batch in _batches(rows):
            body = RunMetricsRequest.model_construct(rows=batch)
            run = _parse(await self._send("POST", f"/v1/runs/{_q(run_id)}/metrics", body), Run)
        if run is None:
            raise InvalidInputError("rows: give at least one row")
        return run

    async def get_run_metrics(self, run_id: str) -> list[dict[str, Any]]:
        return _parse(await self._send("GET", f"/v1/runs/{_q(run_id)}/metrics"), RunMetrics).rows

    async def list_runs(self) -> list[Run]:
        return _parse(await self._send("GET", "/v1/runs"), RunList).runs

    # ------------------------------------------------------------ resources

    async def get_resources(self, version: int | None = None) -> Resources | None:
        if version is None:
            response = await self._send("GET", "/v1/resources", ok_404=True)
            return None if response.status_code == 404 else _parse(response, Resources)
        return _parse(await self._send("GET", f"/v1/resources/{int(version)}"), Resources)

    async def put_resources(self, resources: dict[str, object]) -> Resources:
        body = ResourcesUpdate.model_construct(resources=resources)
        return _parse(await self._send("PUT", "/v1/resources", body), Resources)

    # ------------------------------------------------------------ HTTP

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            # A client's connections belong to the loop that opened them; a new loop needs a new one.
            headers = {"authorization": f"Bearer {self.config.token}"} if self.config.token else {}
            self._http = httpx.AsyncClient(
                base_url=self.config.server,
                headers=headers,
                timeout=self.config.timeout_s,
                limits=httpx.Limits(
                    max_connections=100, max_keepalive_connections=100, keepalive_expiry=KEEPALIVE_EXPIRY_S
                ),
                transport=self._transport,
            )
            self._loop = loop
        return self._http

    async def _send(
        self,
        method: str,
        path: str,
        body: BaseModel | dict[str, Any] | None = None,
        *,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        ok_404: bool = False,
        raw: bytes | None = None,
    ) -> httpx.Response:
        """Send with retries; return a 2xx response (or 404 when `ok_404`), else raise the mapped error.
        `raw`: a body already serialized to JSON."""
        content: bytes | None = raw
        if isinstance(body, BaseModel):
            content = body.__pydantic_serializer__.to_json(body)
        elif body is not None:
            content = _json(body)
        headers = {"content-type": "application/json"} if content is not None else None
        timeout = httpx.Timeout(timeout_s) if timeout_s is not None else httpx.USE_CLIENT_DEFAULT
        deadline = time.monotonic() + self.config.retry_for_s
        tries = 0
        while True:
            tries += 1
            problem: str
            try:
                response = await self._client().request(
                    method, path, content=content, params=params, headers=headers, timeout=timeout
                )
            except _RETRY_ERRORS as e:
                problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if response.status_code not in _RETRY_STATUSES:
                    if response.is_success or (ok_404 and response.status_code == 404):
                        return response
                    _raise_for(response, landed=tries > 1)
                problem = f"HTTP {response.status_code}"
            delay = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** (tries - 1)) * random.uniform(0.5, 1.5)
            if time.monotonic() + delay > deadline:
                raise ServerUnavailableError(
                    f"boltrl server {self.config.server} unavailable: {method} {path} failed {tries} "
                    f"time(s) over {self.config.retry_for_s:g} s, last with {problem}"
                )
            if tries == 1:
                log.warning(
                    "%s %s failed (%s); retrying for up to %g s",
                    method,
                    path,
                    problem,
                    self.config.retry_for_s,
                )
            await asyncio.sleep(delay)


class _LandedConflict(ConflictError):
    """A 409 to a retried request: the first try may have landed (callers check and decide)."""


def _raise_for(response: httpx.Response, *, landed: bool) -> None:
    try:
        message = str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = response.text[:1000] or response.reason_phrase
    if landed and response.status_code == 409:
        raise _LandedConflict(message)
    cls = ERRORS_BY_STATUS.get(response.status_code)
    if cls is None:
        raise BoltrlError(f"server answered {response.status_code}: {message}")
    raise cls(message)


def _parse(response: httpx.Response, model: type[M]) -> M:
    return model.model_validate_json(response.content)


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _span_json(span: SpanCreate) -> bytes:
    """A span as the import route takes it: a `SpanCreate`, without a stored span's `seq`."""
    return span.__pydantic_serializer__.to_json(span, exclude={"seq"})


def _byte_batches(items: list[bytes], max_bytes: int) -> list[list[bytes]]:
    """Consecutive batches of at most `max_bytes` (a bigger item goes alone) and 10,000 items."""
    batches: list[list[bytes]] = []
    size = 0
    for item in items:
        if not batches or size + len(item) > max_bytes or len(batches[-1]) >= _MAX_BATCH:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += len(item) + 1
    return batches


def _batches(items: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(items), _MAX_BATCH):
        yield items[i : i + _MAX_BATCH]
