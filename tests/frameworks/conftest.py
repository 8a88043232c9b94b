"""Fixtures for "zero code change, proven": real agent frameworks against the real gateway, on the
real HF backend (tiny random model) or, for tool-call round trips, `fw_harness.ScriptedBackend`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fw_harness import Harness, ScriptedBackend

from boltrl.testing import live_server


@pytest.fixture(scope="session")
def scripted(tiny_dir: Path) -> Iterator[Harness]:
    """A live server whose gateway answers from `ScriptedBackend`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    with live_server(backend=lambda: ScriptedBackend(tokenizer)) as s:
        harness = Harness(s)
        yield harness
        harness.http.close()


@pytest.fixture(scope="session")
def hf(tiny_dir: Path) -> Iterator[Harness]:
    """A live server whose gateway answers from the real HF backend on the tiny random model."""
    from boltrl.inference.hf import HFBackend

    with live_server(backend=lambda: HFBackend(tiny_dir, served_name="tiny-random")) as s:
        harness = Harness(s)
        yield harness
        harness.http.close()
