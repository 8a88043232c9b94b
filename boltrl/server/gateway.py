"""The gateway: an OpenAI-compatible endpoint per attempt that forwards to the inference backend and
records every call as a `boltrl.model_call` span with the backend's own token ids and logprobs.

An agent changes only its `base_url` to `{server}/gw/{rollout_id}/{attempt_id}/v1`. The attempt must
exist and belong to the rollout (else 404) and still be running (else 409): a lost or finished
attempt cannot add model calls. A backend error reaches the agent as the OpenAI error body with the
same status, and the failed call is recorded too (with `error` set, and no tokens).

Streaming (`"stream": true`) is answered as Server-Sent Events in OpenAI's chunk format. The backend
generates the whole answer first, so the recorded call is complete before the first byte is sent;
the agent sees the same text, in chunks, as it would without streaming.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import pydantic_core
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from boltrl.config import ServerConfig
from boltrl.errors import ConflictError, InvalidInputError, NotFoundError
from boltrl.inference.base import BackendError, ChatResult, InferenceBackend
from boltrl.server.auth import attempt_token
from boltrl.store.base import Store
from boltrl.types import MODEL_CALL_SPAN, Claim, LLMResource, ModelCall, Resources, SpanCreate

log = logging.getLogger("boltrl.gateway")

AGENT_HEADER = "x-boltrl-agent"


WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def gateway_url(config: ServerConfig, rollout_id: str, attempt_id: str) -> str:
    """The `base_url` an agent uses for one attempt. A server bound to every interface (and given no
    `public_url`) cannot know which of its addresses a runner reached it by, so it sends the template
    `{server}/gw/...`, which the runner fills in with the URL it uses itself (`LLM.for_attempt`)."""
    base = "{server}" if config.public_url is None and config.host in WILDCARD_HOSTS else config.url()
    return f"{base}/gw/{rollout_id}/{attempt_id}/v1"


def with_gateway_llm(claim: Claim, config: ServerConfig, backend: InferenceBackend) -> Claim:
    """Point the claim's `llm` resource at this attempt's gateway URL, keeping the published model
    name and sampling parameters (or the backend's first model when none was published). Its
    `api_key` is the attempt's own token (`boltrl.server.auth`), never the server's."""
    resources = claim.resources.model_copy(deep=True) if claim.resources else None
    published = dict(resources.resources.get("llm") or {}) if resources else {}
    llm = LLMResource(
        base_url=gateway_url(config, claim.rollout.id, claim.attempt.id),
        model=published.get("model") or backend.models()[0],
        api_key=attempt_token(config.token, claim.rollout.id, claim.attempt.id) if config.token else "boltrl",
        sampling=published.get("sampling") or {},
    )
    if resources is None:
        resources = Resources(version=0, resources={}, created_at=claim.attempt.started_at)
    resources.resources["llm"] = llm.model_dump()
    return claim.model_copy(update={"resources": resources})


def router(
    store: Store, backend: InferenceBackend, on_calls: Callable[[list[ModelCall]], None] | None = None
) -> APIRouter:
    """`on_calls` sees each request's recorded calls (the server's Prometheus counters); it must be cheap."""
    r = APIRouter(prefix="/gw/{rollout_id}/{attempt_id}/v1", tags=["gateway"])
    recorder = Recorder(store)

    async def running_attempt(rollout_id: str, attempt_id: str) -> None:
        # Read from the store on every call, not cached: a finished or lost attempt must get its 409
        # at once, whichever process finished it. It costs one primary-key SELECT.
        attempt = await store.get_attempt(attempt_id)
        if attempt.rollout_id != rollout_id:
            raise NotFoundError(f"attempt {attempt_id!r} is not an attempt of rollout {rollout_id!r}")
        if attempt.status != "running":
            raise ConflictError(
                f"attempt {attempt_id!r} is {attempt.status}: it can make no more model calls"
            )

    async def forward(kind: str, rollout_id: str, attempt_id: str, request: Request) -> Response:
        await running_attempt(rollout_id, attempt_id)
        body = await _json_body(request)
        agent = request.headers.get(AGENT_HEADER) or body.get("user")
        started = time.time()
        try:
            result: ChatResult = await (backend.chat(body) if kind == "chat" else backend.complete(body))
        except Exception as e:  # a BackendError, or a bug in a backend: both reach the agent, recorded
            error = e if isinstance(e, BackendError) else _internal_error(e)
            latency_ms = (time.time() - started) * 1000
            call = ModelCall(
                request=body, agent=agent, error=error.message, latency_ms=latency_ms, trainable=False
            )
            await recorder.record(_spans(rollout_id, attempt_id, [call], started, "error"))
            if on_calls is not None:
                on_calls([call])
            return _json(error.to_openai(), error.status)
        latency_ms = (time.time() - started) * 1000
        calls = result.model_calls(body, latency_ms=latency_ms, agent=agent)
        await recorder.record(_spans(rollout_id, attempt_id, calls, started, "ok"))
        if on_calls is not None:
            on_calls(calls)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = (
                _chat_chunks(result.response, include_usage)
                if kind == "chat"
                else _text_chunks(result.response, include_usage)
            )
            return StreamingResponse(_sse(chunks), media_type="text/event-stream")
        return _json(result.response)

    @r.get("/models")
    async def models(rollout_id: str, attempt_id: str) -> Response:
        """The models this gateway answers for (any name is accepted and served by the backend)."""
        attempt = await store.get_attempt(attempt_id)
        if attempt.rollout_id != rollout_id:
            raise NotFoundError(f"attempt {attempt_id!r} is not an attempt of rollout {rollout_id!r}")
        created = int(time.time())
        data = [
            {"id": m, "object": "model", "created": created, "owned_by": "boltrl"} for m in backend.models()
        ]
        return _json({"object": "list", "data": data})

    @r.post("/chat/completions")
    async def chat_completions(rollout_id: str, attempt_id: str, request: Request) -> Response:
        """OpenAI chat.completions, recorded. Streaming, tools, n, stop, seed and sampling supported."""
        return await forward("chat", rollout_id, attempt_id, request)

    @r.post("/completions")
    async def completions(rollout_id: str, attempt_id: str, request: Request) -> Response:
        """OpenAI (legacy) completions, recorded."""
        return await forward("completion", rollout_id, attempt_id, request)

    return r


class Recorder:
    """Writes the model-call spans of concurrent requests to the store in one `add_spans` call.

    Each request waits until its spans are stored before the agent gets its answer (so a rollout that
    ends after its last answer has every call recorded), but requests that finish in the same turn of
    the event loop share one transaction: a group commit. Nothing is kept once written; what waits is
    bounded by the requests in flight. A batch the store refuses is retried call by call, so one bad
    call cannot lose the others; a call that still fails is logged, and its agent gets its answer.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[list[SpanCreate], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, spans: list[SpanCreate]) -> None:
        done = asyncio.get_running_loop().create_future()
        self._pending.append((spans, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="boltrl-gateway-recorder")
        await asyncio.shield(done)  # an agent that hangs up does not cancel the write

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self.store.add_spans([s for spans, _ in batch for s in spans])
                except Exception:
                    if len(batch) == 1:
                        _log_lost(batch[0][0])
                    else:
                        for spans, _ in batch:
                            try:
                                await self.store.add_spans(spans)
                            except Exception:
                                _log_lost(spans)
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._flusher = None


def _log_lost(spans: list[SpanCreate]) -> None:
    log.exception("could not record %d model call(s) of attempt %s", len(spans), spans[0].attempt_id)


def _internal_error(e: Exception) -> BackendError:
    log.exception("the inference backend failed")
    return BackendError(500, f"the inference backend failed: {type(e).__name__}: {e}", "server_error")


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(pydantic_core.to_json(content), status_code=status_code, media_type="application/json")


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = pydantic_core.from_json(await request.body())
    except ValueError as e:
        raise InvalidInputError(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidInputError("request body must be a JSON object")
    return body


def _spans(
    rollout_id: str, attempt_id: str, calls: list[ModelCall], started: float, status: Literal["ok", "error"]
) -> list[SpanCreate]:
    ended = time.time()
    # model_construct: the ids were checked against the store already and every value is plain JSON.
    # Every field is given: a default_factory left to model_construct costs an inspect.signature.
    trace_id = uuid.uuid4().hex
    return [
        SpanCreate.model_construct(
            rollout_id=rollout_id,
            attempt_id=attempt_id,
            trace_id=trace_id,
            span_id=uuid.uuid4().hex[:16],
            parent_id=None,
            name=MODEL_CALL_SPAN,
            start=started,
            end=ended,
            attributes=dict(call),
            events=[],
            status=status,
        )
        for call in calls
    ]


def _chat_chunks(response: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    base: dict[str, Any] = {k: response[k] for k in ("id", "created", "model") if k in response}
    base["object"] = "chat.completion.chunk"
    if "system_fingerprint" in response:
        base["system_fingerprint"] = response["system_fingerprint"]
    chunks: list[dict[str, Any]] = []
    for choice in response.get("choices", []):
        i, message = choice["index"], choice.get("message", {})
        chunks.append({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}}]})
        if message.get("content"):
            delta = {"content": message["content"]}
            one = {"index": i, "delta": delta, "logprobs": choice.get("logprobs"), "finish_reason": None}
            chunks.append({**base, "choices": [one]})
        for j, call in enumerate(message.get("tool_calls") or []):
            delta = {"tool_calls": [{"index": j, **call}]}
            chunks.append({**base, "choices": [{"index": i, "delta": delta, "finish_reason": None}]})
        end = {"index": i, "delta": {}, "finish_reason": choice.get("finish_reason")}
        chunks.append({**base, "choices": [end]})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": response.get("usage")})
    return chunks


def _text_chunks(response: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    head = {k: v for k, v in response.items() if k != "usage"}
    chunks = [{**head, "choices": [choice]} for choice in response.get("choices", [])]
    if include_usage:
        chunks.append({**head, "choices": [], "usage": response.get("usage")})
    return chunks


async def _sse(chunks: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield b"data: " + pydantic_core.to_json(chunk) + b"\n\n"
    yield b"data: [DONE]\n\n"
