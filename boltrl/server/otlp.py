"""OTLP/HTTP trace ingest: decode an `ExportTraceServiceRequest` (protobuf or JSON) into `SpanCreate`s.

Any OpenTelemetry SDK can export to boltrl by pointing its OTLP/HTTP exporter at `/v1/traces`. A span
belongs to the rollout named by its `boltrl.rollout_id` attribute, else by its resource's (same for
`boltrl.attempt_id`). Spans that name no rollout, or fail validation, are rejected one by one and
reported in the response's `partial_success`, as the OTLP specification asks of a receiver.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from pydantic import ValidationError

from boltrl.errors import InvalidInputError, PayloadTooLargeError
from boltrl.types import ATTEMPT_ID_ATTR, ROLLOUT_ID_ATTR, SpanCreate, SpanEvent

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_STATUS = {Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}


@dataclass
class Decoded:
    """The spans of one export request that can be stored, and why the others cannot."""

    spans: list[SpanCreate] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] += n

    def error_message(self) -> str:
        return "; ".join(f"{n} span(s) rejected: {reason}" for reason, n in self.rejected.items())


def media_type(content_type: str | None) -> str:
    """The OTLP encoding a Content-Type header names (`PROTOBUF` or `JSON`), or "" for neither."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if kind == JSON or kind.endswith("+json"):
        return JSON
    return ""


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo `Content-Encoding: gzip` (the one compression OTLP exporters use), within the size limit."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise InvalidInputError(f"Content-Encoding {encoding!r} is not supported: send gzip or none")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as e:
        raise InvalidInputError(f"request body is not valid gzip: {e}") from None
    if len(out) > max_bytes:
        raise PayloadTooLargeError(
            f"decompressed request body is over the server's limit of {max_bytes} bytes"
        )
    if not inflater.eof:
        raise InvalidInputError("request body is truncated gzip")
    return out


def parse_request(body: bytes, kind: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    if kind == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as e:
            raise InvalidInputError(f"request body is not an OTLP ExportTraceServiceRequest: {e}") from None
        return request
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"request body is not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidInputError("request body is nested too deeply to be an OTLP export") from None
    if not isinstance(data, dict):
        raise InvalidInputError(
            "request body must be a JSON object (an OTLP ExportTraceServiceRequest), "
            f"got {type(data).__name__}"
        )
    _hex_ids_to_base64(data)
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise InvalidInputError(f"request body is not an OTLP ExportTraceServiceRequest: {e}") from None
    except RecursionError:
        raise InvalidInputError("request body is nested too deeply to be an OTLP export") from None
    return request


def _hex_ids_to_base64(data: Any) -> None:
    """OTLP JSON writes trace and span ids as hex; protobuf's JSON mapping of `bytes` wants base64.

    A base64 id (16 or 8 bytes) always ends in '=' padding, so it never passes for hex.
    """
    if not isinstance(data, dict):
        return
    for rs in _dicts(data.get("resourceSpans", data.get("resource_spans"))):
        for ss in _dicts(rs.get("scopeSpans", rs.get("scope_spans"))):
            for span in _dicts(ss.get("spans")):
                _fix(span)
                for link in _dicts(span.get("links")):
                    _fix(link)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _fix(obj: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and _HEX.fullmatch(value):
            obj[key] = base64.b64encode(binascii.unhexlify(value)).decode()


def encode_response(decoded: Decoded, kind: str) -> bytes:
    response = ExportTraceServiceResponse()
    n = sum(decoded.rejected.values())
    if n:
        response.partial_success.rejected_spans = n
        response.partial_success.error_message = decoded.error_message()
    if kind == PROTOBUF:
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()


def decode_spans(request: ExportTraceServiceRequest) -> Decoded:
    """Convert every span of the request, in request order, or record why it cannot be stored."""
    out = Decoded()
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                try:
                    converted = to_span_create(span, resource)
                except InvalidInputError as e:
                    out.reject(str(e))
                    continue
                out.spans.append(converted)
    return out


def to_span_create(span: OtlpSpan, resource: dict[str, Any]) -> SpanCreate:
    attrs = attributes(span.attributes)
    rollout_id = attrs.get(ROLLOUT_ID_ATTR) or resource.get(ROLLOUT_ID_ATTR)
    attempt_id = attrs.get(ATTEMPT_ID_ATTR) or resource.get(ATTEMPT_ID_ATTR)
    if not rollout_id:
        raise InvalidInputError(f"no {ROLLOUT_ID_ATTR!r} attribute on the span or its resource")
    if span.status.message:
        attrs.setdefault("otel.status_description", span.status.message)
    start = span.start_time_unix_nano / 1e9
    try:
        return SpanCreate(
            rollout_id=rollout_id,
            attempt_id=attempt_id or None,
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_id=span.parent_span_id.hex() or None,
            name=span.name,
            start=start,
            end=span.end_time_unix_nano / 1e9 if span.end_time_unix_nano else None,
            attributes=attrs,
            events=[
                SpanEvent(
                    name=e.name,
                    time=e.time_unix_nano / 1e9 if e.time_unix_nano else start,
                    attributes=attributes(e.attributes),
                )
                for e in span.events
            ],
            status=_STATUS.get(span.status.code, "unset"),
        )
    except ValidationError as e:
        problems = ", ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise InvalidInputError(f"invalid span ({problems})") from None


def attributes(kvs: Any) -> dict[str, Any]:
    """OTLP key-values as a flat dict of JSON values."""
    return {kv.key: value(kv.value) for kv in kvs}


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


__all__ = [
    "JSON",
    "PROTOBUF",
    "Decoded",
    "decode_spans",
    "decompress",
    "encode_response",
    "media_type",
    "parse_request",
]
