"""The rag agent: an OpenAI Agents SDK `Agent` that answers 2-hop questions with a `search` tool.

Written as the Agents SDK's documentation writes an agent on a custom OpenAI-compatible provider
(`OpenAIChatCompletionsModel` over an `AsyncOpenAI` client). The tool searches the shipped corpus
with BM25 (`rank_bm25`). The only boltrl parts are `@boltrl.rollout`, the `llm` fields the client is
built from, and the reward, the paper's for MuSiQue: 0.9 x token F1 of the answer + 0.1 x format.

A small model needs to see a tool call before it makes one (docs/models.md), so the conversation
starts with examples: one question solved with two searches, and one more question with its first
search call (`example_items`).
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any

from agents import (
    Agent,
    MaxTurnsExceeded,
    ModelBehaviorError,
    ModelSettings,
    OpenAIChatCompletionsModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from rank_bm25 import BM25Okapi

import boltrl

set_tracing_disabled(True)  # the SDK would otherwise export its traces to OpenAI

CORPUS = Path(__file__).resolve().parent / "data" / "corpus.jsonl"
TOP_K = 2  # passages per search: enough for a good query, short enough for a 135M model's prompt
MAX_TURNS = 4  # model calls per question: two searches, the answer, one spare

INSTRUCTIONS = (
    "Answer the question with the search tool. Search for the person in the question, then search "
    "for the city or company in the passage you find. Then reply with 'Answer: <name>'."
)


# ---------------------------------------------------------------------------------- the retriever


STOPWORDS = frozenset(
    {"a", "an", "and", "as", "at", "by", "did", "does", "for", "from", "in", "is", "it", "its", "of", "on"}
    | {"or", "that", "the", "to", "was", "what", "where", "which", "who", "whom", "whose", "with"}
)


def tokenize(text: str) -> list[str]:
    """Lowercased words but stopwords: what BM25 indexes and what a query is matched with."""
    return [w for w in re.findall(r"\w+", text.lower()) if w not in STOPWORDS]


class Retriever:
    """BM25 (Okapi) over passages `{id, title, text}`; the title is indexed with the text."""

    def __init__(self, passages: list[dict[str, str]]) -> None:
        self.passages = passages
        self.bm25 = BM25Okapi([tokenize(f"{p['title']} {p['text']}") for p in passages])

    def search(self, query: str, k: int = TOP_K) -> list[dict[str, str]]:
        """The `k` best passages for `query`, best first; none for a query with no indexed word."""
        words = tokenize(query)
        if not words:
            return []
        scores = self.bm25.get_scores(words)
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return [self.passages[i] for i in ranked[:k] if scores[i] > 0]


@functools.cache
def retriever() -> Retriever:
    passages = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    return Retriever(passages)


@function_tool
def search(query: str) -> str:
    """Search the passages for a person, city or company and return the best matches."""
    found = retriever().search(query)
    return "\n".join(p["text"] for p in found) if found else "No passage found."


# ---------------------------------------------------------------------------------- the reward


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    """Token-level F1 between normalised prediction and gold answer (SQuAD, MuSiQue)."""
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


_ANSWER = re.compile(r"answer\s*:\s*", re.IGNORECASE)


def extract_answer(text: str) -> tuple[str, bool]:
    """The answer in a final message and whether it was given in the asked format.

    The format is one line `Answer: <something>`; the answer is what follows the last `Answer:`
    (its first line), else the whole message.
    """
    marks = list(_ANSWER.finditer(text))
    if not marks:
        return text.strip(), False
    answer = text[marks[-1].end() :].strip().split("\n")[0].strip()
    return answer, bool(answer)


def reward(final: str, gold: str) -> float:
    """0.9 x token F1 of the answer + 0.1 x format, as the paper's MuSiQue task."""
    answer, formatted = extract_answer(final)
    return 0.9 * token_f1(answer, gold) + 0.1 * float(formatted)


# ---------------------------------------------------------------------------------- the agent

EXAMPLE_QUESTION = "In which country was Sela Amberlin born?"
EXAMPLE_PASSAGES = [
    "Sela Amberlin was born in Dorvik. Amberlin works for Halvo Press as a baker.",
    "Dorvik is a city in Mirenia. Dorvik lies on the Tesk river and is known for its markets.",
]
NEXT_QUESTION = "Who founded the company that Tomas Ruvel works for?"


def _call(call_id: str, query: str) -> dict[str, Any]:
    arguments = json.dumps({"query": query})
    return {"type": "function_call", "call_id": call_id, "name": "search", "arguments": arguments}


def _output(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def example_items() -> list[dict[str, Any]]:
    """Two example questions to open the conversation (Responses-API input items, as the SDK takes).

    The first is solved in full: search the person, search the city, answer. The second shows only
    its first search call, so the real question comes right after a question-then-call pattern.
    Measured greedy on 32 test questions with SmolLM2-135M: with only a question and its first call
    (as the calc example opens) the model searched first 32 times but then echoed the tool result
    (`<tool_response>...`) every time (reward 0); with only the full solved example it called the tool
    4 times in 32; with both, as here, it searched first 32 times and then answered in the asked format
    32 times, but after one search (reward 0.075: the format, rarely the answer).
    """
    return [
        {"role": "user", "content": EXAMPLE_QUESTION},
        _call("call_example_1", "Sela Amberlin"),
        _output("call_example_1", EXAMPLE_PASSAGES[0]),
        _call("call_example_2", "Dorvik"),
        _output("call_example_2", EXAMPLE_PASSAGES[1]),
        {"role": "assistant", "content": "Answer: Mirenia"},
        {"role": "user", "content": NEXT_QUESTION},
        _call("call_example_3", "Tomas Ruvel"),
    ]


@boltrl.rollout
async def agent(task: dict[str, Any], llm: boltrl.LLM) -> float:
    client = AsyncOpenAI(base_url=llm.base_url, api_key=llm.api_key)
    settings = ModelSettings(
        temperature=llm.sampling.get("temperature"), max_tokens=llm.sampling.get("max_tokens")
    )
    rag = Agent(
        name="rag",
        instructions=INSTRUCTIONS,
        tools=[search],
        model=OpenAIChatCompletionsModel(model=llm.model, openai_client=client),
        model_settings=settings,
    )
    question = {"role": "user", "content": task["question"]}
    try:
        result = await Runner.run(rag, [*example_items(), question], max_turns=MAX_TURNS)  # type: ignore[list-item]
        final = str(result.final_output)
    except MaxTurnsExceeded:
        final = ""  # still searching after MAX_TURNS calls: no answer
    except ModelBehaviorError:
        final = ""  # called a tool that does not exist (seen once in 200 after SFT): no answer
    finally:
        await client.close()
    return reward(final, str(task["answer"]))
