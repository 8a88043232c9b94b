"""`StoreClient`: the whole Store protocol over HTTP, its error mapping, and its retries."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from boltrl.config import ClientConfig
from boltrl.errors import BoltrlError, ConflictError, InvalidInputError, NotFoundError, ServerUnavailableError
from boltrl.store.base import Store
from boltrl.store.client import StoreClient
from boltrl.testing import LiveServer, free_port
from boltrl.types import RolloutCreate, SpanCreate

pytestmark = pytest.mark.anyio


@pytest.fixture
def client_of(server: LiveServer) -> Iterator[StoreClient]:
    yield StoreClient(server.url, config=ClientConfig(retry_for_s=5))


async def test_every_store_method(server: LiveServer) -> None:
    async with StoreClient(server.url) as store:
        assert isinstance(store, Store)
        assert await store.get_resources() is None
        v1 = await store.put_resources({"llm": {"base_url": "http://gw"}})
        assert (
            v1.version == 1 and (await store.get_resources()) == v1 and (await store.get_resources(1)) == v1
        )

        created = await store.enqueue(
            [RolloutCreate(id="r1", input={"q": 1}, group_id="g"), RolloutCreate(input=2, mode="val")]
        )
        assert created[0].id == "r1" and created[1].id.startswith("ro-")  # ids assigned by the client
        assert await store.enqueue([]) == []
        assert (await store.get_rollout("r1")).input == {"q": 1}
        page = await store.list_rollouts(limit=1)
        assert [r.id for r in page.rollouts] == ["r1"] and page.next_cursor is not None
        rest = await store.list_rollouts(after=page.next_cursor)
        assert [r.id for r in rest.rollouts] == [created[1].id] and rest.next_cursor is None
        assert [r.id for r in (await store.list_rollouts(mode="val")).rollouts] == [created[1].id]
        assert [r.id for r in (await store.list_rollouts(group_id="g", status="queued")).rollouts] == ["r1"]

        claim = await store.claim("w1")
        assert claim is not None and claim.rollout.id == "r1" and claim.resources == v1
        attempt = claim.attempt
        assert (await store.heartbeat(attempt.id)).heartbeat_at >= attempt.heartbeat_at
        assert await store.get_attempt(attempt.id) is not None
        spans = await store.add_spans(
            [
                SpanCreate(rollout_id="r1", attempt_id=attempt.id, name="a"),
                SpanCreate(rollout_id="r1", name="b"),
            ]
        )
        assert [s.seq for s in spans] == [0, 1]
        assert await store.add_spans([]) == []
        assert await store.get_spans("r1") == spans
        assert await store.get_spans("r1", attempt_id=attempt.id) == spans[:1]
        assert await store.wait(["r1"], 0.05) == []
        finished = await store.finish_attempt(attempt.id, "succeeded")
        assert finished.status == "succeeded"
        assert [a.id for a in await store.list_attempts("r1")] == [attempt.id]
        (done,) = await store.wait(["r1"], 5)
        assert done.status == "succeeded"

        second = await store.claim("w2")
        assert second is not None
        await asyncio.sleep(0.01)
        reaped = await store.reap(0.0)
        assert [a.id for a in reaped] == [second.attempt.id] and reaped[0].status == "lost"
        cancelled = await store.cancel(second.rollout.id)
        assert cancelled.status == "cancelled"
        assert await store.claim("w3") is None
        assert await store.count_rollouts() == {
            "queued": 0,
            "running": 0,
            "succeeded": 1,
            "failed": 0,
            "cancelled": 1,
        }
        assert await store.wait([], 1) == []


async def test_errors_map_to_the_same_classes(client_of: StoreClient) -> None:
    async with client_of as store:
        with pytest.raises(NotFoundError, match="rollout 'nope' not found"):
            await store.get_rollout("nope")
        with pytest.raises(NotFoundError):
            await store.get_resources(7)
        with pytest.raises(InvalidInputError, match="cursor"):
            await store.list_rollouts(after="garbage")
        with pytest.raises(InvalidInputError, match=r"query\.status"):
            await store.list_rollouts(status="done")
        with pytest.raises(InvalidInputError, match=r"body\.status"):
            await store.finish_attempt("at-x", "done")
        await store.enqueue([RolloutCreate(id="r1", input=1)])
        claim = await store.claim("w")
        assert claim is not None
        await store.finish_attempt(claim.attempt.id, "failed", error="boom")
        with pytest.raises(ConflictError, match="already failed"):
            await store.finish_attempt(claim.attempt.id, "failed")
        with pytest.raises(ConflictError):
            await store.heartbeat(claim.attempt.id)
        with pytest.raises(NotFoundError, match="weird/id"):
            await store.get_attempt("weird/id")  # quoted into one path segment


class LoseReplies(httpx.AsyncBaseTransport):
    """Forwards every request, but drops the reply to the first `n` whose path ends with `suffix`: the
    request landed, the client saw a broken connection."""

    def __init__(self, suffix: str, n: int = 1) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.suffix, self.n, self.sent = suffix, n, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith(self.suffix):
            self.sent += 1
            if self.sent <= self.n:
                await response.aclose()
                raise httpx.ReadError("connection reset by peer (test)")
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_retried_finish_and_cancel_that_landed_return_the_record(server: LiveServer) -> None:
    async with StoreClient(server.url, transport=LoseReplies("/finish")) as store:
        await store.enqueue([RolloutCreate(id="r1", input=1), RolloutCreate(id="r2", input=2)])
        claim = await store.claim("w")
        assert claim is not None
        attempt = await store.finish_attempt(claim.attempt.id, "succeeded")
        assert attempt.status == "succeeded" and (await store.get_rollout("r1")).status == "succeeded"
    async with StoreClient(server.url, transport=LoseReplies("/finish")) as store:
        claim = await store.claim("w")
        assert claim is not None
        await _finish_elsewhere(server, claim.attempt.id)
        with pytest.raises(ConflictError):  # landed, but not with the status we asked for
            await store.finish_attempt(claim.attempt.id, "succeeded")
    async with StoreClient(server.url, transport=LoseReplies("/cancel")) as store:
        await store.enqueue([RolloutCreate(id="r3", input=3)])
        assert (await store.cancel("r3")).status == "cancelled"
        with pytest.raises(ConflictError):  # not a retry: a real conflict
            await store.cancel("r3")


async def _finish_elsewhere(server: LiveServer, attempt_id: str) -> None:
    async with StoreClient(server.url) as other:
        await other.finish_attempt(attempt_id, "failed")


async def test_retried_enqueue_and_spans_are_not_duplicated(server: LiveServer) -> None:
    transport = LoseReplies("/v1/rollouts", n=2)
    async with StoreClient(server.url, transport=transport) as store:
        created = await store.enqueue([RolloutCreate(input=1)])
        assert transport.sent == 3
        assert (await store.count_rollouts())["queued"] == 1
        assert (await store.get_rollout(created[0].id)).input == 1


async def test_retried_add_spans_are_not_duplicated(server: LiveServer) -> None:
    async with StoreClient(server.url) as plain:
        await plain.enqueue([RolloutCreate(id="r1", input=1)])
    async with StoreClient(server.url, transport=LoseReplies("/v1/spans")) as store:
        spans = await store.add_spans(
            [SpanCreate(rollout_id="r1", name="a"), SpanCreate(rollout_id="r1", name="b")]
        )
        assert [s.name for s in await store.get_spans("r1")] == ["a", "b"]
        assert [s.seq for s in spans] == [0, 1]


class FailFirst(httpx.AsyncBaseTransport):
    def __init__(self, statuses: list[int]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.statuses = statuses

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.statuses:
            return httpx.Response(self.statuses.pop(0), text="proxy says no")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_retries_gateway_errors_then_gives_up(server: LiveServer) -> None:
    async with StoreClient(server.url, transport=FailFirst([502, 503, 504])) as store:
        assert (await store.count_rollouts())["queued"] == 0
    async with StoreClient(server.url, transport=FailFirst([500])) as store:
        with pytest.raises(BoltrlError, match="server answered 500: proxy says no"):
            await store.count_rollouts()
    config = ClientConfig(retry_for_s=0.3)
    async with StoreClient(f"http://127.0.0.1:{free_port()}", config=config) as store:
        loop = asyncio.get_running_loop()
        t = loop.time()
        with pytest.raises(ServerUnavailableError, match="unavailable"):
            await store.count_rollouts()
        assert 0.05 < loop.time() - t < 2


async def test_wait_extends_the_request_timeout(server: LiveServer) -> None:
    config = ClientConfig(timeout_s=0.2, retry_for_s=0)
    async with StoreClient(server.url, config=config) as store:
        await store.enqueue([RolloutCreate(id="r1", input=1)])
        assert await store.wait(["r1"], 0.6) == []  # longer than one request's timeout, no ReadTimeout


async def test_config_and_repr(server: LiveServer) -> None:
    client = StoreClient(token="secret", config=ClientConfig(server=server.url + "/"))
    assert client.config.server == server.url and "secret" not in repr(client)
    async with client as store:
        assert sum((await store.count_rollouts()).values()) == 0


async def test_an_idle_connection_outlives_the_heartbeat_interval(server: LiveServer) -> None:
    """The server keeps an idle connection longer than the client does: with both at 5 s, a heartbeat
    every 5 s raced the server's close and failed ("Server disconnected without sending a response")."""
    from boltrl.config import RunnerConfig
    from boltrl.store.client import KEEPALIVE_EXPIRY_S

    idle_s = RunnerConfig().heartbeat_interval_s + 1
    assert idle_s < KEEPALIVE_EXPIRY_S
    limits = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S)
    async with httpx.AsyncClient(base_url=server.url, limits=limits) as http:

        async def local_port() -> int:
            response = await http.get("/healthz")
            assert response.status_code == 200
            return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])

        first = await local_port()
        await asyncio.sleep(idle_s)
        assert await local_port() == first  # the same connection: the server did not close it
