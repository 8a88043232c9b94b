"""The gateway through the real server on loopback, with the real tiny HF backend and the `openai` client."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from boltrl.store.memory import MemoryStore
from boltrl.testing import LiveServer, live_server
from boltrl.types import MODEL_CALL_SPAN, SpanCreate
from tests.server.helpers import claim, enqueue

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HELLO = [{"role": "user", "content": "What is 2 + 3?"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}


def _hf(tiny_dir: Path) -> Any:
    from boltrl.inference.hf import HFBackend

    return lambda: HFBackend(tiny_dir, served_name="tiny-random")


@pytest.fixture(scope="module")
def gw(tiny_dir: Path) -> Iterator[LiveServer]:
    with live_server(backend=_hf(tiny_dir)) as s:
        yield s


@pytest.fixture
def http(gw: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        yield client


def new_attempt(http: httpx.Client) -> dict[str, Any]:
    """Enqueue a rollout and claim it: the claim, whose llm points at this attempt's gateway."""
    enqueue(http)
    return claim(http)


def client_for(c: dict[str, Any]) -> openai.OpenAI:
    llm = c["resources"]["resources"]["llm"]
    return openai.OpenAI(base_url=llm["base_url"], api_key=llm["api_key"], max_retries=0)


def model_calls(http: httpx.Client, c: dict[str, Any]) -> list[dict[str, Any]]:
    r = http.get(f"/v1/rollouts/{c['rollout']['id']}/spans")
    assert r.status_code == 200, r.text
    spans = [s for s in r.json()["spans"] if s["name"] == MODEL_CALL_SPAN]
    assert all(s["attempt_id"] == c["attempt"]["id"] for s in spans)
    return spans


def decode(gw: LiveServer, ids: list[int]) -> str:
    return str(gw.backend.tokenizer.decode(ids, skip_special_tokens=True))


def test_claim_points_the_llm_at_the_attempts_gateway(gw: LiveServer, http: httpx.Client) -> None:
    c = new_attempt(http)
    llm = c["resources"]["resources"]["llm"]
    rid, aid = c["rollout"]["id"], c["attempt"]["id"]
    assert llm["base_url"] == f"{gw.url}/gw/{rid}/{aid}/v1"
    assert llm["model"] == "tiny-random" and llm["api_key"]


def test_chat_completion_is_recorded_with_token_ids_and_logprobs(gw: LiveServer, http: httpx.Client) -> None:
    c = new_attempt(http)
    r = client_for(c).chat.completions.create(
        model="tiny-random", messages=HELLO, max_tokens=12, temperature=0.8, seed=3
    )
    content = r.choices[0].message.content
    (span,) = model_calls(http, c)
    call = span["attributes"]
    assert span["status"] == "ok" and span["end"] >= span["start"]
    assert call["request"]["messages"] == HELLO and call["request"]["max_tokens"] == 12
    assert call["response"]["id"] == r.id
    assert call["response"]["choices"][0]["message"]["content"] == content
    tok = gw.backend.tokenizer
    prompt = tok.apply_chat_template(HELLO, tokenize=False, add_generation_prompt=True)
    assert call["prompt_ids"] == tok.encode(prompt, add_special_tokens=False)
    assert 0 < len(call["response_ids"]) <= 12 and len(call["response_ids"]) == r.usage.completion_tokens
    assert len(call["logprobs"]) == len(call["response_ids"])
    assert all(lp <= 0 for lp in call["logprobs"])
    assert decode(gw, call["response_ids"]) == content  # the ids ARE the answer, never re-tokenized
    assert call["model"] == "tiny-random" and call["weights_version"] == 0
    assert call["latency_ms"] > 0 and call["finish_reason"] == r.choices[0].finish_reason
    assert call["trainable"] is True and call["error"] is None and call["agent"] is None


def test_streaming_gives_the_recorded_text(gw: LiveServer, http: httpx.Client) -> None:
    c = new_attempt(http)
    stream = client_for(c).chat.completions.create(
        model="tiny-random",
        messages=HELLO,
        max_tokens=16,
        seed=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    usage = chunks[-1].usage
    (span,) = model_calls(http, c)
    call = span["attributes"]
    assert text == decode(gw, call["response_ids"]) and text
    assert finish == [call["finish_reason"]]
    assert usage is not None and usage.completion_tokens == len(call["response_ids"])
    assert call["request"]["stream"] is True


def test_a_request_with_tools_is_accepted_and_recorded(gw: LiveServer, http: httpx.Client) -> None:
    c = new_attempt(http)
    plain = client_for(c).chat.completions.create(model="m", messages=HELLO, max_tokens=4, temperature=0)
    r = client_for(c).chat.completions.create(
        model="m", messages=HELLO, tools=[TOOL], tool_choice="auto", max_tokens=4, temperature=0
    )
    assert r.choices[0].message.role == "assistant"
    without, with_tools = (s["attributes"] for s in model_calls(http, c))
    assert with_tools["request"]["tools"] == [TOOL]
    # the tool list is rendered into the prompt the model saw
    assert len(with_tools["prompt_ids"]) > len(without["prompt_ids"])
    assert "calculator" in decode(gw, with_tools["prompt_ids"])
    assert plain.choices[0].message.tool_calls is None


def test_n_2_records_two_calls(gw: LiveServer, http: httpx.Client) -> None:
    c = new_attempt(http)
    r = client_for(c).chat.completions.create(model="m", messages=HELLO, n=2, max_tokens=8, seed=11)
    assert len(r.choices) == 2
    spans = model_calls(http, c)
    assert len(spans) == 2
    for i, span in enumerate(spans):
        call = span["attributes"]
        assert [ch["index"] for ch in call["response"]["choices"]] == [i]
        assert decode(gw, call["response_ids"]) == r.choices[i].message.content
        assert len(call["logprobs"]) == len(call["response_ids"])
        assert call["prompt_ids"] == spans[0]["attributes"]["prompt_ids"]


def test_the_agent_name_comes_from_the_header_or_the_user_field(http: httpx.Client) -> None:
    c = new_attempt(http)
    client = client_for(c)
    client.chat.completions.create(
        model="m", messages=HELLO, max_tokens=2, extra_headers={"X-Boltrl-Agent": "planner"}
    )
    client.chat.completions.create(model="m", messages=HELLO, max_tokens=2, user="critic")
    client.chat.completions.create(
        model="m", messages=HELLO, max_tokens=2, user="critic", extra_headers={"X-Boltrl-Agent": "solver"}
    )
    assert [s["attributes"]["agent"] for s in model_calls(http, c)] == ["planner", "critic", "solver"]


def test_models_and_completions(gw: LiveServer, http: httpx.Client) -> None:
    c = new_attempt(http)
    client = client_for(c)
    assert [m.id for m in client.models.list()] == ["tiny-random"]
    r = client.completions.create(model="tiny-random", prompt="Once upon a time", max_tokens=6, seed=1)
    (span,) = model_calls(http, c)
    call = span["attributes"]
    assert call["prompt_ids"] == gw.backend.tokenizer.encode("Once upon a time")
    assert decode(gw, call["response_ids"]) == r.choices[0].text
    assert len(call["logprobs"]) == len(call["response_ids"]) == r.usage.completion_tokens
    assert call["response"]["object"] == "text_completion"


def test_completions_stream(gw: LiveServer, http: httpx.Client) -> None:
    c = new_attempt(http)
    stream = client_for(c).completions.create(
        model="m", prompt="Hello", max_tokens=6, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    (span,) = model_calls(http, c)
    assert text == decode(gw, span["attributes"]["response_ids"])
    assert chunks[-1].usage is not None


def test_unknown_foreign_and_finished_attempts(http: httpx.Client) -> None:
    a, b = new_attempt(http), new_attempt(http)
    base = a["resources"]["resources"]["llm"]["base_url"]
    unknown = openai.OpenAI(base_url=base.replace(a["attempt"]["id"], "at-nope"), api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="at-nope"):
        unknown.chat.completions.create(model="m", messages=HELLO, max_tokens=2)
    foreign_url = base.replace(a["attempt"]["id"], b["attempt"]["id"])
    foreign = openai.OpenAI(base_url=foreign_url, api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="is not an attempt of rollout"):
        foreign.chat.completions.create(model="m", messages=HELLO, max_tokens=2)
    with pytest.raises(openai.NotFoundError):
        foreign.models.list()
    finished = http.post(f"/v1/attempts/{a['attempt']['id']}/finish", json={"status": "succeeded"})
    assert finished.status_code == 200, finished.text
    with pytest.raises(openai.ConflictError, match="succeeded"):
        client_for(a).chat.completions.create(model="m", messages=HELLO, max_tokens=2)
    with pytest.raises(openai.ConflictError):
        client_for(a).completions.create(model="m", prompt="x", max_tokens=2)
    assert model_calls(http, a) == [] and model_calls(http, b) == []


def test_a_backend_error_reaches_the_client_and_is_recorded(http: httpx.Client) -> None:
    c = new_attempt(http)
    with pytest.raises(openai.BadRequestError, match="frequency_penalty") as info:
        client_for(c).chat.completions.create(model="m", messages=HELLO, max_tokens=2, frequency_penalty=0.5)
    assert info.value.status_code == 400
    assert isinstance(info.value.body, dict) and info.value.body.get("param") == "frequency_penalty"
    (span,) = model_calls(http, c)
    call = span["attributes"]
    assert span["status"] == "error" and "frequency_penalty" in call["error"]
    assert call["trainable"] is False and call["response_ids"] == []
    assert call["request"]["frequency_penalty"] == 0.5


def test_malformed_body_is_a_400(http: httpx.Client) -> None:
    c = new_attempt(http)
    url = c["resources"]["resources"]["llm"]["base_url"] + "/chat/completions"
    r = http.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = http.post(url, json=[1, 2])
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
    r = http.post(url, json={"model": "m", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_concurrent_calls_are_all_recorded_in_order_of_seq(gw: LiveServer, http: httpx.Client) -> None:
    c = new_attempt(http)
    llm = c["resources"]["resources"]["llm"]

    async def main() -> list[str]:
        client = openai.AsyncOpenAI(base_url=llm["base_url"], api_key=llm["api_key"], max_retries=0)
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(model="m", messages=HELLO, max_tokens=4, seed=i)
                for i in range(8)
            )
        )
        await client.close()
        return [r.id for r in replies]

    ids = asyncio.run(main())
    spans = model_calls(http, c)
    assert sorted(s["attributes"]["response"]["id"] for s in spans) == sorted(ids)
    assert [s["seq"] for s in spans] == list(range(8))


def test_recording_keeps_nothing_in_server_memory(tiny_dir: Path, tmp_path: Path) -> None:
    """200 calls each carrying 20 kB of request: with spans on disk, the server's Python heap stays flat."""
    from boltrl.config import ServerConfig
    from boltrl.store.sqlite import SQLiteStore

    # The test holds the attempt without heartbeats while 220 calls run under tracemalloc: on a loaded
    # machine that can take longer than the default 30 s, after which the attempt would be lost.
    config = ServerConfig(heartbeat_timeout_s=3600)
    with (
        live_server(lambda: SQLiteStore(str(tmp_path / "m.db")), config, backend=_hf(tiny_dir)) as s,
        httpx.Client(base_url=s.url, timeout=30) as http,
    ):
        c = new_attempt(http)
        client = client_for(c)
        blob = {"blob": "x" * 20_000}

        def calls(n: int) -> None:
            for _ in range(n):
                client.chat.completions.create(
                    model="m", messages=HELLO, max_tokens=1, extra_body={"metadata": blob}
                )

        calls(20)  # warm caches
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            calls(200)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(model_calls(http, c)) == 220
    assert grown < 1_000_000, f"the server kept {grown} bytes after 200 calls of 20 kB each"


def test_recorder_writes_a_refused_batch_call_by_call() -> None:
    from boltrl.server.gateway import Recorder
    from boltrl.types import RolloutCreate

    async def main() -> tuple[int, int]:
        store = MemoryStore()
        (ro,) = await store.enqueue([RolloutCreate(id="ro-1", input=None)])
        recorder = Recorder(store)
        good = [SpanCreate(rollout_id=ro.id, name=MODEL_CALL_SPAN) for _ in range(3)]
        bad = SpanCreate(rollout_id="ro-missing", name=MODEL_CALL_SPAN)
        await asyncio.gather(*(recorder.record([s]) for s in [*good[:2], bad, good[2]]))
        assert recorder._pending == [] and recorder._flusher is None
        return len(await store.get_spans(ro.id)), len(good)

    stored, expected = asyncio.run(main())
    assert stored == expected
