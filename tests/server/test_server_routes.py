"""Every REST route, through the real HTTP server on loopback."""

from __future__ import annotations

import threading
import time

import httpx

from boltrl.config import ServerConfig
from boltrl.testing import LiveServer, live_server
from tests.server.helpers import claim, enqueue, error_of


def test_healthz_and_openapi(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/v1/rollouts", "/v1/rollouts/claim", "/v1/traces", "/v1/resources", "/v1/stats"):
        assert path in paths
    assert "swagger" in http.get("/docs").text.lower()


def test_enqueue_is_idempotent_on_caller_ids(http: httpx.Client) -> None:
    first = enqueue(http, {"id": "r1", "input": {"q": 1}, "group_id": "g", "max_attempts": 2}, {"input": 2})
    assert first[0]["id"] == "r1" and first[0]["status"] == "queued" and first[0]["max_attempts"] == 2
    assert first[1]["id"]  # the store names rollouts sent without an id
    again = enqueue(http, {"id": "r1", "input": "different"})
    assert again == first[:1]


def test_list_filters_and_pages(http: httpx.Client) -> None:
    enqueue(
        http, *({"id": f"r{i}", "input": i, "group_id": "even" if i % 2 == 0 else "odd"} for i in range(5))
    )
    enqueue(http, {"id": "v", "input": 0, "mode": "val"})
    assert [r["id"] for r in http.get("/v1/rollouts", params={"group_id": "even"}).json()["rollouts"]] == [
        "r0",
        "r2",
        "r4",
    ]
    assert [r["id"] for r in http.get("/v1/rollouts", params={"mode": "val"}).json()["rollouts"]] == ["v"]
    seen, after = [], None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = http.get("/v1/rollouts", params=params).json()
        seen += [r["id"] for r in page["rollouts"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert seen == ["r0", "r1", "r2", "r3", "r4", "v"]
    claim(http)
    running = http.get("/v1/rollouts", params={"status": "running"}).json()
    assert [r["id"] for r in running["rollouts"]] == ["r0"] and running["next_cursor"] is None


def test_claim_heartbeat_finish_read(http: httpx.Client) -> None:
    assert http.post("/v1/rollouts/claim", json={"worker_id": "w1"}).status_code == 204
    assert http.post("/v1/rollouts/claim", json={"worker_id": "w1"}).content == b""
    http.put("/v1/resources", json={"resources": {"llm": {"base_url": "http://x"}}})
    enqueue(http, {"id": "r1", "input": 1, "max_attempts": 2})
    got = claim(http, "w7")
    assert set(got) == {"rollout", "attempt", "resources"}
    assert got["rollout"]["status"] == "running" and got["rollout"]["resources_version"] == 1
    assert got["resources"]["resources"]["llm"]["base_url"] == "http://x"
    attempt = got["attempt"]
    assert attempt["worker_id"] == "w7" and attempt["n"] == 1

    assert http.get(f"/v1/attempts/{attempt['id']}").json() == attempt
    beat = http.post(f"/v1/attempts/{attempt['id']}/heartbeat").json()
    assert beat["heartbeat_at"] >= attempt["heartbeat_at"]

    failed = http.post(f"/v1/attempts/{attempt['id']}/finish", json={"status": "failed", "error": "boom"})
    assert failed.json()["status"] == "failed" and failed.json()["error"] == "boom"
    assert http.get("/v1/rollouts/r1").json()["status"] == "queued"  # one attempt left

    second = claim(http)["attempt"]
    done = http.post(f"/v1/attempts/{second['id']}/finish", json={"status": "succeeded"})
    assert done.json()["status"] == "succeeded"
    rollout = http.get("/v1/rollouts/r1").json()
    assert rollout["status"] == "succeeded" and rollout["ended_at"] is not None
    assert [a["status"] for a in rollout["attempts"]] == ["failed", "succeeded"]
    assert http.get("/v1/rollouts/r1/attempts").json()["attempts"] == rollout["attempts"]

    again = http.post(f"/v1/attempts/{second['id']}/finish", json={"status": "succeeded"})
    assert again.status_code == 409 and error_of(again)["type"] == "ConflictError"
    stale = http.post(f"/v1/attempts/{second['id']}/heartbeat")
    assert stale.status_code == 409
    missing = http.get("/v1/attempts/nope")
    assert missing.status_code == 404 and error_of(missing) == {
        "message": "attempt 'nope' not found",
        "type": "NotFoundError",
    }


def test_cancel(http: httpx.Client) -> None:
    enqueue(http, {"id": "r1", "input": 1})
    cancelled = http.post("/v1/rollouts/r1/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = http.post("/v1/rollouts/r1/cancel")
    assert again.status_code == 409 and "cancelled" in error_of(again)["message"]
    assert http.post("/v1/rollouts/nope/cancel").status_code == 404
    assert http.get("/v1/rollouts/nope").status_code == 404


def test_wait_long_polls_without_blocking_the_loop(http: httpx.Client, server: LiveServer) -> None:
    enqueue(http, {"id": "a", "input": 1}, {"id": "b", "input": 2})
    # Times out with whichever are terminal by then.
    http.post("/v1/rollouts/a/cancel")
    t = time.monotonic()
    partial = http.post("/v1/rollouts/wait", json={"ids": ["a", "b"], "timeout_s": 0.3}).json()
    assert [r["id"] for r in partial["rollouts"]] == ["a"] and time.monotonic() - t >= 0.25

    result: dict[str, object] = {}

    def long_poll() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            result["response"] = c.post("/v1/rollouts/wait", json={"ids": ["a", "b"], "timeout_s": 5})

    poller = threading.Thread(target=long_poll)
    t = time.monotonic()
    poller.start()
    time.sleep(0.2)
    # The loop still serves other requests while the long poll waits.
    assert http.get("/healthz").status_code == 200
    attempt = claim(http)["attempt"]
    http.post(f"/v1/attempts/{attempt['id']}/finish", json={"status": "succeeded"})
    poller.join(5)
    response = result["response"]
    assert isinstance(response, httpx.Response)
    assert {r["id"]: r["status"] for r in response.json()["rollouts"]} == {"a": "cancelled", "b": "succeeded"}
    assert time.monotonic() - t < 3
    unknown = http.post("/v1/rollouts/wait", json={"ids": ["a", "zzz"], "timeout_s": 0})
    assert unknown.status_code == 404 and "zzz" in error_of(unknown)["message"]


def test_spans_in_seq_order(http: httpx.Client) -> None:
    enqueue(http, {"id": "r1", "input": 1})
    attempt = claim(http)["attempt"]
    spans = [
        {"rollout_id": "r1", "attempt_id": attempt["id"], "name": "a", "attributes": {"k": [1, {"x": None}]}},
        {"rollout_id": "r1", "name": "b", "events": [{"name": "e", "attributes": {"n": 1}}], "status": "ok"},
    ]
    added = http.post("/v1/spans", json={"spans": spans}).json()["spans"]
    assert [(s["seq"], s["name"]) for s in added] == [(0, "a"), (1, "b")]
    more = http.post("/v1/spans", json={"spans": [{"rollout_id": "r1", "name": "c", "span_id": "abc"}]})
    assert more.json()["spans"][0]["seq"] == 2
    got = http.get("/v1/rollouts/r1/spans").json()["spans"]
    assert [s["name"] for s in got] == ["a", "b", "c"] and got == added + more.json()["spans"]
    assert got[0]["attributes"] == {"k": [1, {"x": None}]} and got[1]["events"][0]["name"] == "e"
    only = http.get("/v1/rollouts/r1/spans", params={"attempt_id": attempt["id"]}).json()["spans"]
    assert [s["name"] for s in only] == ["a"]
    assert http.get("/v1/rollouts/nope/spans").status_code == 404


def test_resources(http: httpx.Client) -> None:
    none = http.get("/v1/resources")
    assert none.status_code == 404 and "PUT /v1/resources" in error_of(none)["message"]
    v1 = http.put("/v1/resources", json={"resources": {"prompt": "one"}}).json()
    v2 = http.put("/v1/resources", json={"resources": {"prompt": "two"}}).json()
    assert (v1["version"], v2["version"]) == (1, 2)
    assert http.get("/v1/resources").json() == v2
    assert http.get("/v1/resources/1").json() == v1
    assert http.get("/v1/resources/3").status_code == 404
    assert http.get("/v1/resources/latest").status_code == 422


def test_stats_and_reap(http: httpx.Client) -> None:
    enqueue(http, {"id": "r1", "input": 1}, {"id": "r2", "input": 2})
    attempt = claim(http)["attempt"]
    assert http.get("/v1/stats").json() == {
        "rollouts": {"queued": 1, "running": 1, "succeeded": 0, "failed": 0, "cancelled": 0}
    }
    time.sleep(0.01)
    reaped = http.post("/v1/admin/reap", json={"heartbeat_timeout_s": 0}).json()["attempts"]
    assert [(a["id"], a["status"]) for a in reaped] == [(attempt["id"], "lost")]
    assert http.get("/v1/rollouts/r1").json()["status"] == "queued"


def test_background_reaper_marks_lost_attempts() -> None:
    config = ServerConfig(heartbeat_timeout_s=0.2, reap_interval_s=0.05)
    with live_server(config=config) as server, httpx.Client(base_url=server.url) as http:
        enqueue(http, {"id": "r1", "input": 1})
        attempt = claim(http)["attempt"]
        deadline = time.monotonic() + 5
        while http.get(f"/v1/attempts/{attempt['id']}").json()["status"] == "running":
            assert time.monotonic() < deadline, "the reaper never ran"
            time.sleep(0.05)
        assert http.get(f"/v1/attempts/{attempt['id']}").json()["status"] == "lost"
        assert http.get("/v1/rollouts/r1").json()["status"] == "queued"


def test_unknown_route_and_method_use_the_error_shape(http: httpx.Client) -> None:
    missing = http.get("/v1/nothing")
    assert missing.status_code == 404 and error_of(missing)["type"] == "NotFoundError"
    wrong = http.delete("/v1/rollouts")
    assert wrong.status_code == 405 and "DELETE /v1/rollouts" in error_of(wrong)["message"]


def test_live_server_store_is_reachable_from_the_test(server: LiveServer, http: httpx.Client) -> None:
    enqueue(http, {"id": "r1", "input": 1})
    assert server.call(server.store.get_rollout("r1")).id == "r1"
