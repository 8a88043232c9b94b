"""Bad input gets a 4xx whose message names the problem, and writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from boltrl.config import ServerConfig
from boltrl.testing import live_server
from tests.server.helpers import claim, enqueue, error_of

LIMIT = 20_000


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[httpx.Client, str]]:
    with (
        live_server(config=ServerConfig(max_body_bytes=LIMIT)) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        enqueue(http, {"id": "r1", "input": 1}, {"id": "r2", "input": 2})
        attempt = claim(http)["attempt"]["id"]
        yield http, attempt


def _state(http: httpx.Client, attempt: str) -> Any:
    return (
        http.get("/v1/stats").json(),
        http.get("/v1/rollouts/r1").json(),
        http.get("/v1/rollouts/r2").json(),
        http.get("/v1/rollouts/r1/spans").json(),
        http.get("/v1/resources").status_code,
    )


def _ok_span(**extra: Any) -> dict[str, Any]:
    return {"rollout_id": "r1", "name": "s", **extra}


CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    # (case, method, path, request kwargs, status, text the message must contain)
    (
        "malformed json",
        "POST",
        "/v1/rollouts",
        {"content": b'{"rollouts": [', "json_ct": True},
        400,
        "not valid JSON",
    ),
    ("empty body", "POST", "/v1/rollouts", {"content": b"", "json_ct": True}, 422, "body: missing"),
    (
        "not json content type",
        "POST",
        "/v1/rollouts",
        {"content": b"rollouts=1"},
        415,
        "Content-Type: application/json",
    ),
    (
        "body not an object",
        "POST",
        "/v1/rollouts",
        {"json": [1]},
        422,
        "body: Input should be a valid dictionary",
    ),
    (
        "wrong type",
        "POST",
        "/v1/rollouts",
        {"json": {"rollouts": "x"}},
        422,
        "body.rollouts: Input should be a valid list",
    ),
    (
        "empty batch",
        "POST",
        "/v1/rollouts",
        {"json": {"rollouts": []}},
        422,
        "body.rollouts: List should have at least 1 item",
    ),
    (
        "missing field",
        "POST",
        "/v1/rollouts",
        {"json": {"rollouts": [{}]}},
        422,
        "body.rollouts.0.input: Field required",
    ),
    (
        "unknown field",
        "POST",
        "/v1/rollouts",
        {"json": {"rollouts": [{"input": 1}, {"input": 2, "max_atempts": 2}]}},
        422,
        "body.rollouts.1.max_atempts: Extra inputs are not permitted",
    ),
    (
        "too small",
        "POST",
        "/v1/rollouts",
        {"json": {"rollouts": [{"input": 1, "max_attempts": 0}]}},
        422,
        "body.rollouts.0.max_attempts: Input should be greater than or equal to 1",
    ),
    (
        "too-long id",
        "POST",
        "/v1/rollouts",
        {"json": {"rollouts": [{"input": 1, "id": "x" * 129}]}},
        422,
        "body.rollouts.0.id: String should have at most 128 characters",
    ),
    (
        "bad id characters",
        "POST",
        "/v1/rollouts",
        {"json": {"rollouts": [{"input": 1, "id": "a b"}]}},
        422,
        "body.rollouts.0.id: String should match pattern",
    ),
    (
        "bad mode",
        "POST",
        "/v1/rollouts",
        {"json": {"rollouts": [{"input": 1, "mode": "eval"}]}},
        422,
        "body.rollouts.0.mode: Input should be 'train', 'val' or 'test'",
    ),
    (
        "bad status filter",
        "GET",
        "/v1/rollouts?status=done",
        {},
        422,
        "query.status: Input should be 'queued'",
    ),
    (
        "bad limit",
        "GET",
        "/v1/rollouts?limit=0",
        {},
        422,
        "query.limit: Input should be greater than or equal to 1",
    ),
    (
        "limit not a number",
        "GET",
        "/v1/rollouts?limit=ten",
        {},
        422,
        "query.limit: Input should be a valid integer",
    ),
    ("bad cursor", "GET", "/v1/rollouts?after=zzz", {}, 400, "cursor"),
    (
        "claim without worker",
        "POST",
        "/v1/rollouts/claim",
        {"json": {}},
        422,
        "body.worker_id: Field required",
    ),
    (
        "bad finish status",
        "POST",
        "/v1/attempts/{attempt}/finish",
        {"json": {"status": "done"}},
        422,
        "body.status: Input should be 'succeeded', 'failed' or 'timed_out'",
    ),
    (
        "finish status lost",
        "POST",
        "/v1/attempts/{attempt}/finish",
        {"json": {"status": "lost"}},
        422,
        "body.status",
    ),
    (
        "finish unknown attempt",
        "POST",
        "/v1/attempts/nope/finish",
        {"json": {"status": "failed"}},
        404,
        "attempt 'nope' not found",
    ),
    ("heartbeat unknown attempt", "POST", "/v1/attempts/nope/heartbeat", {}, 404, "not found"),
    (
        "wait no ids",
        "POST",
        "/v1/rollouts/wait",
        {"json": {"ids": []}},
        422,
        "body.ids: List should have at least 1 item",
    ),
    (
        "wait too long",
        "POST",
        "/v1/rollouts/wait",
        {"json": {"ids": ["r1"], "timeout_s": 1e6}},
        422,
        "body.timeout_s: Input should be less than or equal to 300",
    ),
    (
        "wait bad timeout",
        "POST",
        "/v1/rollouts/wait",
        {"json": {"ids": ["r1"], "timeout_s": "soon"}},
        422,
        "body.timeout_s: Input should be a valid number",
    ),
    (
        "span missing name",
        "POST",
        "/v1/spans",
        {"json": {"spans": [_ok_span(), {"rollout_id": "r1"}]}},
        422,
        "body.spans.1.name: Field required",
    ),
    (
        "span bad status",
        "POST",
        "/v1/spans",
        {"json": {"spans": [_ok_span(status="fine")]}},
        422,
        "body.spans.0.status",
    ),
    (
        "span unknown rollout",
        "POST",
        "/v1/spans",
        {"json": {"spans": [_ok_span(), _ok_span(rollout_id="zzz")]}},
        404,
        "rollout 'zzz' not found",
    ),
    (
        "span attempt of another rollout",
        "POST",
        "/v1/spans",
        {"json": {"spans": [_ok_span(rollout_id="r2", attempt_id="{attempt}")]}},
        400,
        "belongs to rollout 'r1'",
    ),
    (
        "span bad start",
        "POST",
        "/v1/spans",
        {"json": {"spans": [_ok_span(start="noon")]}},
        422,
        "body.spans.0.start",
    ),
    (
        "resources not an object",
        "PUT",
        "/v1/resources",
        {"json": {"resources": ["a"]}},
        422,
        "body.resources: Input should be a valid dictionary",
    ),
    (
        "resources version not int",
        "GET",
        "/v1/resources/one",
        {},
        422,
        "path.version: Input should be a valid integer",
    ),
    (
        "reap negative",
        "POST",
        "/v1/admin/reap",
        {"json": {"heartbeat_timeout_s": -1}},
        422,
        "body.heartbeat_timeout_s",
    ),
    (
        "oversized body",
        "POST",
        "/v1/rollouts",
        {"json": {"rollouts": [{"input": "x" * LIMIT}]}},
        413,
        f"limit of {LIMIT} bytes",
    ),
    (
        "oversized chunked body",
        "POST",
        "/v1/spans",
        {"chunks": [b"{" + b" " * 8000] * 4},
        413,
        f"limit of {LIMIT} bytes",
    ),
]


@pytest.mark.parametrize(
    ("case", "method", "path", "kwargs", "status", "text"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input(
    api: tuple[httpx.Client, str],
    case: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    text: str,
) -> None:
    http, attempt = api
    before = _state(http, attempt)
    path = path.replace("{attempt}", attempt)
    kwargs = dict(kwargs)
    if "json" in kwargs:
        kwargs["json"] = _fill(kwargs["json"], attempt)
    if kwargs.pop("json_ct", False):
        kwargs["headers"] = {"content-type": "application/json"}
    if "chunks" in kwargs:
        chunks = kwargs.pop("chunks")
        kwargs["content"] = iter(chunks)  # no Content-Length: sent chunked
        kwargs["headers"] = {"content-type": "application/json"}
    response = http.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert text in error["message"], error
    assert _state(http, attempt) == before


def _fill(obj: Any, attempt: str) -> Any:
    if isinstance(obj, dict):
        return {k: _fill(v, attempt) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fill(v, attempt) for v in obj]
    return obj.replace("{attempt}", attempt) if isinstance(obj, str) else obj


def test_everything_valid_in_a_batch_or_nothing(api: tuple[httpx.Client, str]) -> None:
    http, _ = api
    response = http.post("/v1/rollouts", json={"rollouts": [{"id": "new1", "input": 1}, {"id": "new2"}]})
    assert response.status_code == 422
    assert http.get("/v1/rollouts/new1").status_code == 404
