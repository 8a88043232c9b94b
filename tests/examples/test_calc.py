"""The calc example: its data generator, calculator tool and reward, and (slow) its quick mode."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from examples.calc import make_data
from examples.calc.agent import calculator, evaluate, example_messages, parse_answer, reward
from tests.examples.quick_run import run_quick

DATA = Path(make_data.__file__).parent / "data"

# Each question shape, with the answer computed from the numbers in its text (not by the generator).
SHAPES: list[tuple[str, object]] = [
    (r"A shop has (\d+) \w+ with (\d+) \w+ in each", lambda a, b: a * b),
    (r"walked (\d+) meters in the morning and (\d+) meters", lambda a, b: a + b),
    (r"holds (\d+) liters of water\. (\d+) liters are used", lambda a, b: a - b),
    (r"shares (\d+) stickers equally among (\d+) friends", lambda a, b: a // b if a % b == 0 else None),
    (r"has (\d+) cards and buys (\d+) packs of (\d+) cards", lambda a, b, c: a + b * c),
    (r"packs (\d+) crates of (\d+) apples and sells (\d+) apples", lambda a, b, c: a * b - c),
    (r"drives (\d+) km per hour for (\d+) hours and then (\d+) km more", lambda a, b, c: a * b + c),
]


def expected(question: str) -> int:
    for pattern, fn in SHAPES:
        m = re.search(pattern, question)
        if m:
            return fn(*map(int, m.groups()))  # type: ignore[operator, no-any-return]
    raise AssertionError(f"unknown question shape: {question}")


def test_make_data_is_deterministic_disjoint_and_matches_the_shipped_files() -> None:
    splits = make_data.generate()
    assert splits == make_data.generate()
    assert {k: len(v) for k, v in splits.items()} == {"train": 1000, "val": 50, "test": 200}
    questions = [row["question"] for rows in splits.values() for row in rows]
    assert len(questions) == len(set(questions))  # unique within and across splits
    for name, rows in splits.items():
        shipped = [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines()]
        assert shipped == rows, f"{name}.jsonl differs from make_data.py's output: rerun it"


def test_every_answer_is_right() -> None:
    for rows in make_data.generate().values():
        for row in rows:
            question, answer = str(row["question"]), row["answer"]
            assert isinstance(answer, int) and answer > 0
            assert expected(question) == answer, question


def test_every_question_shape_occurs_in_the_test_split() -> None:
    test = make_data.generate()["test"]
    for pattern, _ in SHAPES:
        assert any(re.search(pattern, str(row["question"])) for row in test), pattern


def test_make_data_writes_the_splits(tmp_path: Path) -> None:
    assert make_data.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.jsonl", "train.jsonl", "val.jsonl"]


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("37 * 24", 888),
        ("185 + 7 * 21", 332),
        ("(83*12)+31", 1027),
        ("1,234 + 1", 1235),
        ("-5 + 2", -3),
        ("912 / 24", 38),
        ("7 // 2", 3),
        ("17 % 5", 2),
        ("2 ** 10", 1024),
        ("3 \u00d7 4", 12),
        ("1.5 * 4", 6),
    ],
)
def test_calculator_computes_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == value
    assert asyncio.run(calculator(expression)) == str(value)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",  # a call
        "x + 1",  # a name
        "(1).real",  # an attribute
        "[1, 2]",
        "'a' * 3",  # a string constant
        "True + 1",  # bools are not numbers here
        "1 if 1 else 2",
        "9 ** 9 ** 9",  # exponent too large
        "2 ** 1000",
        "10 ** 29 * 100",  # result too large
        "1e308 * 10",  # not finite
        "(-8) ** 0.5",  # complex
        "1 / 0",
        "12 * 12 = 144",  # not an expression
        "1 + " * 100 + "1",  # too long
    ],
)
def test_calculator_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(ValueError):
        evaluate(expression)
    assert asyncio.run(calculator(expression)).startswith("Error: ")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Answer: 888", 888),
        ("Answer: 1,027", 1027),
        ("The answer is 42.", 42),
        ("**Answer:** 12", 12),
        ("37 * 24 = 888, so Answer: 888", 888),
        ("<tool_response>\n3885\n</tool_response>", 3885),  # no marker: the last number
        ("It is 12 and then 15", 15),
        ("Answer: -3.5", -3.5),
        ("I do not know.", None),
        ("", None),
    ],
)
def test_parse_answer(text: str, value: float | None) -> None:
    assert parse_answer(text) == value


def test_reward_is_exact_numeric_match() -> None:
    assert reward("Answer: 888", 888) == 1.0
    assert reward("Answer: 888.0", 888) == 1.0
    assert reward("Answer: 887", 888) == 0.0
    assert reward("Answer: 888 apples, or 889", 888) == 1.0  # the marked number wins
    assert reward("no idea", 888) == 0.0


def test_the_example_opening_is_a_question_and_a_calculator_call() -> None:
    user, call = example_messages()
    assert user.type == "UserMessage" and "23 trays" in str(user.content)
    assert call.type == "AssistantMessage" and isinstance(call.content, list)
    arguments = json.loads(call.content[0].arguments)
    assert evaluate(arguments["expression"]) == 414


@pytest.mark.slow
@pytest.mark.timeout(900)  # a whole train.py run; the suite's 300 s is for unit tests
def test_quick_mode_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train.py --quick` with the tiny random model: it validates, trains and records every call.

    The tiny model never calls the calculator, so rewards are 0; this checks the plumbing (AutoGen
    through the gateway, the trainer's validation and steps), not learning, which README.md shows.
    """
    from examples.calc import train

    _, calls = run_quick(train, tmp_path, monkeypatch, rollouts_per_step=32)
    assert len(calls) >= 3 * 32 + 2 * 8  # at least one call per rollout
    request = calls[0]["request"]
    assert [t["function"]["name"] for t in request["tools"]] == ["calculator"]
    assert "23 trays" in request["messages"][1]["content"]  # the example opening was sent
