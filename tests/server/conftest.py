"""Fixtures for the server tests: a live server on loopback and an HTTP client to it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

# Before anything imports boltrl: the repository root, for `tests.server.helpers` and so that `boltrl`
# is this checkout's package whatever the state of the editable install.
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from boltrl.testing import LiveServer


@pytest.fixture
def server() -> Iterator[LiveServer]:
    from boltrl.testing import live_server

    with live_server() as s:
        yield s


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
