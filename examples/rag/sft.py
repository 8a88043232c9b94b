"""Warm start for the rag agent: demonstrations of the two-search solution, then supervised fine-tuning.

SmolLM2-135M searches for the person and then answers with what it found (the bridge, a city or a
company), never searching a second time: in 56 sampled rollouts at temperature 0.7 not one made a
second search, so RL alone had no reward above the 0.1 for the format to learn from (README.md).
This script writes demonstrations of the full solution for training questions (search the person,
search the bridge the passage names, answer) as the OpenAI Agents SDK would send them to the model,
and fine-tunes on them with `boltrl sft`. `train.py --model runs/rag-sft/model` then runs RL on top.

    python examples/rag/sft.py                       # writes runs/rag-sft/demos.jsonl, then fine-tunes
    python examples/rag/sft.py --demos-only          # only the demonstrations
    boltrl sft runs/rag-sft/demos.jsonl --output-dir runs/rag-sft   # the same fine-tuning, by hand
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # `python examples/rag/sft.py` from a checkout

from agents.models.chatcmpl_converter import Converter  # noqa: E402

from examples.common import read_jsonl  # noqa: E402
from examples.rag.agent import INSTRUCTIONS, example_items, retriever, search  # noqa: E402

N_DEMOS = 48
"""Training questions demonstrated (the first ones of the train split whose two searches find both
passages). Few on purpose: a warm start that makes the second search likely, not a solved task, and
cheap on a CPU (each target is a ~600-token prompt)."""


def _call(call_id: str, query: str) -> dict[str, Any]:
    arguments = json.dumps({"query": query})
    return {"type": "function_call", "call_id": call_id, "name": "search", "arguments": arguments}


def _found(query: str) -> str:
    """What the agent's `search` tool returns for `query`."""
    found = retriever().search(query)
    return "\n".join(p["text"] for p in found) if found else "No passage found."


def demonstration(task: dict[str, Any]) -> dict[str, Any] | None:
    """The conversation the model would see solving `task` with two searches, in the chat format the
    Agents SDK sends (system instructions, the worked examples, then the question). The targets are
    the second search and the answer, what the model does not do; its first search, which it already
    makes (32 of 32 greedy), stays context. None when a search would not find its passage."""
    passages = {p["id"]: p["text"] for p in retriever().passages}
    first, second = (passages[pid] for pid in task["hops"])
    found_first, found_second = _found(task["entity"]), _found(task["bridge"])
    if first not in found_first or second not in found_second:
        return None
    context = [*example_items(), {"role": "user", "content": task["question"]}]
    solution = [
        _call("call_demo_1", task["entity"]),
        {"type": "function_call_output", "call_id": "call_demo_1", "output": found_first},
        _call("call_demo_2", task["bridge"]),
        {"type": "function_call_output", "call_id": "call_demo_2", "output": found_second},
        {"role": "assistant", "content": f"Answer: {task['answer']}"},
    ]
    system = {"role": "system", "content": INSTRUCTIONS}
    shown = Converter.items_to_messages(context)  # type: ignore[arg-type]
    messages: list[dict[str, Any]] = [system]
    messages += [{**m, "weight": 0} if m["role"] == "assistant" else dict(m) for m in shown]
    solved = [dict(m) for m in Converter.items_to_messages(solution)]  # type: ignore[arg-type]
    solved[0]["weight"] = 0  # the first search
    messages += solved
    return {"messages": messages, "tools": [Converter.tool_to_openai(search)]}


def demonstrations(n: int = N_DEMOS) -> list[dict[str, Any]]:
    out = []
    for task in read_jsonl(HERE / "data" / "train.jsonl"):
        demo = demonstration(task)
        if demo is not None:
            out.append(demo)
        if len(out) == n:
            break
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Demonstrate the rag task, then fine-tune on it.")
    parser.add_argument("--model", default="smollm2-135m", help="registry name or checkpoint directory")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/rag-sft"))
    parser.add_argument("--n", type=int, default=N_DEMOS, help="questions demonstrated")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--demos-only", action="store_true", help="write the demonstrations and stop")
    args = parser.parse_args(argv)

    args.output_dir.mkdir(parents=True, exist_ok=True)
    demos = demonstrations(args.n)
    path = args.output_dir / "demos.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in demos))
    print(f"rag sft: {len(demos)} demonstrations in {path}")
    if args.demos_only:
        return 0
    from boltrl.training.sft import SFTConfig, fit_sft

    config = SFTConfig(
        model=args.model, output_dir=str(args.output_dir), epochs=args.epochs, lr=args.lr, batch_size=16
    )
    print(f"rag sft: fine-tuned model in {fit_sft(demos, config)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
