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

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from boltrl.config import ServerConfig
from boltrl.errors import ConflictError, InvalidInputError, NotFoundError
from boltrl.inference.base import BackendError, ChatResult, InferenceBackend
from boltrl.store.base import Store
from boltrl.types import MODEL_CALL_SPAN, Claim, LLMResource, ModelCall, Resources, SpanCreate

log = logging.getLogger("boltrl.gateway")

AGENT_HEADER = "x-boltrl-agent"


def gateway_url(config: ServerConfig, rollout_id: str, attempt_id: str) -> str:
    """The `base_url` an agent uses for one attempt."""
    return f"{config.url()}/gw/{rollout_id}/{attempt_id}/v1"


def with_gateway_llm(claim: Claim, config: ServerConfig, backend: InferenceBackend) -> Claim:
    """Point the claim's `llm` resource at this attempt's gateway URL, keeping the published model
    name and sampling parameters (or the backend's first model when none was published)."""
    resources = claim.resources.model_copy(deep=True) if claim.resources else None
    published = dict(resources.resources.get("llm") or {}) if resources else {}
    llm = LLMResource(
        base_url=gateway_url(config, claim.rollout.id, claim.attempt.id),
        model=published.get("model") or backend.models()[0],
        api_key=config.token or "boltrl",
        sampling=published.get("sampling") or {},
    )
    if resources is None:
        resources = Resources(version=0, resources={}, created_at=claim.attempt.started_at)
    resources.resources["llm"] = llm.model_dump()
    return claim.model_copy(update={"resources": resources})


def router(store: Store, backend: InferenceBackend) -> APIRouter:
    r = APIRouter(prefix="/gw/{rollout_id}/{attempt_id}/v1", tags=["gateway"])

    async def running_attempt(rollout_id: str, attempt_id: str) -> None:
        attempt = await store.get_attempt(attempt_id)
        if attempt.rollout_id != rollout_id:
            raise NotFoundError(f"attempt {attempt_id!r} is not an attempt of rollout {rollout_id!r}")
        if attempt.status != "running":
            raise ConflictError(
                f"attempt {attempt_id!r} is {attempt.status}: it can make no more model calls"
            )

    @r.get("/models")
    async def models(rollout_id: str, attempt_id: str) -> dict[str, Any]:
        """The models this gateway answers for (any name is accepted and served by the backend)."""
        await store.get_attempt(attempt_id)
        created = int(time.time())
        data = [
            {"id": m, "object": "model", "created": created, "owned_by": "boltrl"} for m in backend.models()
        ]
        return {"object": "list", "data": data}

    @r.post("/chat/completions")
    async def chat_completions(rollout_id: str, attempt_id: str, request: Request) -> Response:
        """OpenAI chat.completions, recorded. Streaming, tools, n, stop, seed and sampling supported."""
        return await _forward(store, backend, "chat", rollout_id, attempt_id, request, running_attempt)

    @r.post("/completions")
    async def completions(rollout_id: str, attempt_id: str, request: Request) -> Response:
        """OpenAI (legacy) completions, recorded."""
        return await _forward(store, backend, "completion", rollout_id, attempt_id, request, running_attempt)

    return r


async def _forward(
    store: Store,
    backend: InferenceBackend,
    kind: str,
    rollout_id: str,
    attempt_id: str,
    request: Request,
    check: Any,
) -> Response:
    await check(rollout_id, attempt_id)
    body = await _json_body(request)
    agent = request.headers.get(AGENT_HEADER) or body.get("user")
    started = time.time()
    try:
        result: ChatResult = await (backend.chat(body) if kind == "chat" else backend.complete(body))
    except BackendError as e:
        call = ModelCall(request=body, agent=agent, error=e.message, trainable=False)
        await _record(store, rollout_id, attempt_id, [call], started, "error")
        return JSONResponse(e.to_openai(), status_code=e.status)
    latency_ms = (time.time() - started) * 1000
    calls = result.model_calls(body, latency_ms=latency_ms, agent=agent)
    await _record(store, rollout_id, attempt_id, calls, started, "ok")
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = (
            _chat_chunks(result.response, include_usage) if kind == "chat" else _text_chunks(result.response)
        )
        return StreamingResponse(_sse(chunks), media_type="text/event-stream")
    return JSONResponse(result.response)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidInputError("request body must be a JSON object")
    return body


async def _record(
    store: Store, rollout_id: str, attempt_id: str, calls: list[ModelCall], started: float, status: str
) -> None:
    ended = time.time()
    spans = [
        SpanCreate(
            rollout_id=rollout_id,
            attempt_id=attempt_id,
            name=MODEL_CALL_SPAN,
            start=started,
            end=ended,
            attributes=call.model_dump(),
            status=status,
        )
        for call in calls
    ]
    try:
        await store.add_spans(spans)
    except Exception:  # the agent still gets its answer; the lost record is logged loudly
        log.exception("could not record %d model call(s) of attempt %s", len(spans), attempt_id)


def _chat_chunks(response: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    base: dict[str, Any] = {k: response[k] for k in ("id", "created", "model") if k in response}
    base["object"] = "chat.completion.chunk"
    chunks: list[dict[str, Any]] = []
    for choice in response.get("choices", []):
        i, message = choice["index"], choice.get("message", {})
        chunks.append({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}}]})
        if message.get("content"):
            delta = {"content": message["content"]}
            chunks.append({**base, "choices": [{"index": i, "delta": delta, "finish_reason": None}]})
        for j, call in enumerate(message.get("tool_calls") or []):
            delta = {"tool_calls": [{"index": j, **call}]}
            chunks.append({**base, "choices": [{"index": i, "delta": delta, "finish_reason": None}]})
        end = {"index": i, "delta": {}, "finish_reason": choice.get("finish_reason")}
        chunks.append({**base, "choices": [end]})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": response.get("usage")})
    return chunks


def _text_chunks(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**response, "choices": [choice]} for choice in response.get("choices", [])]


async def _sse(chunks: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"
