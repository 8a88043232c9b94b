"""`boltrl dump` / `boltrl replay` and `boltrl.dump`: a round trip keeps ids, statuses, attempts and
spans; replaying twice changes nothing; filters, gzip, pagination, and a clear error on a bad line."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from boltrl.cli import main
from boltrl.config import ServerConfig
from boltrl.dump import dump, read_dump
from boltrl.store.memory import MemoryStore
from boltrl.store.sqlite import SQLiteStore
from boltrl.testing import LiveServer, live_server
from boltrl.types import MODEL_CALL_SPAN, REWARD_SPAN
from tests.ui.seed import ScriptedBackend, Seeded, seed

TOKEN = "dump-token"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Seeded]]:
    db = tmp_path_factory.mktemp("dump") / "boltrl.db"
    config = ServerConfig(db=str(db), token=TOKEN)
    with live_server(lambda: SQLiteStore(str(db)), config, backend=ScriptedBackend()) as server:
        yield server, seed(server.url, TOKEN)


def cli(*argv: str) -> int:
    return main(list(argv))


async def snapshot(store: object) -> list[tuple[object, ...]]:
    """Everything a dump should carry, per rollout, in queue order."""
    from boltrl.store.base import Store

    assert isinstance(store, Store)
    out = []
    for r in (await store.list_rollouts(limit=1000)).rollouts:
        out.append((r, await store.list_attempts(r.id), await store.get_spans(r.id)))
    await store.close()
    return out


def test_round_trip_through_a_file_is_exact_and_replay_is_idempotent(
    seeded: tuple[LiveServer, Seeded], tmp_path: Path
) -> None:
    server, s = seeded
    out = tmp_path / "runs.jsonl"
    assert cli("dump", "--out", str(out), "--server", server.url, "--token", TOKEN) == 0
    records = list(read_dump(out))
    assert [r.id for r, _, _ in records] == [s.solved, s.failed, s.running, *s.queued]
    rollout, attempts, spans = records[0]
    assert rollout.status == "succeeded" and [a.status for a in attempts] == ["failed", "succeeded"]
    assert [sp.name for sp in spans] == [MODEL_CALL_SPAN, MODEL_CALL_SPAN, REWARD_SPAN]
    assert spans[1].attributes["response"]["choices"][0]["message"]["content"] == "The answer is 391."

    target = tmp_path / "replayed.db"
    assert cli("replay", str(out), "--db", str(target)) == 0
    assert cli("replay", str(out), "--db", str(target)) == 0  # again: nothing changes
    original = asyncio.run(snapshot(SQLiteStore(server.config.db)))
    assert asyncio.run(snapshot(SQLiteStore(str(target)))) == original


def test_replay_into_a_server_and_filters(seeded: tuple[LiveServer, Seeded], tmp_path: Path) -> None:
    server, s = seeded
    out = tmp_path / "done.jsonl.gz"
    assert (
        cli("dump", "--out", str(out), "--status", "succeeded", "--server", server.url, "--token", TOKEN) == 0
    )
    with gzip.open(out, "rt") as f:
        assert [json.loads(line)["rollout"]["id"] for line in f] == [s.solved]
    assert cli("dump", "--out", str(tmp_path / "val.jsonl"), "--mode", "val", "--db", server.config.db) == 0
    assert [r.id for r, _, _ in read_dump(tmp_path / "val.jsonl")] == [s.running]

    with live_server() as fresh:
        assert cli("replay", str(out), "--server", fresh.url) == 0
        rollout = fresh.call(fresh.store.get_rollout(s.solved))
        assert rollout.status == "succeeded" and rollout.attempt_count == 2
        assert len(fresh.call(fresh.store.get_spans(s.solved))) == 3
        assert fresh.call(fresh.store.claim("w")) is None  # a finished rollout is not run again


def test_dump_pages_through_the_store(tmp_path: Path) -> None:
    async def go() -> list[int]:
        from boltrl.types import RolloutCreate

        store = MemoryStore()
        await store.enqueue([RolloutCreate(input=i) for i in range(7)])
        pages: list[int] = []
        assert await dump(store, tmp_path / "d.jsonl", page_size=3, progress=pages.append) == 7
        return pages

    assert asyncio.run(go()) == [3, 3, 1]
    assert [r.input for r, _, _ in read_dump(tmp_path / "d.jsonl")] == list(range(7))


def test_a_bad_line_names_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"rollout": {"id": "x", "input": 1, "created_at": 1.0}}\n{"rollout": {"id": "y"}}\n')
    assert cli("replay", str(bad), "--db", str(tmp_path / "t.db")) == 2
    assert f"{bad}:2: not a boltrl dump record: rollout.input: Field required" in capsys.readouterr().err
