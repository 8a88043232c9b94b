"""The rag example: its data generator, retriever, answer parsing and reward, and (slow) its quick mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from examples.rag import make_data
from examples.rag.agent import Retriever, example_items, extract_answer, retriever, reward, token_f1
from tests.examples.quick_run import run_quick

DATA = Path(make_data.__file__).parent / "data"


def shipped(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines()]


def test_make_data_is_deterministic_and_matches_the_shipped_files(tmp_path: Path) -> None:
    data = make_data.generate()
    assert data == make_data.generate()
    assert {k: len(v) for k, v in data.items() if k != "corpus"} == {"train": 1000, "val": 50, "test": 200}
    for name, rows in data.items():
        assert shipped(name) == rows, f"{name}.jsonl differs from make_data.py's output: rerun it"
    assert make_data.main(["--out", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"{n}.jsonl" for n in ("corpus", "test", "train", "val")]


def test_every_question_needs_both_of_its_passages() -> None:
    passages = {p["id"]: p for p in shipped("corpus")}
    questions = [q for split in ("train", "val", "test") for q in shipped(split)]
    assert len({q["entity"] for q in questions}) == len(questions)  # a person per question
    for q in questions:
        first, second = (passages[pid] for pid in q["hops"])
        assert q["entity"] in first["text"] and q["bridge"] in first["text"]
        assert q["bridge"] in second["text"] and q["answer"] in second["text"]
        assert q["answer"] not in first["text"], q  # one passage alone does not answer it
        assert q["entity"] in q["question"] and q["answer"] not in q["question"]
        holding_both = [p for p in passages.values() if q["entity"] in p["text"] and q["answer"] in p["text"]]
        assert holding_both == [], q
    test = shipped("test")
    assert {q["type"] for q in test} == set(make_data.TEMPLATES)


def test_bm25_finds_each_hop_by_its_name() -> None:
    """The two searches the example shows (the person, then the bridge) find the two passages."""
    found_first = found_second = 0
    test = shipped("test")
    for q in test:
        first, second = q["hops"]
        found_first += first in [p["id"] for p in retriever().search(q["entity"])]
        found_second += second in [p["id"] for p in retriever().search(q["bridge"])]
    assert found_first == len(test)
    assert found_second >= 0.95 * len(test)


def test_retriever_ranks_and_ignores_stopwords() -> None:
    r = Retriever(
        [
            {"id": "a", "title": "Alpha", "text": "Alpha is a city in Norland."},
            {"id": "b", "title": "Beta", "text": "Beta was founded by Alpha Gunn."},
            {"id": "c", "title": "Gamma", "text": "Gamma lies on a river."},
        ]
    )
    assert [p["id"] for p in r.search("Alpha")] == ["a", "b"]
    assert [p["id"] for p in r.search("Gamma river", k=1)] == ["c"]
    assert r.search("the of a") == []
    assert r.search("Zeta") == []


@pytest.mark.parametrize(
    ("text", "answer", "formatted"),
    [
        ("Answer: Mirenia", "Mirenia", True),
        ("I searched twice.\nAnswer: Edra Polsin\nThanks", "Edra Polsin", True),
        ("answer :  Dunmir.", "Dunmir.", True),
        ("Answer: first\nAnswer: second", "second", True),
        ("Mirenia", "Mirenia", False),
        ("Answer:", "", False),
        ("", "", False),
    ],
)
def test_extract_answer(text: str, answer: str, formatted: bool) -> None:
    assert extract_answer(text) == (answer, formatted)


def test_reward_is_0_9_f1_plus_0_1_format() -> None:
    assert token_f1("Edra Polsin", "Edra Polsin") == 1.0
    assert token_f1("the Edra", "Edra Polsin") == pytest.approx(2 / 3)  # articles dropped: P 1, R 1/2
    assert token_f1("Dunmir", "Edra Polsin") == 0.0
    assert reward("Answer: Edra Polsin", "Edra Polsin") == pytest.approx(1.0)
    assert reward("Edra Polsin", "Edra Polsin") == pytest.approx(0.9)
    assert reward("Answer: Edra", "Edra Polsin") == pytest.approx(0.9 * 2 / 3 + 0.1)
    assert reward("Answer: Dunmir", "Edra Polsin") == pytest.approx(0.1)
    assert reward("", "Edra Polsin") == 0.0


def test_the_examples_open_with_a_solved_question_then_a_first_search() -> None:
    items = example_items()
    calls = [i for i in items if i.get("type") == "function_call"]
    outputs = {i["call_id"] for i in items if i.get("type") == "function_call_output"}
    assert [json.loads(c["arguments"])["query"] for c in calls] == ["Sela Amberlin", "Dorvik", "Tomas Ruvel"]
    assert outputs == {"call_example_1", "call_example_2"}  # the last call is the model's to finish
    assert items[-1]["type"] == "function_call" and items[0]["role"] == "user"
    assert any(i.get("content") == "Answer: Mirenia" for i in items)
    names = {p["title"] for p in shipped("corpus")}
    assert not names & {"Sela Amberlin", "Dorvik", "Tomas Ruvel", "Mirenia"}  # not from the corpus


@pytest.mark.slow
@pytest.mark.timeout(900)  # a whole train.py run; the suite's 300 s is for unit tests
def test_quick_mode_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train.py --quick` with the tiny random model: the Agents SDK through the gateway and the
    whole loop. The tiny model writes gibberish, so this checks plumbing, not learning (README.md)."""
    from examples.rag import train

    _, calls = run_quick(train, tmp_path, monkeypatch, rollouts_per_step=16)
    requests = [c["request"] for c in calls]
    assert requests and all(r["tools"][0]["function"]["name"] == "search" for r in requests)
    first = requests[0]["messages"]
    assert first[0]["role"] == "system" and "search" in first[0]["content"]
    assert any(m.get("tool_calls") for m in first)  # the worked example went through as tool calls
