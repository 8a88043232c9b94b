"""Per-attempt tokens: an agent holds a token for its own attempt only, never the server's token."""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from boltrl.config import ServerConfig
from boltrl.server.auth import attempt_token
from boltrl.testing import LiveServer, live_server
from tests.server.fakes import EchoBackend
from tests.server.helpers import claim, enqueue, error_of

TOKEN = "server-secret-7f3a"
HELLO = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gw() -> Iterator[LiveServer]:
    with live_server(config=ServerConfig(token=TOKEN), backend=EchoBackend()) as server:
        yield server


@pytest.fixture
def admin(gw: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=10, headers={"authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def _two_attempts(admin: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    enqueue(admin, {"input": "a"}, {"input": "b"})
    return claim(admin, "w"), claim(admin, "w")


def _as(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=10, headers={"authorization": f"Bearer {token}"})


def _ids(c: dict[str, Any]) -> tuple[str, str]:
    return c["rollout"]["id"], c["attempt"]["id"]


def _span(rollout_id: str, attempt_id: str | None, name: str = "s") -> dict[str, Any]:
    return {"rollout_id": rollout_id, "attempt_id": attempt_id, "name": name}


def _otlp(rollout_id: str, attempt_id: str) -> dict[str, Any]:
    attrs = [
        {"key": "boltrl.rollout_id", "value": {"stringValue": rollout_id}},
        {"key": "boltrl.attempt_id", "value": {"stringValue": attempt_id}},
    ]
    span = {"traceId": "5b" * 16, "spanId": "ee" * 8, "name": "otel", "startTimeUnixNano": "1"}
    return {"resourceSpans": [{"resource": {"attributes": attrs}, "scopeSpans": [{"spans": [span]}]}]}


def test_the_claim_hands_the_agent_its_attempt_token_not_the_servers(admin: httpx.Client) -> None:
    a, b = _two_attempts(admin)
    for c in (a, b):
        llm = c["resources"]["resources"]["llm"]
        assert llm["api_key"] == attempt_token(TOKEN, *_ids(c))
        assert TOKEN not in str(c)
    assert a["resources"]["resources"]["llm"]["api_key"] != b["resources"]["resources"]["llm"]["api_key"]


def test_an_attempt_token_opens_its_own_gateway_and_spans(gw: LiveServer, admin: httpx.Client) -> None:
    a, _ = _two_attempts(admin)
    (ra, aa), key = _ids(a), a["resources"]["resources"]["llm"]["api_key"]
    with _as(gw.url, key) as agent:
        r = agent.post(f"/gw/{ra}/{aa}/v1/chat/completions", json=HELLO)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hi"
        assert agent.get(f"/gw/{ra}/{aa}/v1/models").status_code == 200
        r = agent.post("/v1/spans", json={"spans": [_span(ra, aa, "reward")]})
        assert r.status_code == 200, r.text
        r = agent.post("/v1/traces", json=_otlp(ra, aa))
        assert r.status_code == 200 and r.json() == {}, r.text
    names = [s["name"] for s in admin.get(f"/v1/rollouts/{ra}/spans").json()["spans"]]
    assert names == ["boltrl.model_call", "reward", "otel"]


def test_an_attempt_token_cannot_touch_another_attempt(gw: LiveServer, admin: httpx.Client) -> None:
    a, b = _two_attempts(admin)
    (ra, aa), (rb, ab) = _ids(a), _ids(b)
    key = attempt_token(TOKEN, ra, aa)
    before = admin.get(f"/v1/rollouts/{rb}/spans").json(), admin.get(f"/v1/rollouts/{ra}/spans").json()
    with _as(gw.url, key) as agent:
        for path in (f"/gw/{rb}/{ab}/v1", f"/gw/{ra}/{ab}/v1", f"/gw/{rb}/{aa}/v1"):
            r = agent.post(f"{path}/chat/completions", json=HELLO)
            assert r.status_code == 403, (path, r.text)
            assert error_of(r)["type"] == "ForbiddenError" and aa in error_of(r)["message"]
            assert agent.get(f"{path}/models").status_code == 403
        for spans in (
            [_span(rb, ab)],
            [_span(ra, aa), _span(rb, ab)],  # one foreign span refuses the whole batch
            [_span(ra, None)],
            [_span(ra, ab)],
        ):
            r = agent.post("/v1/spans", json={"spans": spans})
            assert r.status_code == 403, r.text
            assert error_of(r)["type"] == "ForbiddenError"
        r = agent.post("/v1/traces", json=_otlp(rb, ab))
        assert r.status_code == 200
        assert r.json()["partialSuccess"]["rejectedSpans"] == "1"
        assert aa in r.json()["partialSuccess"]["errorMessage"]
    after = admin.get(f"/v1/rollouts/{rb}/spans").json(), admin.get(f"/v1/rollouts/{ra}/spans").json()
    assert after == before


def test_an_attempt_token_opens_no_other_route(gw: LiveServer, admin: httpx.Client) -> None:
    a, b = _two_attempts(admin)
    (ra, aa), (rb, ab) = _ids(a), _ids(b)
    paths = admin.get("/openapi.json").json()["paths"]
    routes = [(m.upper(), p) for p, methods in paths.items() for m in methods if p != "/healthz"]
    assert len(routes) >= 25
    stats = admin.get("/v1/stats").json()
    with _as(gw.url, attempt_token(TOKEN, ra, aa)) as agent:
        opened = []
        for method, template in routes:
            path = template.replace("{rollout_id}", rb).replace("{attempt_id}", ab)
            path = re.sub(r"\{[^}]+\}", "x", path)
            r = agent.request(method, path, json={})
            if r.status_code != 403:
                opened.append((method, template))
            else:
                assert error_of(r)["type"] == "ForbiddenError"
        assert sorted(opened) == [("POST", "/v1/spans"), ("POST", "/v1/traces")]
        for extra in ("/openapi.json", "/docs", "/metrics", "/v1/rollouts"):
            assert agent.get(extra).status_code == 403
    assert admin.get("/v1/stats").json() == stats
    assert admin.get(f"/v1/rollouts/{rb}").json()["status"] == "running"


def test_forged_attempt_tokens_get_401(gw: LiveServer, admin: httpx.Client) -> None:
    a, b = _two_attempts(admin)
    (ra, aa), (rb, ab) = _ids(a), _ids(b)
    mac_a = attempt_token(TOKEN, ra, aa).rsplit("/", 1)[1]
    forged = [
        attempt_token("another-server", rb, ab),
        f"boltrl-attempt/{rb}/{ab}/{mac_a}",  # A's signature on B's ids
        f"boltrl-attempt/{rb}/{ab}/",
        f"boltrl-attempt/{rb}/{ab}",
        attempt_token(TOKEN, rb, ab)[:-1],
        "boltrl-attempt/" + "é" * 5,
    ]
    for token in forged:
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            r = c.post(
                f"/gw/{rb}/{ab}/v1/chat/completions",
                json=HELLO,
                headers={"authorization": f"Bearer {token}".encode()},
            )
            assert r.status_code == 401, token
            assert error_of(r)["type"] == "UnauthorizedError"


def test_the_server_token_still_opens_every_gateway(gw: LiveServer, admin: httpx.Client) -> None:
    a, _ = _two_attempts(admin)
    ra, aa = _ids(a)
    assert admin.post(f"/gw/{ra}/{aa}/v1/chat/completions", json=HELLO).status_code == 200


def test_without_a_server_token_there_are_no_attempt_tokens() -> None:
    with (
        live_server(backend=EchoBackend()) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        enqueue(http, {"input": 1})
        llm = claim(http)["resources"]["resources"]["llm"]
        assert llm["api_key"] == "boltrl"


def test_without_a_token_only_healthz_and_the_empty_dashboard_page_answer(
    gw: LiveServer, admin: httpx.Client
) -> None:
    a, _ = _two_attempts(admin)
    ra, aa = _ids(a)
    paths = admin.get("/openapi.json").json()["paths"]
    routes = [(m.upper(), p) for p, methods in paths.items() for m in methods if p != "/healthz"]
    assert any(p.startswith("/gw/") for _, p in routes)
    with httpx.Client(base_url=gw.url, timeout=10) as anon:
        for method, template in routes:
            path = template.replace("{rollout_id}", ra).replace("{attempt_id}", aa)
            r = anon.request(method, re.sub(r"\{[^}]+\}", "x", path), json=HELLO)
            assert r.status_code == 401, (method, path)
        assert anon.get("/healthz").status_code == 200
        page = anon.get("/")  # the dashboard's page holds no data: it asks for the token
        assert page.status_code == 200 and ra not in page.text and TOKEN not in page.text


def test_a_server_on_every_interface_lets_runners_fill_in_its_address() -> None:
    from boltrl.agent import LLM
    from boltrl.server.gateway import gateway_url
    from boltrl.types import Attempt, Claim, Resources, Rollout

    assert gateway_url(ServerConfig(port=4800), "r", "a") == "http://127.0.0.1:4800/gw/r/a/v1"
    template = gateway_url(ServerConfig(host="0.0.0.0"), "r", "a")
    assert template == "{server}/gw/r/a/v1"
    public = ServerConfig(host="0.0.0.0", public_url="http://boltrl.internal:4747/")
    assert gateway_url(public, "r", "a") == "http://boltrl.internal:4747/gw/r/a/v1"
    claim = Claim(
        rollout=Rollout(id="r", input=1, created_at=0.0),
        attempt=Attempt(id="a", rollout_id="r", n=1, worker_id="w", started_at=0.0, heartbeat_at=0.0),
        resources=Resources(version=1, resources={"llm": {"base_url": template}}, created_at=0.0),
    )
    assert LLM.for_attempt(claim, "http://10.1.2.3:4747/").base_url == "http://10.1.2.3:4747/gw/r/a/v1"


@pytest.mark.anyio
async def test_a_command_agent_works_with_its_attempt_token_and_nothing_more(
    gw: LiveServer, admin: httpx.Client, tmp_path: Path
) -> None:
    from boltrl.config import RunnerConfig
    from boltrl.runner import Runner
    from boltrl.store.client import StoreClient

    _, victim = _two_attempts(admin)  # a running attempt of another rollout, claimed by someone else
    out = tmp_path / "seen.json"
    enqueue(admin, {"id": "cmd-r", "input": {"out": str(out), "other": list(_ids(victim))}})
    command = f"{shlex.quote(sys.executable)} {Path(__file__).parent / 'token_command.py'}"
    config = RunnerConfig(server=gw.url, token=TOKEN, poll_interval_s=0.02, worker_id="cmd", max_rollouts=1)
    async with StoreClient(gw.url, token=TOKEN) as store:
        await Runner(store, command=command, config=config).run()
        rollout = await store.get_rollout("cmd-r")
    assert rollout.status == "succeeded", rollout
    result = json.loads(out.read_text())
    assert result["seen"] == {
        "gateway": 200,
        "other gateway": 403,
        "other spans": 403,
        "enqueue": 403,
        "stats": 403,
        "finish other": 403,
    }
    assert TOKEN not in json.dumps(result["env"])
    names = [s["name"] for s in admin.get("/v1/rollouts/cmd-r/spans").json()["spans"]]
    assert {"boltrl.model_call", "solve", "boltrl.reward", "boltrl.rollout"} <= set(names)
    assert admin.get(f"/v1/rollouts/{_ids(victim)[0]}").json()["status"] == "running"


@pytest.mark.anyio
async def test_the_client_raises_forbidden_error_for_a_403(gw: LiveServer, admin: httpx.Client) -> None:
    from boltrl.errors import ForbiddenError
    from boltrl.store.client import StoreClient

    a, _ = _two_attempts(admin)
    ra, aa = _ids(a)
    async with StoreClient(gw.url, token=attempt_token(TOKEN, ra, aa)) as agent:
        with pytest.raises(ForbiddenError, match=aa):
            await agent.get_rollout(ra)
