"""A headless Debian chromium driven by selenium, and live servers with real rollouts in them.

`make test` installs chromium first (`make browser`); without it these tests skip, saying so.
Screenshots go to artifacts/ui/ (gitignored), for a person to look at after a run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from boltrl.config import ServerConfig
from boltrl.store.sqlite import SQLiteStore
from boltrl.testing import LiveServer, live_server
from tests.ui.seed import ScriptedBackend, Seeded, seed

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "ui"
TOKEN = "ui-test-token"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            "chromium or chromedriver is missing: run 'make browser' (Debian chromium, chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    profile = tempfile.mkdtemp(prefix="boltrl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _server(tmp: Path, token: str | None) -> Iterator[tuple[LiveServer, Seeded]]:
    config = ServerConfig(db=str(tmp / "boltrl.db"), token=token)
    with live_server(
        lambda: SQLiteStore(str(tmp / "boltrl.db")), config, backend=ScriptedBackend()
    ) as server:
        yield server, seed(server.url, token)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Seeded]]:
    yield from _server(tmp_path_factory.mktemp("ui"), None)


@pytest.fixture(scope="module")
def seeded_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Seeded]]:
    yield from _server(tmp_path_factory.mktemp("ui-auth"), TOKEN)
