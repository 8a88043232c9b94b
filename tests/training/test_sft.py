"""Supervised warm start on the tiny random model: demonstrations become exactly the gateway's prompt
and the tokens the backend parses back into a tool call, and fine-tuning teaches the model to make it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from boltrl.cli import main
from boltrl.errors import InvalidInputError
from boltrl.inference.hf import HFBackend
from boltrl.training.sft import SFTConfig, assistant_text, fit_sft, read_conversations, sft_samples

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the passages.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    }
]
CALL = {"id": "c1", "type": "function", "function": {"name": "search", "arguments": '{"query": "Dorvik"}'}}
DEMO: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Answer with the search tool."},
        {"role": "user", "content": "Where is Sela?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL], "weight": 0},  # a worked example
        {"role": "tool", "tool_call_id": "c1", "content": "Sela lives in Dorvik."},
        {"role": "assistant", "content": "Answer: Dorvik", "weight": 0},
        {"role": "user", "content": "Where is Tomas?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "Dorvik is in Mirenia."},
        {"role": "assistant", "content": "Answer: Mirenia"},
    ],
    "tools": TOOLS,
}


def chat(backend: HFBackend, body: dict[str, Any]) -> Any:
    return asyncio.run(backend.chat({"max_tokens": 40, "temperature": 0, **body}))


def test_samples_are_the_gateways_prompt_and_the_parsed_format(tiny_dir: Path) -> None:
    backend = HFBackend(tiny_dir)
    try:
        samples = sft_samples(backend.tokenizer, [DEMO])
        assert len(samples) == 2  # the weight-0 example turns are context only
        for sample, i in zip(samples, (6, 8), strict=True):
            context = [{k: v for k, v in m.items() if k != "weight"} for m in DEMO["messages"][:i]]
            assert sample.prompt_ids == chat(backend, {"messages": context, "tools": TOOLS}).prompt_ids
            assert sample.response_ids[-1] == backend.tokenizer.eos_token_id
            text = backend.tokenizer.decode(sample.response_ids[:-1])
            assert text == assistant_text(DEMO["messages"][i])
            assert sample.response_mask == [1] * len(sample.response_ids)
    finally:
        asyncio.run(backend.close())
    assert (
        assistant_text(DEMO["messages"][6])
        == '<tool_call>{"name": "search", "arguments": {"query": "Dorvik"}}</tool_call>'
    )


def test_fine_tuning_teaches_the_demonstrated_tool_call(tiny_dir: Path, tmp_path: Path) -> None:
    """After SFT on one demonstration, the model served by the gateway's backend makes that call, and
    the backend hands it to the agent as an OpenAI tool call."""
    demo = {"messages": DEMO["messages"][:7], "tools": TOOLS}
    config = SFTConfig(
        model=str(tiny_dir), output_dir=str(tmp_path / "sft"), epochs=60, batch_size=1, lr=3e-3
    )
    path = fit_sft([demo], config)
    assert path == tmp_path / "sft" / "model"
    rows = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and rows[-1]["train/nll"] < 0.1 * rows[0]["train/nll"]
    context = [{k: v for k, v in m.items() if k != "weight"} for m in demo["messages"][:6]]
    backend = HFBackend(path)
    try:
        message = chat(backend, {"messages": context, "tools": TOOLS}).response["choices"][0]["message"]
    finally:
        asyncio.run(backend.close())
    [call] = message["tool_calls"]
    assert call["function"]["name"] == "search"
    assert json.loads(call["function"]["arguments"]) == {"query": "Dorvik"}


def test_the_cli_fine_tunes_from_a_jsonl_file(tiny_dir: Path, tmp_path: Path, capsys: Any) -> None:
    data = tmp_path / "demos.jsonl"
    data.write_text(json.dumps(DEMO) + "\n\n" + json.dumps(DEMO) + "\n")
    out = tmp_path / "run"
    argv = ["sft", str(data), "--model", str(tiny_dir), "--output-dir", str(out), "--batch-size", "2"]
    assert main(argv) == 0
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "config.json").is_file()
    assert f"fine-tuned model in {out / 'model'}" in capsys.readouterr().out
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # 4 targets, 2 per step


def test_bad_demonstrations_name_what_to_fix(tiny_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(DEMO) + "\n{not json\n")
    with pytest.raises(InvalidInputError, match=r"bad.jsonl:2: not JSON"):
        read_conversations(data)
    data.write_text('{"prompt": "x"}\n')
    with pytest.raises(InvalidInputError, match=r"bad.jsonl:1: .*'messages' list"):
        read_conversations(data)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    with pytest.raises(InvalidInputError, match="no assistant message"):
        sft_samples(tokenizer, [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(InvalidInputError, match="needs messages before it"):
        sft_samples(tokenizer, [{"messages": [{"role": "assistant", "content": "hi"}]}])
    with pytest.raises(InvalidInputError, match="epochs"):
        fit_sft([DEMO], SFTConfig(model=str(tiny_dir), epochs=0))
