"""Shared fixtures: the anyio backend, and the tiny random model in a per-session cache, offline."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for the hub from tests
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
    """The prepared `tiny-random` checkpoint directory."""
    from boltrl import models

    return models.prepare("tiny-random")
