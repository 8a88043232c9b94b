"""A command agent run with a server token configured: it does its job with the attempt token it is
given, then tries what it must not (another rollout's spans and gateway, admin routes), and writes
down every status it got in `task["out"]`."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from boltrl.agent import report_reward_from_env

task = json.loads(os.environ["BOLTRL_TASK"])
server, token = os.environ["BOLTRL_SERVER"], os.environ["BOLTRL_TOKEN"]


def call(method: str, url: str, body: object, key: str) -> int:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
other = task["other"]
seen = {
    "gateway": call(
        "POST", os.environ["BOLTRL_BASE_URL"] + "/chat/completions", chat, os.environ["BOLTRL_API_KEY"]
    ),
    "other gateway": call("POST", f"{server}/gw/{other[0]}/{other[1]}/v1/chat/completions", chat, token),
    "other spans": call(
        "POST", f"{server}/v1/spans", {"spans": [{"rollout_id": other[0], "name": "x"}]}, token
    ),
    "enqueue": call("POST", f"{server}/v1/rollouts", {"rollouts": [{"input": 1}]}, token),
    "stats": call("GET", f"{server}/v1/stats", None, token),
    "finish other": call("POST", f"{server}/v1/attempts/{other[1]}/finish", {"status": "failed"}, token),
}
provider = TracerProvider(resource=Resource.create())  # OTEL_RESOURCE_ATTRIBUTES names the attempt
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))  # OTEL_EXPORTER_OTLP_HEADERS: its token
with provider.get_tracer("token-command").start_as_current_span("solve"):
    pass
provider.shutdown()
report_reward_from_env(0.7, name="cmd")
with open(task["out"], "w") as f:
    json.dump(
        {"seen": seen, "env": {k: v for k, v in os.environ.items() if k.startswith(("BOLTRL_", "OTEL_"))}}, f
    )
