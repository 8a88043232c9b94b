"""With a token configured, every route but /healthz needs `Authorization: Bearer <token>`."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from boltrl.config import ServerConfig
from boltrl.errors import UnauthorizedError
from boltrl.store.client import StoreClient
from boltrl.testing import LiveServer, live_server
from boltrl.types import RolloutCreate
from tests.server.helpers import error_of

TOKEN = "tok-123"


@pytest.fixture
def secured() -> Iterator[LiveServer]:
    with live_server(config=ServerConfig(token=TOKEN)) as server:
        yield server


def _routes(server: LiveServer) -> list[tuple[str, str]]:
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}) as c:
        paths = c.get("/openapi.json").json()["paths"]
    routes = [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, methods in paths.items()
        for method in methods
        if path != "/healthz"
    ]
    return [*routes, ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/no/such/route")]


def test_every_route_but_healthz_needs_the_token(secured: LiveServer) -> None:
    routes = _routes(secured)
    assert len(routes) >= 20
    with httpx.Client(base_url=secured.url) as c:
        assert c.get("/healthz").status_code == 200
        for method, path in routes:
            for headers in (
                {},
                {"authorization": "Bearer wrong"},
                {"authorization": TOKEN},
                {"authorization": "Basic x"},
            ):
                response = c.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers)
                assert error_of(response)["type"] == "UnauthorizedError"
                assert response.headers["www-authenticate"] == "Bearer"
                assert TOKEN not in response.text
        for method, path in routes:
            response = c.request(method, path, headers={"authorization": f"bearer {TOKEN}"}, json={})
            assert response.status_code != 401, (method, path)
        assert c.get("/v1/stats").status_code == 401  # nothing was written without the token
        stats = c.get("/v1/stats", headers={"authorization": f"Bearer {TOKEN}"}).json()
        assert sum(stats["rollouts"].values()) == 0


@pytest.mark.anyio
async def test_store_client_with_token(secured: LiveServer) -> None:
    async with StoreClient(secured.url, token=TOKEN) as client:
        (rollout,) = await client.enqueue([RolloutCreate(input=1)])
        assert (await client.get_rollout(rollout.id)).id == rollout.id
    async with StoreClient(secured.url, token="wrong") as client:
        with pytest.raises(UnauthorizedError, match="bearer token"):
            await client.count_rollouts()
    async with StoreClient(secured.url) as client:
        with pytest.raises(UnauthorizedError):
            await client.count_rollouts()
