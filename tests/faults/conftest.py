"""Fixtures for the fault tests: strict telemetry, and subprocesses that never outlive a test."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Runner subprocesses import `tests.faults.fault_agents` from the repository root; so do these tests.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def strict_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOLTRL_STRICT", "1")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Subprocesses a test starts; whatever is still running at the end is killed."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
