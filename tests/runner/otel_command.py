"""A command agent that knows nothing of boltrl: plain OpenTelemetry configured from the environment.

It continues the runner's trace from TRACEPARENT, exports over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT
(with OTEL_RESOURCE_ATTRIBUTES naming the rollout), then reports its reward with one HTTP call.
"""

from __future__ import annotations

import json
import os
import urllib.request

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

provider = TracerProvider(resource=Resource.create())  # reads OTEL_RESOURCE_ATTRIBUTES
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))  # reads OTEL_EXPORTER_OTLP_*
parent = TraceContextTextMapPropagator().extract({"traceparent": os.environ["TRACEPARENT"]})
task = json.loads(os.environ["BOLTRL_TASK"])
with provider.get_tracer("otel-command").start_as_current_span("solve", context=parent) as span:
    span.set_attribute("question", task["q"])
provider.shutdown()

body = {
    "spans": [
        {
            "rollout_id": os.environ["BOLTRL_ROLLOUT_ID"],
            "attempt_id": os.environ["BOLTRL_ATTEMPT_ID"],
            "name": "boltrl.reward",
            "attributes": {"boltrl.reward.value": 0.4, "boltrl.reward.name": "raw-http"},
        }
    ]
}
request = urllib.request.Request(
    os.environ["BOLTRL_SERVER"] + "/v1/spans",
    data=json.dumps(body).encode(),
    headers={"Content-Type": "application/json"},
)
urllib.request.urlopen(request, timeout=10).read()
