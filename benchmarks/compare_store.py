"""Store workloads for `compare.py`: the same operations against boltrl's and Agent Lightning's HTTP APIs.

Each workload runs in its own process (`run_workload`), so the load never shares an event loop or a GIL
with a server, and talks HTTP/1.1 over keep-alive connections with a minimal client of its own: httpx
costs 0.2-0.5 ms of CPU per request, which on a 2-core machine would measure the client, not the server.
Payloads (span batches, OTLP protobuf) are built before the clock starts.

The two APIs, operation by operation (boltrl · agentlightning 0.3.0's `agl store`):
- enqueue: `POST /v1/rollouts` · `POST /v1/agl/queues/rollouts/enqueue`, both `{"rollouts": [...]}`;
- claim: `POST /v1/rollouts/claim {"worker_id"}` (204 when empty) ·
  `POST /v1/agl/queues/rollouts/dequeue {"limit": 1, "worker_id"}` (`[]` when empty);
- finish: `POST /v1/attempts/{aid}/finish` · `POST /v1/agl/rollouts/{rid}/attempts/{aid}`,
  both `{"status": "succeeded"}`;
- one span: `POST /v1/spans {"spans": [span]}` · `POST /v1/agl/spans span` (its client's `add_span`);
- a span batch: OTLP protobuf to `POST /v1/traces` on both (agentlightning's only batched span route).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from typing import Any

SYSTEMS = ("boltrl", "agl")
ATTRIBUTES: dict[str, Any] = {
    "gen_ai.system": "openai",
    "gen_ai.request.model": "x",
    "gen_ai.request.temperature": 0.7,
    "gen_ai.prompt.0.role": "user",
    "gen_ai.prompt.0.content": "What is 17 * 23? Answer with the number only.",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": "391",
    "gen_ai.response.finish_reason": "stop",
    "gen_ai.usage.prompt_tokens": 30,
    "gen_ai.usage.completion_tokens": 2,
}
ROUTES = {
    "boltrl": {
        "enqueue": b"/v1/rollouts",
        "claim": b"/v1/rollouts/claim",
        "span": b"/v1/spans",
        "otlp": b"/v1/traces",
    },
    "agl": {
        "enqueue": b"/v1/agl/queues/rollouts/enqueue",
        "claim": b"/v1/agl/queues/rollouts/dequeue",
        "span": b"/v1/agl/spans",
        "otlp": b"/v1/traces",
    },
}
JSON = b"application/json"
PROTOBUF = b"application/x-protobuf"


class RawHTTP:
    """One keep-alive HTTP/1.1 connection, one request at a time; bodies by content-length or chunked."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def __aenter__(self) -> RawHTTP:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    async def request(
        self, method: bytes, path: bytes, body: bytes = b"", ctype: bytes = JSON
    ) -> tuple[int, bytes]:
        head = b"%s %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n"
        self.writer.write(head % (method, path, ctype, len(body)) + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length, chunked = 0, False
        for line in raw.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length) if length else b""
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return status, b"".join(p[:-2] for p in parts)

    async def post(
        self, path: bytes, body: bytes, ctype: bytes = JSON, ok: tuple[int, ...] = (200, 201)
    ) -> bytes:
        status, data = await self.request(b"POST", path, body, ctype)
        if status not in (*ok, 204):
            raise RuntimeError(f"POST {path.decode()} -> {status}: {data[:300]!r}")
        return data if status != 204 else b""

    async def get(self, path: bytes) -> Any:
        status, data = await self.request(b"GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path.decode()} -> {status}: {data[:300]!r}")
        return json.loads(data)


# ---------------------------------------------------------------- payloads (same content for both)


def enqueue_body(start: int, batch: int) -> bytes:
    """Identical bytes for both: each API takes {"rollouts": [{"input": ...}]}."""
    rollouts = [
        {"input": {"task": f"task-{i}", "question": "What is 17 * 23?"}} for i in range(start, start + batch)
    ]
    return json.dumps({"rollouts": rollouts}).encode()


def _ids(rng: random.Random) -> tuple[str, str]:
    return f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"


def span_dict(system: str, rollout_id: str, attempt_id: str, i: int, rng: random.Random) -> dict[str, Any]:
    """One span in each API's own JSON shape, same ids, name, times and attributes."""
    trace_id, span_id = _ids(rng)
    start = 1.7e9 + i
    if system == "boltrl":
        span = {
            "rollout_id": rollout_id, "attempt_id": attempt_id, "trace_id": trace_id, "span_id": span_id,
            "name": "openai.chat.completion", "start": start, "end": start + 0.5, "attributes": ATTRIBUTES,
            "status": "ok",
        }  # fmt: skip
        return span
    return {
        "rollout_id": rollout_id, "attempt_id": attempt_id, "sequence_id": i + 1, "trace_id": trace_id,
        "span_id": span_id, "parent_id": None, "name": "openai.chat.completion",
        "status": {"status_code": "OK"}, "attributes": ATTRIBUTES, "events": [], "links": [],
        "start_time": start, "end_time": start + 0.5, "context": None, "parent": None,
        "resource": {"attributes": {}, "schema_url": ""},
    }  # fmt: skip


def span_body(system: str, rollout_id: str, attempt_id: str, i: int, rng: random.Random) -> bytes:
    span = span_dict(system, rollout_id, attempt_id, i, rng)
    return json.dumps({"spans": [span]} if system == "boltrl" else span).encode()


def otlp_body(system: str, rollout_id: str, attempt_id: str, batch: int, rng: random.Random) -> bytes:
    """An OTLP ExportTraceServiceRequest of `batch` spans; the ids go in each API's resource attributes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def kv(key: str, value: Any) -> KeyValue:
        if isinstance(value, str):
            return KeyValue(key=key, value=AnyValue(string_value=value))
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(double_value=value))

    prefix = "boltrl" if system == "boltrl" else "agentlightning"
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [
            kv("service.name", "bench-agent"),
            kv(f"{prefix}.rollout_id", rollout_id),
            kv(f"{prefix}.attempt_id", attempt_id),
        ]
    )
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "bench"
    for i in range(batch):
        span = scope.spans.add()
        span.trace_id = rng.getrandbits(128).to_bytes(16, "big")
        span.span_id = rng.getrandbits(64).to_bytes(8, "big")
        span.name = "openai.chat.completion"
        span.kind = 3  # CLIENT
        span.start_time_unix_nano = 1_700_000_000_000_000_000 + i * 1_000_000
        span.end_time_unix_nano = span.start_time_unix_nano + 500_000_000
        span.attributes.extend(kv(k, v) for k, v in ATTRIBUTES.items())
        span.status.code = 1  # OK
    return request.SerializeToString()


# ---------------------------------------------------------------- set-up helpers (not timed)


async def claim_one(http: RawHTTP, system: str, worker: str) -> tuple[str, str] | None:
    """(rollout id, attempt id) of the next queued rollout, or None when the queue is empty."""
    if system == "boltrl":
        data = await http.post(ROUTES[system]["claim"], json.dumps({"worker_id": worker}).encode())
        if not data:
            return None
        claim = json.loads(data)
        return claim["rollout"]["id"], claim["attempt"]["id"]
    data = await http.post(ROUTES[system]["claim"], json.dumps({"limit": 1, "worker_id": worker}).encode())
    got = json.loads(data)
    if not got:
        return None
    return got[0]["rollout_id"], got[0]["attempt"]["attempt_id"]


def finish_path(system: str, rollout_id: str, attempt_id: str) -> bytes:
    if system == "boltrl":
        return f"/v1/attempts/{attempt_id}/finish".encode()
    return f"/v1/agl/rollouts/{rollout_id}/attempts/{attempt_id}".encode()


async def open_attempt(http: RawHTTP, system: str) -> tuple[str, str]:
    await http.post(ROUTES[system]["enqueue"], enqueue_body(0, 1))
    got = await claim_one(http, system, "span-writer")
    assert got is not None
    return got


async def count_spans(http: RawHTTP, system: str, rollout_id: str) -> int:
    if system == "boltrl":
        return len((await http.get(f"/v1/rollouts/{rollout_id}/spans".encode()))["spans"])
    body = json.dumps({"rollout_id": rollout_id, "limit": 1}).encode()
    return int(json.loads(await http.post(b"/v1/agl/spans/search", body))["total"])


async def count_rollouts(http: RawHTTP, system: str) -> dict[str, int]:
    """Rollouts by status, as each server reports them."""
    if system == "boltrl":
        return dict((await http.get(b"/v1/stats"))["rollouts"])
    counts: dict[str, int] = {}
    offset = 0
    while True:
        page = await http.get(f"/v1/agl/rollouts?limit=1000&offset={offset}".encode())
        for r in page["items"]:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return counts


# ---------------------------------------------------------------- workloads (timed)


async def _workload(
    system: str, port: int, op: str, concurrency: int, total: int, batch: int
) -> dict[str, Any]:
    routes = ROUTES[system]
    conns = [RawHTTP(port) for _ in range(concurrency)]
    for c in conns:
        await c.__aenter__()
    rng = random.Random(0)
    per_worker = max(1, total // concurrency)
    check: dict[str, Any] = {}
    try:
        if op == "enqueue":
            bodies = [
                [enqueue_body(w * per_worker + i, batch) for i in range(0, per_worker, batch)]
                for w in range(concurrency)
            ]

            async def run(w: int) -> None:
                for body in bodies[w]:
                    await conns[w].post(routes["enqueue"], body)

            items = sum(len(b) for b in bodies) * batch
        elif op == "claim_finish":
            for start in range(0, per_worker * concurrency, 100):
                await conns[0].post(
                    routes["enqueue"], enqueue_body(start, min(100, per_worker * concurrency - start))
                )
            done = [0] * concurrency

            async def run(w: int) -> None:
                finish = json.dumps({"status": "succeeded"}).encode()
                while (got := await claim_one(conns[w], system, f"worker-{w}")) is not None:
                    await conns[w].post(finish_path(system, *got), finish)
                    done[w] += 1

            items = per_worker * concurrency
        elif op in ("span", "otlp", "span_batch"):
            rollout_id, attempt_id = await open_attempt(conns[0], system)
            n_requests = per_worker // batch
            if op == "span":
                bodies = [
                    [
                        span_body(system, rollout_id, attempt_id, w * per_worker + i, rng)
                        for i in range(per_worker)
                    ]
                    for w in range(concurrency)
                ]
            elif op == "otlp":
                bodies = [
                    [otlp_body(system, rollout_id, attempt_id, batch, rng) for _ in range(n_requests)]
                    for w in range(concurrency)
                ]
            else:  # boltrl's own JSON batch route

                def batch_body() -> bytes:
                    spans = [span_dict(system, rollout_id, attempt_id, i, rng) for i in range(batch)]
                    return json.dumps({"spans": spans}).encode()

                bodies = [[batch_body() for _ in range(n_requests)] for w in range(concurrency)]
            ctype = PROTOBUF if op == "otlp" else JSON
            path = routes["otlp"] if op == "otlp" else routes["span"]

            async def run(w: int) -> None:
                for body in bodies[w]:
                    await conns[w].post(path, body, ctype)

            items = sum(len(b) for b in bodies) * (1 if op == "span" else batch)
        else:
            raise ValueError(op)
        start = time.perf_counter()
        await asyncio.gather(*(run(w) for w in range(concurrency)))
        wall = time.perf_counter() - start
        if op == "claim_finish":
            check["finished"] = sum(done)
            if sum(done) != items:
                raise RuntimeError(f"{system}: {sum(done)} of {items} rollouts claimed and finished")
        elif op != "enqueue":
            stored = await count_spans(conns[0], system, rollout_id)
            if stored != items:
                raise RuntimeError(f"{system} {op}: sent {items} spans, the store holds {stored}")
            check["stored"] = stored
    finally:
        for c in conns:
            await c.__aexit__()
    return {"items": items, "wall_s": wall, "per_s": items / wall, **check}


def _workload_process(args: tuple[Any, ...], out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        out.put(asyncio.run(_workload(*args)))
    except BaseException as e:
        out.put({"error": repr(e)})
        raise


def run_workload(
    system: str, port: int, op: str, concurrency: int, total: int, batch: int = 1
) -> dict[str, Any]:
    """Run one timed workload in a fresh process; returns {"items", "wall_s", "per_s"}."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=_workload_process, args=((system, port, op, concurrency, total, batch), out))
    p.start()
    result: dict[str, Any] = out.get(timeout=600)
    p.join()
    if "error" in result:
        raise RuntimeError(f"{system} {op} (pid {os.getpid()}): {result['error']}")
    return result
