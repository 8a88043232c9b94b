"""`open_store(url)`: every spelling of `--db` opens the store it names, or says why not."""

from __future__ import annotations

from pathlib import Path

import pytest

import boltrl.store
from boltrl.errors import InvalidInputError
from boltrl.store import MemoryStore, SQLiteStore, Store, open_store
from boltrl.types import RolloutCreate

pytestmark = pytest.mark.anyio


def test_all_is_sorted() -> None:
    assert boltrl.store.__all__ == sorted(boltrl.store.__all__)
    assert {"MemoryStore", "SQLiteStore", "Store", "open_store"} <= set(boltrl.store.__all__)


@pytest.mark.parametrize("url", ["memory", "memory://", ":memory:"])
async def test_memory(url: str) -> None:
    store = open_store(url)
    assert isinstance(store, MemoryStore) and isinstance(store, Store)
    await store.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("{tmp}/a/b/plain.db", "{tmp}/a/b/plain.db"),
        ("sqlite:///rel/dir/x.db", "{cwd}/rel/dir/x.db"),
        ("sqlite:///{tmp}/abs.db", "{tmp}/abs.db"),  # four slashes: absolute
        ("sqlite://two.db", "{cwd}/two.db"),
        ("relative.db", "{cwd}/relative.db"),
    ],
)
async def test_sqlite_urls_create_parent_folders(
    url: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    store = open_store(url.format(tmp=tmp_path))
    try:
        assert isinstance(store, SQLiteStore)
        await store.enqueue([RolloutCreate(input=1)])
        assert Path(expected.format(tmp=tmp_path, cwd=cwd)).is_file()
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost", "'redis://localhost' is not understood"),
        ("", "is not understood"),
        ("sqlite://", "names no file"),
    ],
)
def test_bad_urls_say_what_to_use(url: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        open_store(url)
