"""`GET /metrics`: valid Prometheus text, store-derived gauges that agree across server processes on
one database, the gateway's latency and token counters, spans ingested, and trainer step metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from boltrl.config import ServerConfig
from boltrl.server.metrics import metric_name
from boltrl.store.sqlite import SQLiteStore
from boltrl.testing import LiveServer, live_server
from tests.ui.seed import ScriptedBackend, seed

TOKEN = "metrics-token"


def scrape(url: str, token: str | None = TOKEN) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """`{sample name: {sorted labels: value}}`, parsed by the official client's parser."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith("boltrl_")
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics") / "boltrl.db"


@pytest.fixture(scope="module")
def server(db: Path) -> Iterator[LiveServer]:
    config = ServerConfig(db=str(db), token=TOKEN)
    with live_server(lambda: SQLiteStore(str(db)), config, backend=ScriptedBackend()) as s:
        seed(s.url, TOKEN)
        yield s


def test_store_gauges(server: LiveServer) -> None:
    m = scrape(server.url)
    assert m["boltrl_rollouts"] == {
        (("status", "queued"),): 3,
        (("status", "running"),): 1,
        (("status", "succeeded"),): 1,
        (("status", "failed"),): 1,
        (("status", "cancelled"),): 0,
    }
    assert m["boltrl_queue_depth"] == {(): 3}
    assert m["boltrl_attempts"][(("status", "failed"),)] == 2
    assert m["boltrl_attempts"][(("status", "running"),)] == 1
    assert m["boltrl_workers_active"] == {(): 2}


def test_gateway_spans_and_trainer_metrics(server: LiveServer) -> None:
    before = scrape(server.url)
    assert before["boltrl_gateway_requests_total"][(("outcome", "ok"),)] == 3
    assert before["boltrl_gateway_generated_tokens_total"] == {(): 9 + 5 + 9}
    assert before["boltrl_gateway_prompt_tokens_total"] == {(): 14 + 28 + 14}
    assert before["boltrl_gateway_latency_seconds_count"] == {(): 3}
    assert before["boltrl_gateway_latency_seconds_bucket"][(("le", "+Inf"),)] == 3
    assert 0.06 <= before["boltrl_gateway_latency_seconds_sum"][()] < 3  # three calls of 20 ms or more
    assert before["boltrl_spans_ingested_total"] == {(): 3 + 2}  # three model calls, two rewards

    # A failed model call counts as an error, and its span is ingested too.
    claim = httpx.post(
        f"{server.url}/v1/rollouts/claim",
        json={"worker_id": "w9"},
        headers={"authorization": f"Bearer {TOKEN}"},
    ).json()
    base = claim["resources"]["resources"]["llm"]["base_url"]
    r = httpx.post(
        f"{base}/chat/completions",
        json={"model": "broken", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 503
    after = scrape(server.url)
    assert after["boltrl_gateway_requests_total"][(("outcome", "error"),)] == 1
    assert after["boltrl_spans_ingested_total"] == {(): 6}
    assert after["boltrl_queue_depth"] == {(): 2}

    assert after["boltrl_trainer_step"] == {(("run", "calc-grpo"),): 7}
    assert after["boltrl_trainer_rollout_reward_mean"][(("run", "calc-grpo"),)] == pytest.approx(0.66)
    assert after["boltrl_trainer_train_loss"][(("run", "calc-grpo"),)] == pytest.approx(0.5)


def test_a_second_process_on_the_same_db_reports_the_same_store_gauges(server: LiveServer, db: Path) -> None:
    with live_server(lambda: SQLiteStore(str(db)), ServerConfig(db=str(db))) as other:
        theirs, ours = scrape(other.url, None), scrape(server.url)
        for name in ("boltrl_rollouts", "boltrl_queue_depth", "boltrl_attempts", "boltrl_trainer_step"):
            assert theirs[name] == ours[name], name
        assert theirs["boltrl_gateway_requests_total"][(("outcome", "ok"),)] == 0  # in-process counters


def test_metrics_need_the_token_and_healthz_and_the_page_do_not(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 401
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    page = httpx.get(f"{server.url}/", timeout=5)
    assert page.status_code == 200 and "<title>boltrl</title>" in page.text
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    assert TOKEN not in page.text


def test_metric_names_are_sanitised() -> None:
    assert metric_name("rollout/reward_mean") == "rollout_reward_mean"
    assert metric_name("train/pg-loss (token)") == "train_pg_loss_token"
    assert metric_name("9lives") == "_9lives"
    assert metric_name("///") == "value"


def test_run_metrics_routes(server: LiveServer) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=5) as http:
        r = http.post("/v1/runs/run-b/metrics", json={"rows": [{"step": 0, "train/loss": 1.0}]})
        assert r.status_code == 200 and r.json()["steps"] == 1
        assert http.get("/v1/runs").json()["runs"][0]["id"] == "run-b"
        assert http.get("/v1/runs/run-b/metrics").json() == {
            "run_id": "run-b",
            "rows": [{"step": 0, "train/loss": 1.0}],
        }
        assert http.get("/v1/runs/nope/metrics").status_code == 404
        bad = http.post("/v1/runs/run-b/metrics", json={"rows": [{"loss": 1}]})
        assert bad.status_code == 400 and "rows.0.step" in bad.json()["error"]["message"]
        assert http.post("/v1/runs/run-b/metrics", json={"rows": []}).status_code == 422
        assert http.post("/v1/runs/bad id!/metrics", json={"rows": [{"step": 0}]}).status_code == 422
