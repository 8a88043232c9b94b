"""Small helpers shared by the server tests."""

from __future__ import annotations

from typing import Any

import httpx


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The `{"message", "type"}` of an error response (and a check that it has that shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def enqueue(http: httpx.Client, *rollouts: dict[str, Any]) -> list[dict[str, Any]]:
    response = http.post("/v1/rollouts", json={"rollouts": list(rollouts) or [{"input": "x"}]})
    assert response.status_code == 200, response.text
    return list(response.json()["rollouts"])


def claim(http: httpx.Client, worker_id: str = "w1") -> dict[str, Any]:
    response = http.post("/v1/rollouts/claim", json={"worker_id": worker_id})
    assert response.status_code == 200, response.text
    return dict(response.json())
