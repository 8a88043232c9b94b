"""The curated public API: `__all__` is sorted, every name resolves, and no heavy import sneaks in."""

from __future__ import annotations

import subprocess
import sys

import boltrl


def test_all_is_sorted_and_every_name_resolves() -> None:
    # isort order, as ruff keeps it: CONSTANTS, then Classes, then functions, each alphabetical
    def kind(name: str) -> int:
        return 0 if name.isupper() else 1 if name[0].isupper() else 2

    assert boltrl.__all__ == sorted(boltrl.__all__, key=lambda n: (kind(n), n))
    for name in boltrl.__all__:
        assert getattr(boltrl, name) is not None, name


def test_agent_api_server_store_and_runner_import_no_torch() -> None:
    code = (
        "import sys, boltrl, boltrl.server.app, boltrl.store, boltrl.store.client, boltrl.runner;"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
