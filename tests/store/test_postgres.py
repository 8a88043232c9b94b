"""What only PostgreSQL does: several servers on one database, concurrent writers on many connections.

The conformance suite already runs on the `postgres` kind; these tests need a test PostgreSQL too
(`BOLTRL_TEST_POSTGRES_URL`, started by `make test`) and skip without one.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boltrl.errors import InvalidInputError, MissingDependencyError, ServerUnavailableError
from boltrl.store import open_store
from boltrl.store.client import StoreClient
from boltrl.testing import free_port, spawn_server, wait_healthy
from boltrl.types import ROLLOUT_STATUSES, RolloutCreate, SpanCreate
from tests.store.conftest import fresh_postgres

pytestmark = pytest.mark.anyio


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


async def test_open_store_gives_a_postgres_store_that_keeps_data(pg_url: str) -> None:
    from boltrl.store.postgres import PostgresStore

    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    try:
        [r] = await store.enqueue([RolloutCreate(id="kept", input={"q": 1})])
        await store.add_spans([SpanCreate(rollout_id="kept", name="s0")])
    finally:
        await store.close()
    again = open_store(pg_url)  # a new server on the same database sees it all, seq counter included
    try:
        assert await again.get_rollout("kept") == r
        [s1] = await again.add_spans([SpanCreate(rollout_id="kept", name="s1")])
        assert s1.seq == 1
    finally:
        await again.close()


@pytest.mark.parametrize("scheme", ["postgres://", "postgresql+psycopg://"])
async def test_other_url_spellings(pg_url: str, scheme: str) -> None:
    from boltrl.store.postgres import PostgresStore

    store = open_store(pg_url.replace("postgresql://", scheme, 1))
    try:
        assert isinstance(store, PostgresStore)
        assert await store.count_rollouts() == dict.fromkeys(ROLLOUT_STATUSES, 0)
    finally:
        await store.close()


async def test_newer_schema_is_refused(pg_url: str) -> None:
    import psycopg

    open_store(pg_url)  # creates the tables (a store never used opens no pool: nothing to close)
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("UPDATE boltrl_schema SET version = version + 1")
    with pytest.raises(InvalidInputError, match="upgrade boltrl"):
        open_store(pg_url)


def test_unreachable_database_says_so_without_the_password() -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://u:s3cret@127.0.0.1:{free_port()}/db"
    with pytest.raises(ServerUnavailableError, match="cannot reach PostgreSQL") as e:
        open_store(url)
    assert "s3cret" not in str(e.value) and "u:***@" in str(e.value)


def test_missing_psycopg_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from boltrl.store import open_store\n"
        "try:\n    open_store('postgresql://u@127.0.0.1/db')\n"
        "except ImportError as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        f"{MissingDependencyError.__name__} psycopg is not installed: run pip install 'boltrl[scale]'"
    )


async def test_text_postgres_cannot_hold_is_invalid_input(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        await store.enqueue([RolloutCreate(id="r", input=1)])
        batch = [SpanCreate(rollout_id="r", name="fine"), SpanCreate(rollout_id="r", name="nul\x00byte")]
        with pytest.raises(InvalidInputError, match="cannot store"):
            await store.add_spans(batch)
        assert await store.get_spans("r") == []  # nothing of the batch was written
    finally:
        await store.close()


async def test_span_seq_is_monotonic_under_writers_on_two_stores(pg_url: str) -> None:
    a, b = open_store(pg_url), open_store(pg_url)  # two pools: as if two servers
    try:
        await a.enqueue([RolloutCreate(id="r", input=1)])

        async def writer(store: object, name: str) -> list[list[int]]:
            seqs = []
            for i in range(10):
                batch = [SpanCreate(rollout_id="r", name=f"{name}.{i}.{j}") for j in range(3)]
                seqs.append([s.seq for s in await store.add_spans(batch)])  # type: ignore[attr-defined]
            return seqs

        results = await asyncio.gather(*(writer(s, f"w{k}") for k, s in enumerate([a, b] * 4)))
        batches = [batch for seqs in results for batch in seqs]
        assert all(batch == list(range(batch[0], batch[0] + 3)) for batch in batches)  # in order, together
        stored = await a.get_spans("r")
        assert [s.seq for s in stored] == list(range(8 * 10 * 3))  # no gap, no duplicate
    finally:
        await a.close()
        await b.close()


async def test_wait_sees_a_finish_made_by_another_store(pg_url: str) -> None:
    waiter, writer = open_store(pg_url), open_store(pg_url)
    try:
        [r] = await waiter.enqueue([RolloutCreate(input=1)])
        claim = await writer.claim("w1")
        assert claim is not None

        async def finish_later() -> None:
            await asyncio.sleep(0.1)
            await writer.finish_attempt(claim.attempt.id, "succeeded")

        t0 = time.monotonic()
        done, _ = await asyncio.gather(waiter.wait([r.id], timeout_s=10), finish_later())
        assert time.monotonic() - t0 < 2
        assert [x.status for x in done] == ["succeeded"]
    finally:
        await waiter.close()
        await writer.close()


async def test_two_servers_on_one_database_share_the_queue(pg_url: str, tmp_path: Path) -> None:
    """Two `boltrl serve` processes, one database: concurrent runners on both claim every rollout once,
    and a trainer waiting on one server sees the rollouts the other server's runners finish."""
    ports = [free_port(), free_port()]
    procs = [spawn_server(pg_url, p, log_path=tmp_path / f"server{p}.log") for p in ports]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for url, proc in zip(urls, procs, strict=True):
            await asyncio.to_thread(wait_healthy, url, 60, proc)
        async with StoreClient(urls[0]) as first, StoreClient(urls[1]) as second:
            made = await first.enqueue([RolloutCreate(input=i, max_attempts=1) for i in range(120)])
            ids = [r.id for r in made]
            claimed: dict[str, list[str]] = {url: [] for url in urls}

            async def runner(client: StoreClient, url: str, worker: str) -> None:
                while (c := await client.claim(worker)) is not None:
                    claimed[url].append(c.rollout.id)
                    await client.add_spans(
                        [SpanCreate(rollout_id=c.rollout.id, attempt_id=c.attempt.id, name="s")]
                    )
                    await client.finish_attempt(c.attempt.id, "succeeded")

            runners = [
                runner(client, url, f"server{k}-w{i}")
                for i in range(4)
                for k, (client, url) in enumerate(((first, urls[0]), (second, urls[1])))
            ]
            waited, *_ = await asyncio.gather(first.wait(ids, timeout_s=60), *runners)
            every = claimed[urls[0]] + claimed[urls[1]]
            assert sorted(every) == sorted(ids)  # each exactly once
            assert claimed[urls[0]] and claimed[urls[1]], "one server claimed everything: test proves little"
            assert [r.id for r in waited] == ids and {r.status for r in waited} == {"succeeded"}
            assert (await second.count_rollouts())["succeeded"] == 120
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
