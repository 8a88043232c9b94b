"""Fixtures for the inference tests: the tiny random model, prepared once per session, offline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


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
