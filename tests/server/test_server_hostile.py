"""Hostile bodies on every route that takes one: deep nesting, huge strings, wrong types, junk bytes.

Each gets a 4xx in the one error shape, never a 5xx, and the store is exactly as before.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from boltrl.config import ServerConfig
from boltrl.testing import LiveServer, live_server
from tests.server.fakes import EchoBackend
from tests.server.helpers import claim, enqueue, error_of

LIMIT = 256 * 1024
DEEP_LIST = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
JSON_CT = {"content-type": "application/json"}
NOT_AN_OBJECT = {"10,000 nested lists", "10,000 nested objects", "null", "a number", "a string", "a list"}
NOT_AN_OBJECT |= {"true", "truncated", "not UTF-8"}
LENIENT = ("/gw/", "/v1/traces")


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[LiveServer, httpx.Client, str]]:
    config = ServerConfig(max_body_bytes=LIMIT)
    with (
        live_server(config=config, backend=EchoBackend()) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        enqueue(http, {"id": "r1", "input": 1}, {"id": "r2", "input": 2})
        attempt = claim(http)["attempt"]["id"]
        http.post("/v1/spans", json={"spans": [{"rollout_id": "r1", "name": "kept"}]}).raise_for_status()
        yield server, http, attempt


def _body_routes(http: httpx.Client, attempt: str) -> list[tuple[str, str]]:
    paths = http.get("/openapi.json").json()["paths"]
    routes = []
    for path, methods in paths.items():
        for method, op in methods.items():
            if method in ("post", "put") and ("requestBody" in op or path.startswith("/gw/")):
                routes.append((method.upper(), path.format(rollout_id="r1", attempt_id=attempt, run_id="x")))
    return routes


def _state(http: httpx.Client) -> Any:
    return (
        http.get("/v1/stats").json(),
        [http.get(f"/v1/rollouts/{r}").json() for r in ("r1", "r2")],
        [http.get(f"/v1/rollouts/{r}/spans").json() for r in ("r1", "r2")],
        http.get("/v1/resources").status_code,
        http.get("/v1/runs").json(),
    )


def _hostile_bodies() -> list[tuple[str, bytes]]:
    huge = "x" * (LIMIT - 1000)
    return [
        ("10,000 nested lists", DEEP_LIST),
        ("10,000 nested objects", DEEP_OBJECT),
        ("deep list inside a field", b'{"rollouts": [{"input": ' + DEEP_LIST + b"}]}"),
        (
            "deep list in span attributes",
            b'{"spans": [{"rollout_id": "r1", "name": "x", "attributes": {"a": ' + DEEP_LIST + b"}}]}",
        ),
        ("deep list in resources", b'{"resources": {"a": ' + DEEP_LIST + b"}}"),
        ("deep list in messages", b'{"model": "echo", "messages": [' + DEEP_LIST + b"]}"),
        ("long id", json.dumps({"rollouts": [{"id": "i" * 100_000, "input": 1}]}).encode()),
        ("long span name", json.dumps({"spans": [{"rollout_id": "r1", "name": huge}]}).encode()),
        ("long worker id", json.dumps({"worker_id": huge}).encode()),
        ("null", b"null"),
        ("a number", b"12"),
        ("a string", b'"rollouts"'),
        ("a list", b"[1, 2]"),
        ("true", b"true"),
        (
            "wrong field types",
            b'{"rollouts": 1, "spans": "x", "worker_id": 3, "ids": {}, "resources": [], "rows": 1}',
        ),
        ("NaN", b'{"heartbeat_timeout_s": NaN, "timeout_s": Infinity, "spans": [NaN]}'),
        ("truncated", b'{"rollouts": [{"input": '),
        ("not UTF-8", b'{"worker_id": "\xff\xfe"}'),
        ("NUL bytes", b'{"worker_id": "a\x00b"}'),
        ("lone surrogate", b'{"worker_id": "\\ud800"}'),
    ]


def test_hostile_json_bodies_get_a_4xx_and_write_nothing(api: tuple[LiveServer, httpx.Client, str]) -> None:
    _, http, attempt = api
    routes = _body_routes(http, attempt)
    assert len(routes) >= 12 and any(p.startswith("/gw/") for _, p in routes)
    before = _state(http)
    for method, path in routes:
        for case, body in _hostile_bodies():
            if path.startswith(LENIENT) and case not in NOT_AN_OBJECT:
                continue  # the backend judges the gateway's fields; OTLP ignores unknown fields
            response = http.request(method, path, content=body, headers=JSON_CT)
            assert 400 <= response.status_code < 500, (
                method,
                path,
                case,
                response.status_code,
                response.text,
            )
            if not path.startswith("/gw/"):  # the gateway answers in OpenAI's error shape
                error_of(response)
    assert _state(http) == before


def test_bodies_over_the_limit_are_413_before_they_are_read(
    api: tuple[LiveServer, httpx.Client, str],
) -> None:
    _, http, attempt = api
    before = _state(http)
    too_big = json.dumps({"spans": [{"rollout_id": "r1", "name": "x" * LIMIT}]}).encode()
    for method, path in _body_routes(http, attempt):
        response = http.request(method, path, content=too_big, headers=JSON_CT)
        assert response.status_code == 413, (path, response.text)
        assert error_of(response)["type"] == "PayloadTooLargeError"
        chunked = http.request(
            method, path, content=iter([too_big[:LIMIT], too_big[LIMIT:]]), headers=JSON_CT
        )
        assert chunked.status_code == 413, path
    assert _state(http) == before


@pytest.mark.parametrize(
    ("content_type", "encoding", "body", "status"),
    [
        ("application/x-protobuf", None, bytes(range(256)) * 8, 400),
        ("application/x-protobuf", None, b"\x0a\xff\xff\xff\xff\x0f", 400),
        ("application/x-protobuf", "gzip", gzip.compress(b"\x0a" * 10) + b"junk", 400),
        ("application/x-protobuf", "gzip", gzip.compress(b"\x00" * (LIMIT * 4)), 413),
        ("application/json", None, DEEP_LIST, 400),
        ("application/json", None, b'{"resourceSpans": [' + DEEP_OBJECT + b"]}", 400),
        ("application/json", None, b"null", 400),
        ("application/json", None, b'{"resourceSpans": [{"scopeSpans": [{"spans": [null]}]}]}', 400),
        ("application/json", "deflate", b"junk", 400),
        ("application/json", None, b"x" * (LIMIT + 1), 413),
    ],
)
def test_hostile_otlp_exports(
    api: tuple[LiveServer, httpx.Client, str],
    content_type: str,
    encoding: str | None,
    body: bytes,
    status: int,
) -> None:
    _, http, _ = api
    before = _state(http)
    headers = {"content-type": content_type, **({"content-encoding": encoding} if encoding else {})}
    response = http.post("/v1/traces", content=body, headers=headers)
    assert response.status_code == status, response.text
    error_of(response)
    assert _state(http) == before


def test_hostile_paths_and_queries(api: tuple[LiveServer, httpx.Client, str]) -> None:
    _, http, _ = api
    before = _state(http)
    for path in (
        "/v1/rollouts/" + "r" * 8_000,
        "/v1/rollouts/%00",
        "/v1/rollouts/..%2F..%2Fetc%2Fpasswd",
        "/v1/rollouts?limit=99999999999999999999999",
        "/v1/rollouts?after=" + "z" * 8_000,
        "/v1/rollouts?status=queued&status=running&status=" + "x" * 1000,
        "/v1/resources/99999999999999999999999",
        "/v1/resources/-1",
        "/v1/stats/finished?since=NaN",
        "/v1/stats/finished?since=1e999",
        "/v1/attempts/" + "a" * 8_000,
        "/gw/r1/" + "a" * 8_000 + "/v1/models",
    ):
        response = http.get(path)
        assert response.status_code < 500, (path[:60], response.status_code, response.text[:200])
    assert _state(http) == before
