"""Trainer.fit end to end on CPU with the tiny random model: the real server, gateway, HF backend,
runner, adapter, LightningRL and policy update, in one process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import boltrl
from boltrl.cli import main
from boltrl.errors import InvalidInputError
from boltrl.store.sqlite import SQLiteStore
from boltrl.training.trainer import run_name
from boltrl.types import MODEL_CALL_SPAN, ModelCall
from tests.trainer.trainer_agents import brevity

TRAIN = [{"q": f"question {i}"} for i in range(12)]
VAL = [{"q": "val a"}, {"q": "val b"}]


@pytest.fixture(autouse=True)
def _tiny(tiny_dir: Path) -> None:
    """Every test here trains `tiny-random`, prepared once in the session's cache."""


def fit(out: Path, max_steps: int) -> boltrl.Trainer:
    return boltrl.Trainer(
        "tiny-random",
        boltrl.LightningRL(group_size=4, lr=1e-3),
        n_runners=8,
        batch_size=3,
        max_steps=max_steps,
        output_dir=str(out),
        max_tokens=12,
        val_every=2,
        save_every=1,
    )


def test_fit_records_rewards_trains_every_parameter_and_serves_new_weights(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from boltrl import models

    initial, _ = models.load("tiny-random")
    result = fit(tmp_path, 2).fit(brevity, TRAIN, VAL)

    steps = [row for row in result.history if "rollout/n" in row]
    assert [row["step"] for row in steps] == [1, 2]
    for row in steps:
        assert row["rollout/succeeded"] == 12 and row["rollout/failed"] == 0
        assert 0.0 <= row["rollout/reward_mean"] <= 1.0
        if "train/loss" in row:
            assert math.isfinite(row["train/loss"]) and row["train/grad_norm"] > 0
    assert result.first("val/reward_mean") is not None and result.last("val/reward_mean") is not None
    assert result.weights_version >= 1
    assert (tmp_path / "metrics.jsonl").is_file() and (tmp_path / "curves.png").is_file()

    # every trainable tensor moved away from the initial weights
    assert result.checkpoint is not None
    trained = load_file(str(result.checkpoint / "weights.safetensors"))
    before = initial.state_dict()
    unchanged = [k for k, v in trained.items() if torch.equal(v, before[k])]
    assert trained and unchanged == []

    # the second step's rollouts were served by the weights the first step published
    import asyncio

    async def versions() -> set[int | None]:
        store = SQLiteStore(str(tmp_path / "boltrl.db"))
        try:
            page = await store.list_rollouts(mode="train", limit=1000)
            second = [r for r in page.rollouts if r.metadata.get("step") == 1]
            spans = [s for r in second for s in await store.get_spans(r.id) if s.name == MODEL_CALL_SPAN]
            return {ModelCall.model_validate(s.attributes).weights_version for s in spans}
        finally:
            await store.close()

    assert asyncio.run(versions()) == {1}

    async def posted() -> list[dict[str, object]]:  # the dashboard's curves come from the store
        store = SQLiteStore(str(tmp_path / "boltrl.db"))
        try:
            return await store.get_run_metrics(run_name(tmp_path))
        finally:
            await store.close()

    rows = asyncio.run(posted())
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert "val/reward_mean" in rows[2] and "rollout/reward_mean" in rows[2]  # val merged into the step


def test_fit_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    fit(tmp_path, 1).fit(brevity, TRAIN)
    result = fit(tmp_path, 2).fit(brevity, TRAIN)
    steps = [row["step"] for row in result.history if "rollout/n" in row]
    assert steps == [1, 2]  # step 1 from the first run, step 2 after the resume
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "rollout/n" in r] == [1, 2]


def test_train_cli_runs_a_yaml_config(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(t) + "\n" for t in TRAIN[:4]))
    config = tmp_path / "run.yaml"
    config.write_text(
        "agent: tests.trainer.trainer_agents:brevity\n"
        f"train_data: {data}\n"
        "trainer: {model: tiny-random, batch_size: 2, max_steps: 1, n_runners: 4, max_tokens: 8}\n"
        "algorithm: {group_size: 2, lr: 0.001}\n"
    )
    out = tmp_path / "run"
    assert main(["train", str(config), "--output-dir", str(out), "--set", "trainer.val_every=0"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 1 and rows[-1]["rollout/n"] == 4


def test_bad_options_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="batchsize"):
        boltrl.Trainer("tiny-random", batchsize=3)
    config = tmp_path / "bad.yaml"
    config.write_text("agent: x:y\ntrain_data: t.jsonl\nalgorithm: {group_sise: 2}\n")
    assert main(["train", str(config)]) == 2


def test_offline_training_from_a_dump_of_recorded_rollouts(tmp_path: Path) -> None:
    """Record a run, dump it, and train a fresh policy from the dump with no agents running."""
    fit(tmp_path / "online", 1).fit(brevity, TRAIN)
    dump = tmp_path / "runs.jsonl"
    db = str(tmp_path / "online" / "boltrl.db")
    assert main(["dump", "--db", db, "--out", str(dump), "--mode", "train", "--status", "succeeded"]) == 0
    out = tmp_path / "offline"
    args = ["train", "--offline", str(dump), "--model", "tiny-random", "--output-dir", str(out)]
    assert main([*args, "--set", "trainer.batch_size=2", "--set", "algorithm.group_size=4"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # 3 recorded groups, 2 per step
    assert all(math.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
    assert any("train/loss" in r for r in rows)
    assert list((out / "checkpoints").iterdir())
