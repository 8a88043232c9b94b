"""The inference backend failing: the agent sees an OpenAI-style error, the call is recorded as failed,
and the attempt ends as the agent decides (it may recover, or let the error fail the attempt)."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from boltrl.agent import LLM, emit_event, rollout
from boltrl.config import RunnerConfig, ServerConfig
from boltrl.inference.remote import OpenAIBackend
from boltrl.runner import Runner
from boltrl.store.client import StoreClient
from boltrl.testing import free_port, live_server
from boltrl.types import MODEL_CALL_SPAN, RolloutCreate
from tests.server.fakes import EchoBackend

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.anyio


@rollout
async def asks_once(task: dict[str, Any], llm: LLM) -> float:
    """One model call. On an API error: record what it saw, then recover (reward 0) or re-raise."""
    client = llm.openai_client(max_retries=0, timeout=10)
    try:
        await client.chat.completions.create(
            model=task.get("model", llm.model), messages=[{"role": "user", "content": "hi"}]
        )
    except openai.APIStatusError as e:
        error = e.body if isinstance(e.body, dict) else {}
        emit_event("model_error", status=e.status_code, type=str(error.get("type")), message=e.message)
        if task["on_error"] == "raise":
            raise
        return 0.0
    finally:
        await client.close()
    return 1.0


class _Upstream(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible upstream in trouble: 503 with an error body, or too slow to answer."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path.endswith("/slow/v1/chat/completions"):
            time.sleep(2)
        body = b'{"error": {"message": "overloaded", "type": "server_error"}}'
        with contextlib.suppress(OSError):  # the gateway may have given up on a slow answer
            self.send_response(503)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _backends(upstream: str) -> list[tuple[str, Any, str, int]]:
    # (case, backend factory, model, the status the agent sees)
    return [
        ("unreachable", lambda: OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1"), "m", 502),
        ("upstream 503", lambda: OpenAIBackend(f"{upstream}/v1"), "m", 503),
        ("upstream too slow", lambda: OpenAIBackend(f"{upstream}/slow/v1", timeout_s=0.3), "m", 504),
        ("backend bug", EchoBackend, "crash", 500),
        ("backend refuses", EchoBackend, "broken", 503),
    ]


@pytest.mark.parametrize("on_error", ["recover", "raise"])
async def test_a_failing_backend_reaches_the_agent_and_is_recorded(upstream: str, on_error: str) -> None:
    for case, backend, model, status in _backends(upstream):
        with live_server(config=ServerConfig(token="t0k"), backend=lambda b=backend: b()) as server:
            async with StoreClient(server.url, token="t0k") as store:
                task = {"model": model, "on_error": on_error}
                [r] = await store.enqueue([RolloutCreate(input=task, max_attempts=1)])
                config = RunnerConfig(server=server.url, token="t0k", poll_interval_s=0.02, worker_id="w")
                runner = Runner(store, asks_once, config=config)
                running = asyncio.create_task(runner.run())
                [done] = await store.wait([r.id], 30)
                runner.stop(grace_s=0)
                await running
                [attempt] = await store.list_attempts(r.id)
                spans = {s.name: s for s in await store.get_spans(r.id)}
                call, seen = spans[MODEL_CALL_SPAN], spans["model_error"].attributes
                assert call.status == "error" and call.attributes["error"], case
                assert call.attributes["response_ids"] == [] and call.attributes["trainable"] is False
                assert seen["status"] == status, (case, seen)
                assert seen["message"] and seen["type"] in ("api_error", "server_error"), (case, seen)
                if on_error == "recover":
                    assert (done.status, attempt.status) == ("succeeded", "succeeded"), case
                else:
                    assert (done.status, attempt.status) == ("failed", "failed"), case
                    assert f"Error code: {status}" in (attempt.error or ""), (case, attempt.error)
