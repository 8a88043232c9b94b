"""Fixtures for the inference tests: the tiny random model, prepared once per session, offline."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for the hub from tests
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh BOLTRL_CACHE for the session (the tiny model builds in about a second)."""
    old = os.environ.get("BOLTRL_CACHE")
    path = tmp_path_factory.mktemp("models")
    os.environ["BOLTRL_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("BOLTRL_CACHE", None)
    else:
        os.environ["BOLTRL_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_dir(model_cache: Path) -> Path:
    from boltrl import models

    return models.prepare("tiny-random")


@pytest.fixture
def make_backend(tiny_dir: Path) -> Iterator[Callable[..., Any]]:
    """Build a private tiny backend (closed at teardown), for tests that change it."""
    from boltrl.inference.hf import HFBackend

    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        made.append(HFBackend(tiny_dir, served_name="tiny-random", **kwargs))
        return made[-1]

    yield make
    for b in made:
        asyncio.run(b.close())


@pytest.fixture(scope="session")
def backend(tiny_dir: Path) -> Iterator[Any]:
    """One backend shared by the tests that leave it as it is."""
    from boltrl.inference.hf import HFBackend

    b = HFBackend(tiny_dir, served_name="tiny-random")
    yield b
    asyncio.run(b.close())
