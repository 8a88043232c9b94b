"""What every example's slow quick-mode test does: `train.py --quick` with the tiny random model, then
the checks every run must pass (steps, validations, curves); the test checks what is its own."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def run_quick(
    train: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rollouts_per_step: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run `train.main` in quick mode on 8 test items; return the training step rows of
    `metrics.jsonl` and the attributes of every recorded model call."""
    monkeypatch.setenv("BOLTRL_CACHE", os.environ.get("BOLTRL_TEST_CACHE") or str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    argv = ["--quick", "--model", "tiny-random", "--test-size", "8", "--max-tokens", "16"]
    assert train.main([*argv, "--output-dir", str(out)]) == 0

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "rollout/n" in r]
    vals = [r for r in rows if "val/reward_mean" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["rollout/n"] == rollouts_per_step == r["rollout/succeeded"] for r in steps)
    assert [r["step"] for r in vals] == [0, 3] and all(r["val/n"] == 8 for r in vals)
    assert (out / "curves.png").is_file()

    db = sqlite3.connect(out / "boltrl.db")
    try:
        found = db.execute("SELECT attributes FROM spans WHERE name = 'boltrl.model_call' ORDER BY rowid")
        calls = [json.loads(a) for (a,) in found]
    finally:
        db.close()
    return steps, calls
