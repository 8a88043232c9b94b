"""`POST /v1/traces`: OTLP/HTTP trace ingest, protobuf or JSON, answered in the request's encoding."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from boltrl.config import ServerConfig
from boltrl.errors import BoltrlError
from boltrl.server import auth, otlp
from boltrl.server.middleware import error_body
from boltrl.store.base import Store

# Decoding a big export is CPU work; off the event loop it does not stall the long polls.
_THREAD_ABOVE_BYTES = 256 * 1024

_BODY = {
    "content": {
        otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
        otlp.JSON: {"schema": {"type": "object"}},
    },
    "description": "An OTLP ExportTraceServiceRequest.",
}


def router(store: Store, config: ServerConfig) -> APIRouter:
    r = APIRouter(tags=["otlp"])

    @r.post("/v1/traces", openapi_extra={"requestBody": _BODY}, response_class=Response)
    async def export(request: Request) -> Response:
        """OTLP/HTTP export. Spans land in the rollout named by `boltrl.rollout_id` (span or resource
        attribute); spans naming none, or an unknown rollout or attempt, are counted in `partial_success`."""
        kind = otlp.media_type(request.headers.get("content-type"))
        if not kind:
            return Response(
                error_body(
                    "Content-Type must be application/x-protobuf or application/json", "InvalidInputError"
                ),
                status_code=415,
                media_type="application/json",
            )
        body = await request.body()
        encoding = request.headers.get("content-encoding")
        if len(body) > _THREAD_ABOVE_BYTES:
            decoded = await anyio.to_thread.run_sync(_decode, body, encoding, kind, config.max_body_bytes)
        else:
            decoded = _decode(body, encoding, kind, config.max_body_bytes)
        _drop_foreign(decoded, getattr(request.state, auth.STATE_KEY, None))
        await _drop_unknown(store, decoded)
        if decoded.spans:
            await store.add_spans(decoded.spans)
        return Response(otlp.encode_response(decoded, kind), media_type=kind)

    return r


def _decode(body: bytes, encoding: str | None, kind: str, max_bytes: int) -> otlp.Decoded:
    return otlp.decode_spans(otlp.parse_request(otlp.decompress(body, encoding, max_bytes), kind))


def _drop_foreign(decoded: otlp.Decoded, scope: tuple[str, str] | None) -> None:
    """Under an attempt's token, reject (in `partial_success`) spans of any other rollout or attempt."""
    if scope is None:
        return
    kept = [s for s in decoded.spans if (s.rollout_id, s.attempt_id) == scope]
    if len(kept) < len(decoded.spans):
        decoded.reject(auth.forbidden_message(scope), len(decoded.spans) - len(kept))
    decoded.spans = kept


async def _drop_unknown(store: Store, decoded: otlp.Decoded) -> None:
    """Reject, span by span, those whose rollout or attempt the store does not know, so one stray span
    does not fail a whole export (an OTLP exporter drops a batch that gets a 4xx)."""
    verdicts: dict[tuple[str, Any], str | None] = {}
    kept = []
    for span in decoded.spans:
        key = (span.rollout_id, span.attempt_id)
        if key not in verdicts:
            verdicts[key] = await _problem(store, *key)
        problem = verdicts[key]
        if problem is None:
            kept.append(span)
        else:
            decoded.reject(problem)
    decoded.spans = kept


async def _problem(store: Store, rollout_id: str, attempt_id: str | None) -> str | None:
    try:
        await store.get_rollout(rollout_id)
        if attempt_id is not None:
            attempt = await store.get_attempt(attempt_id)
            if attempt.rollout_id != rollout_id:
                return f"attempt {attempt_id!r} belongs to rollout {attempt.rollout_id!r}, not {rollout_id!r}"
    except BoltrlError as e:
        return str(e)
    return None
