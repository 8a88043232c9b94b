"""The vLLM and OpenAI backends through the real gateway, against fake upstreams on loopback.

The fake vLLM answers the way vLLM >= 0.10.2 does when asked for `return_token_ids` and `logprobs`:
`prompt_token_ids` (top level for chat, per choice for completions), `choices[i].token_ids` and
`choices[i].logprobs.content[j].logprob` (chat) or `logprobs.token_logprobs` (completions).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from boltrl.inference.http1 import Http1Client
from boltrl.inference.remote import OpenAIBackend, VLLMBackend
from boltrl.testing import LiveServer, free_port, live_server
from boltrl.types import MODEL_CALL_SPAN

PROMPT_IDS = [101, 102, 103, 104]
HELLO = [{"role": "user", "content": "hello"}]
ERRORS = {
    "fail-400": (400, "BadRequestError", "temperature is out of range"),
    "fail-429": (429, "RateLimitError", "slow down"),
    "fail-500": (500, "InternalServerError", "the GPU caught fire"),
}


def choice_tokens(i: int) -> tuple[list[int], list[float]]:
    return [200 + i, 201 + i, 202 + i], [-0.25 - i, -0.5, -1.0]


def fake_vllm(received: list[dict[str, Any]], token_ids: bool = True) -> FastAPI:
    """vLLM's OpenAI server as far as the backends use it (token_ids=False: a plain OpenAI server)."""
    app = FastAPI()

    def error(text: str) -> Response | None:
        if text in ERRORS:
            status, kind, message = ERRORS[text]
            body = {"error": {"message": message, "type": kind, "param": "temperature", "code": status}}
            return JSONResponse(body, status_code=status)
        if text == "fail-html":
            return Response("<html>bad gateway</html>", status_code=503, media_type="text/html")
        return None

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        received.append(body)
        text = body["messages"][-1]["content"]
        if (failed := error(text)) is not None:
            return failed
        if text == "slow":
            await asyncio.sleep(1)
        choices = []
        for i in range(body.get("n") or 1):
            ids, lps = choice_tokens(i)
            choice: dict[str, Any] = {
                "index": i,
                "message": {"role": "assistant", "content": f"answer {i}"},
                "logprobs": None,
                "finish_reason": "stop",
            }
            if token_ids:
                content = [
                    {"token": f"t{t}", "logprob": lp, "bytes": [], "top_logprobs": []}
                    for t, lp in zip(ids, lps, strict=True)
                ]
                choice.update(token_ids=ids, logprobs={"content": content} if body.get("logprobs") else None)
            choices.append(choice)
        out: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": choices,
            "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
        }
        if token_ids:
            out["prompt_token_ids"] = PROMPT_IDS
        return JSONResponse(out)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await request.json()
        received.append(body)
        choices = []
        for i in range(body.get("n") or 1):
            ids, lps = choice_tokens(i)
            lp = {
                "tokens": [f"t{t}" for t in ids],
                "token_logprobs": lps,
                "top_logprobs": None,
                "text_offset": [0, 2, 4],
            }
            choices.append(
                {
                    "index": i,
                    "text": f"text {i}",
                    "logprobs": lp if body.get("logprobs") is not None else None,
                    "finish_reason": "length",
                    "prompt_token_ids": PROMPT_IDS,
                    "token_ids": ids,
                }
            )
        return JSONResponse(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": 1,
                "model": body["model"],
                "choices": choices,
            }
        )

    @app.post("/v1/chunked")
    async def chunked() -> Response:
        async def parts() -> Any:
            for part in (b'{"a": ', b"[1, 2, 3]", b"}"):
                yield part

        return StreamingResponse(parts(), media_type="application/json")

    @app.post("/v1/close")
    async def close() -> Response:
        return JSONResponse({"closed": True}, headers={"connection": "close"})

    return app


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve `app` on a free loopback port in a thread; yields its base URL (ending in /v1)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def received() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def vllm_upstream(received: list[dict[str, Any]]) -> Iterator[str]:
    with serve(fake_vllm(received)) as url:
        yield url


@pytest.fixture
def plain_upstream(received: list[dict[str, Any]]) -> Iterator[str]:
    with serve(fake_vllm(received, token_ids=False)) as url:
        yield url


@pytest.fixture(params=["http1", "httpx"])
def transport(request: pytest.FixtureRequest) -> str:
    """Each backend test runs over the lean HTTP/1.1 client and over httpx (used for https, proxies)."""
    return str(request.param)


def backend_factory(cls: type[OpenAIBackend], url: str, transport: str, **kwargs: Any) -> Any:
    def make() -> OpenAIBackend:
        backend = cls(url, model="served-model", **kwargs)
        if transport == "httpx":
            backend._fast = None
        else:
            assert isinstance(backend._fast, Http1Client)
        return backend

    return make


@contextlib.contextmanager
def gateway(factory: Any) -> Iterator[tuple[LiveServer, httpx.Client, dict[str, Any], openai.OpenAI]]:
    """A live server on `factory`'s backend and one claimed attempt: (server, http, claim, openai client)."""
    with live_server(backend=factory) as s, httpx.Client(base_url=s.url, timeout=30) as http:
        http.post("/v1/rollouts", json={"rollouts": [{"input": "x"}]}).raise_for_status()
        claim = http.post("/v1/rollouts/claim", json={"worker_id": "w"}).json()
        llm = claim["resources"]["resources"]["llm"]
        client = openai.OpenAI(base_url=llm["base_url"], api_key=llm["api_key"], max_retries=0)
        yield s, http, claim, client


def calls(http: httpx.Client, claim: dict[str, Any]) -> list[dict[str, Any]]:
    spans = http.get(f"/v1/rollouts/{claim['rollout']['id']}/spans").json()["spans"]
    return [s for s in spans if s["name"] == MODEL_CALL_SPAN]


def test_vllm_calls_are_trainable_with_the_upstreams_ids_and_logprobs(
    vllm_upstream: str, received: list[dict[str, Any]], transport: str
) -> None:
    with gateway(backend_factory(VLLMBackend, vllm_upstream, transport)) as (_, http, claim, client):
        r = client.chat.completions.create(model="anything", messages=HELLO, n=2, temperature=0.7)
        sent = received[-1]
        assert sent["return_token_ids"] is True and sent["logprobs"] is True
        assert sent["model"] == "served-model" and "stream" not in sent
        # the agent did not ask for logprobs: it gets none, nor vLLM's extra fields
        assert [c.logprobs for c in r.choices] == [None, None]
        raw = r.model_dump()
        assert "prompt_token_ids" not in raw and all("token_ids" not in c for c in raw["choices"])
        recorded = calls(http, claim)
        assert len(recorded) == 2
        for i, span in enumerate(recorded):
            call = span["attributes"]
            ids, lps = choice_tokens(i)
            assert call["prompt_ids"] == PROMPT_IDS
            assert call["response_ids"] == ids and call["logprobs"] == lps
            assert call["trainable"] is True and call["finish_reason"] == "stop"
            assert call["response"]["choices"][0]["message"]["content"] == f"answer {i}"

        asked = client.chat.completions.create(model="m", messages=HELLO, logprobs=True)
        assert asked.choices[0].logprobs is not None
        assert [t.logprob for t in asked.choices[0].logprobs.content] == choice_tokens(0)[1]


def test_vllm_completions_read_the_per_choice_prompt_ids(
    vllm_upstream: str, received: list[dict[str, Any]]
) -> None:
    with gateway(backend_factory(VLLMBackend, vllm_upstream, "http1")) as (_, http, claim, client):
        r = client.completions.create(model="m", prompt="Once", max_tokens=3)
        assert received[-1]["logprobs"] == 1 and received[-1]["return_token_ids"] is True
        assert r.choices[0].text == "text 0" and r.choices[0].logprobs is None
        (span,) = calls(http, claim)
        call = span["attributes"]
        assert call["prompt_ids"] == PROMPT_IDS
        assert (call["response_ids"], call["logprobs"]) == choice_tokens(0)
        assert call["finish_reason"] == "length" and call["trainable"] is True


def test_vllm_streaming_is_recorded_in_full(vllm_upstream: str) -> None:
    with gateway(backend_factory(VLLMBackend, vllm_upstream, "http1")) as (_, http, claim, client):
        chunks = list(client.chat.completions.create(model="m", messages=HELLO, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "answer 0"
        (span,) = calls(http, claim)
        assert span["attributes"]["response_ids"] == choice_tokens(0)[0]


def test_openai_backend_records_untrainable_calls(
    plain_upstream: str, received: list[dict[str, Any]], transport: str
) -> None:
    with gateway(backend_factory(OpenAIBackend, plain_upstream, transport)) as (_, http, claim, client):
        r = client.chat.completions.create(model="whatever", messages=HELLO, temperature=0.2)
        assert r.choices[0].message.content == "answer 0"
        assert "return_token_ids" not in received[-1] and received[-1]["model"] == "served-model"
        (span,) = calls(http, claim)
        call = span["attributes"]
        assert call["trainable"] is False
        assert call["response_ids"] == [] and call["prompt_ids"] == [] and call["logprobs"] == []
        assert call["response"]["id"] == r.id and call["request"]["messages"] == HELLO


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("fail-400", openai.BadRequestError),
        ("fail-429", openai.RateLimitError),
        ("fail-500", openai.InternalServerError),
    ],
)
def test_upstream_errors_pass_through_with_status_and_message(
    plain_upstream: str, transport: str, text: str, error: type[openai.APIStatusError]
) -> None:
    status, kind, message = ERRORS[text]
    with gateway(backend_factory(OpenAIBackend, plain_upstream, transport)) as (_, http, claim, client):
        with pytest.raises(error, match=message) as info:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
        assert info.value.status_code == status
        assert isinstance(info.value.body, dict) and info.value.body["type"] == kind
        (span,) = calls(http, claim)
        assert span["status"] == "error" and message in span["attributes"]["error"]


def test_an_upstream_error_that_is_not_json_keeps_its_status(plain_upstream: str) -> None:
    with gateway(backend_factory(OpenAIBackend, plain_upstream, "http1")) as (_, _http, _claim, client):
        with pytest.raises(openai.APIStatusError, match="bad gateway") as info:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "fail-html"}])
        assert info.value.status_code == 503


def test_an_unreachable_upstream_is_a_502_and_recorded(transport: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with gateway(backend_factory(OpenAIBackend, dead, transport)) as (_, http, claim, client):
        with pytest.raises(openai.APIStatusError, match="unreachable") as info:
            client.chat.completions.create(model="m", messages=HELLO)
        assert info.value.status_code == 502
        (span,) = calls(http, claim)
        assert span["status"] == "error" and "unreachable" in span["attributes"]["error"]
        assert span["attributes"]["trainable"] is False


def test_a_slow_upstream_is_a_504(plain_upstream: str, transport: str) -> None:
    factory = backend_factory(OpenAIBackend, plain_upstream, transport, timeout_s=0.3)
    with gateway(factory) as (_, _http, _claim, client):
        with pytest.raises(openai.APIStatusError, match="timed out") as info:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "slow"}])
        assert info.value.status_code == 504


def test_http1_client_reads_chunked_bodies_and_honours_connection_close(plain_upstream: str) -> None:
    async def main() -> None:
        client = Http1Client(plain_upstream, {}, timeout_s=5, max_connections=2)
        assert await client.post("/chunked", b"{}") == (200, b'{"a": [1, 2, 3]}')
        assert len(client._idle) == 1  # kept alive
        status, body = await client.post("/close", b"{}")
        assert (status, body) == (200, b'{"closed":true}')
        assert client._idle == [] or not client._idle[0].open
        replies = await asyncio.gather(*(client.post("/chunked", b"{}") for _ in range(6)))
        assert {r[0] for r in replies} == {200} and len(client._idle) <= 2
        await client.aclose()

    asyncio.run(main())


def test_http1_client_resends_once_when_an_idle_connection_was_closed(plain_upstream: str) -> None:
    async def main() -> None:
        client = Http1Client(plain_upstream, {}, timeout_s=5, max_connections=2)
        await client.post("/chunked", b"{}")
        (idle,) = client._idle
        assert idle.transport is not None
        idle.transport.abort()  # as if the upstream dropped it while idle, unnoticed yet
        idle.open = True
        assert (await client.post("/chunked", b"{}"))[0] == 200
        await client.aclose()

    asyncio.run(main())
