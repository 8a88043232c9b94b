"""OTLP/HTTP ingest: protobuf and JSON requests, partial success, and a real OpenTelemetry SDK exporter."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as OtlpResource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status as TraceStatus
from opentelemetry.trace import StatusCode

from boltrl.config import ServerConfig
from boltrl.testing import LiveServer, live_server
from tests.server.helpers import claim, enqueue, error_of

PB = {"content-type": "application/x-protobuf"}
TRACE = bytes(range(16))
T0 = 1_700_000_000_000_000_000  # ns


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[kv(k, v) for k, v in value.items()]))
    return AnyValue(string_value=value)


def export_request(rollout_id: str | None, spans: list[Span]) -> ExportTraceServiceRequest:
    resource = OtlpResource(attributes=[kv("service.name", "agent")])
    if rollout_id is not None:
        resource.attributes.append(kv("boltrl.rollout_id", rollout_id))
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )


def otlp_span(name: str, n: int, attrs: dict[str, Any] | None = None) -> Span:
    return Span(
        trace_id=TRACE,
        span_id=bytes([n] * 8),
        name=name,
        start_time_unix_nano=T0 + n * 1_000_000,
        end_time_unix_nano=T0 + n * 1_000_000 + 500_000,
        attributes=[kv(k, v) for k, v in (attrs or {}).items()],
    )


def test_protobuf_export(http: httpx.Client) -> None:
    enqueue(http, {"id": "r1", "input": 1}, {"id": "r2", "input": 2})
    attempt = claim(http)["attempt"]
    root = otlp_span(
        "boltrl.model_call", 1, {"n": 3, "x": 0.5, "ok": True, "l": ["a", 1], "d": {"k": "v"}, "b": b"\x01"}
    )
    root.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="bad"))
    root.events.add(name="retry", time_unix_nano=T0 + 2_000_000, attributes=[kv("try", 2)])
    child = otlp_span("tool", 2, {"boltrl.attempt_id": attempt["id"]})
    child.parent_span_id = root.span_id
    child.status.code = Status.STATUS_CODE_OK
    other = otlp_span("elsewhere", 3, {"boltrl.rollout_id": "r2"})  # the span attribute wins
    body = export_request("r1", [root, child, other]).SerializeToString()

    response = http.post("/v1/traces", content=body, headers=PB)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-protobuf"
    reply = ExportTraceServiceResponse.FromString(response.content)
    assert not reply.HasField("partial_success")

    spans = http.get("/v1/rollouts/r1/spans").json()["spans"]
    assert [(s["seq"], s["name"]) for s in spans] == [(0, "boltrl.model_call"), (1, "tool")]
    a, b = spans
    assert a["trace_id"] == TRACE.hex() and a["span_id"] == "01" * 8 and a["parent_id"] is None
    assert a["start"] == (T0 + 1_000_000) / 1e9 and a["end"] == (T0 + 1_500_000) / 1e9
    assert a["attributes"] == {
        "n": 3,
        "x": 0.5,
        "ok": True,
        "l": ["a", 1],
        "d": {"k": "v"},
        "b": "AQ==",
        "otel.status_description": "bad",
    }
    assert a["status"] == "error" and a["attempt_id"] is None
    assert a["events"] == [{"name": "retry", "time": (T0 + 2_000_000) / 1e9, "attributes": {"try": 2}}]
    assert b["parent_id"] == "01" * 8 and b["status"] == "ok" and b["attempt_id"] == attempt["id"]
    assert [s["name"] for s in http.get("/v1/rollouts/r2/spans").json()["spans"]] == ["elsewhere"]


def test_json_export_with_hex_ids(http: httpx.Client) -> None:
    enqueue(http, {"id": "r1", "input": 1})
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "boltrl.rollout_id", "value": {"stringValue": "r1"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "my.agent"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "eee19b7ec3c1b173",
                                "name": "step",
                                "kind": 1,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "attributes": [{"key": "n", "value": {"intValue": "7"}}],
                                "status": {"code": 1},
                                "someFutureField": True,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = http.post("/v1/traces", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json" and response.json() == {}
    (span,) = http.get("/v1/rollouts/r1/spans").json()["spans"]
    assert span["trace_id"] == "5b8efff798038103d269b633813fc60c" and span["span_id"] == "eee19b7ec3c1b174"
    assert span["parent_id"] == "eee19b7ec3c1b173"
    assert (span["start"], span["end"]) == (1544712660.0, 1544712661.0)
    assert span["attributes"] == {"n": 7} and span["status"] == "ok"

    # protobuf's own JSON mapping (base64 ids) is accepted too
    request = export_request("r1", [otlp_span("b64", 4)])
    response = http.post("/v1/traces", json=json_format.MessageToDict(request))
    assert response.status_code == 200
    assert http.get("/v1/rollouts/r1/spans").json()["spans"][-1]["span_id"] == "04" * 8


def test_partial_success_counts_spans_it_cannot_store(http: httpx.Client) -> None:
    enqueue(http, {"id": "r1", "input": 1})
    request = export_request(
        None, [otlp_span("kept", 1, {"boltrl.rollout_id": "r1"}), otlp_span("orphan", 2)]
    )
    request.resource_spans.append(export_request("nope", [otlp_span("unknown", 3)]).resource_spans[0])
    bad_attempt = otlp_span("bad", 4, {"boltrl.rollout_id": "r1", "boltrl.attempt_id": "at-x"})
    nameless = otlp_span("", 5, {"boltrl.rollout_id": "r1"})
    request.resource_spans.append(export_request(None, [bad_attempt, nameless]).resource_spans[0])

    reply = ExportTraceServiceResponse.FromString(
        http.post("/v1/traces", content=request.SerializeToString(), headers=PB).content
    )
    assert reply.partial_success.rejected_spans == 4
    message = reply.partial_success.error_message
    assert "boltrl.rollout_id" in message and "'nope' not found" in message and "'at-x' not found" in message
    assert "name" in message
    assert [s["name"] for s in http.get("/v1/rollouts/r1/spans").json()["spans"]] == ["kept"]

    as_json = http.post(
        "/v1/traces", json=json_format.MessageToDict(export_request(None, [otlp_span("o", 1)]))
    )
    assert as_json.json()["partialSuccess"]["rejectedSpans"] == "1"


def test_gzip_and_bad_requests(http: httpx.Client) -> None:
    enqueue(http, {"id": "r1", "input": 1})
    body = gzip.compress(export_request("r1", [otlp_span("zipped", 1)]).SerializeToString())
    response = http.post("/v1/traces", content=body, headers={**PB, "content-encoding": "gzip"})
    assert response.status_code == 200
    assert [s["name"] for s in http.get("/v1/rollouts/r1/spans").json()["spans"]] == ["zipped"]

    cases = [
        ({"content-type": "text/plain"}, b"hi", 415, "Content-Type"),
        (PB, b"\xff\xff\xff", 400, "not an OTLP ExportTraceServiceRequest"),
        ({"content-type": "application/json"}, b"{nope", 400, "not valid JSON"),
        ({"content-type": "application/json"}, b'{"resourceSpans": 3}', 400, "ExportTraceServiceRequest"),
        ({**PB, "content-encoding": "gzip"}, b"not gzip", 400, "gzip"),
        ({**PB, "content-encoding": "br"}, b"x", 400, "Content-Encoding"),
    ]
    for headers, content, status, text in cases:
        response = http.post("/v1/traces", content=content, headers=headers)
        assert response.status_code == status, (headers, response.text)
        assert text in error_of(response)["message"]
    assert len(http.get("/v1/rollouts/r1/spans").json()["spans"]) == 1


def test_gzip_bomb_is_413() -> None:
    with (
        live_server(config=ServerConfig(max_body_bytes=10_000)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        enqueue(c, {"id": "r1", "input": 1})
        body = gzip.compress(export_request("r1", [otlp_span("x" * 1000, 1)] * 20).SerializeToString())
        assert len(body) < 10_000
        response = c.post("/v1/traces", content=body, headers={**PB, "content-encoding": "gzip"})
        assert response.status_code == 413 and error_of(response)["type"] == "PayloadTooLargeError"


def _sdk_export(url: str, rollout_id: str, headers: dict[str, str] | None = None, gz: bool = False) -> None:
    exporter = OTLPSpanExporter(
        endpoint=f"{url}/v1/traces", headers=headers, compression=Compression.Gzip if gz else None
    )
    provider = TracerProvider(resource=Resource.create({"boltrl.rollout_id": rollout_id}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("agent") as root:
        for i in range(3):
            with tracer.start_as_current_span(f"step-{i}") as step:
                step.set_attribute("i", i)
        root.set_status(TraceStatus(StatusCode.OK))
    provider.shutdown()


def test_opentelemetry_sdk_exporter(server: LiveServer, http: httpx.Client) -> None:
    enqueue(http, {"id": "r1", "input": 1})
    _sdk_export(server.url, "r1")
    _sdk_export(server.url, "r1", gz=True)
    spans = http.get("/v1/rollouts/r1/spans").json()["spans"]
    names = ["step-0", "step-1", "step-2", "agent"]  # spans end, and export, innermost first
    assert [s["name"] for s in spans] == names * 2 and [s["seq"] for s in spans] == list(range(8))
    agent = spans[3]
    assert all(s["parent_id"] == agent["span_id"] for s in spans[:3]) and agent["status"] == "ok"
    assert spans[1]["attributes"] == {"i": 1}


def test_opentelemetry_sdk_exporter_with_token() -> None:
    with live_server(config=ServerConfig(token="s3cret")) as server:
        headers = {"authorization": "Bearer s3cret"}
        with httpx.Client(base_url=server.url, headers=headers) as http:
            enqueue(http, {"id": "r1", "input": 1})
            _sdk_export(server.url, "r1", headers=headers)
            assert len(http.get("/v1/rollouts/r1/spans").json()["spans"]) == 4
            _sdk_export(server.url, "r1")  # without the token: rejected, and the SDK only logs it
            assert len(http.get("/v1/rollouts/r1/spans").json()["spans"]) == 4


def test_json_body_must_be_an_object(http: httpx.Client) -> None:
    response = http.post(
        "/v1/traces", content=json.dumps([1, 2]), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
