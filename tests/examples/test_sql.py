"""The sql example: its data generator, read-only executor, query parser and reward, the workflow's
turns, and (slow) its quick mode."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from examples.sql import make_data
from examples.sql.agent import (
    MAX_TURNS,
    QueryError,
    build_graph,
    execute,
    parse_query,
    reward,
    same_result,
    schema,
    show,
    verdict,
    write_messages,
)
from tests.examples.quick_run import run_quick

DATA = Path(make_data.__file__).parent / "data"
SPLITS = ("train", "val", "test")


def shipped(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines()]


def dump(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


# ---------------------------------------------------------------- data


def test_make_data_is_deterministic_and_matches_the_shipped_files(tmp_path: Path) -> None:
    tables, splits = make_data.generate()
    assert (tables, splits) == make_data.generate()
    assert {k: len(v) for k, v in splits.items()} == {"train": 1000, "val": 50, "test": 200}
    for name in SPLITS:
        assert shipped(name) == splits[name], f"{name}.jsonl differs from make_data.py's output: rerun it"
    assert make_data.main(["--out", str(tmp_path)]) == 0
    for table in make_data.TABLES:
        path = f"{table.db}.sqlite"
        assert dump(DATA / path) == dump(tmp_path / path), f"{path} differs from make_data.py's output"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([f"{n}.jsonl" for n in SPLITS] + [f"{t.db}.sqlite" for t in make_data.TABLES])


def test_questions_are_unique_across_splits_and_the_test_split_covers_every_shape() -> None:
    keys = [(row["db"], row["question"]) for name in SPLITS for row in shipped(name)]
    assert len(keys) == len(set(keys))
    test = shipped("test")
    for shape in make_data.SHAPES:
        n = sum(row["shape"] == shape.__name__ for row in test)
        assert n >= 10, shape.__name__
        assert any(row["shape"] == shape.__name__ for row in shipped("train")), shape.__name__
    assert {row["db"] for row in test} == {t.db for t in make_data.TABLES}


def test_every_gold_query_executes_and_returns_rows() -> None:
    for name in SPLITS:
        for row in shipped(name):
            rows = execute(row["db"], row["sql"])
            assert rows and rows != [(None,)], row
            assert reward(row["sql"], row) == 1.0


def test_databases_differ_in_schema_and_hold_distinct_numbers() -> None:
    schemas = {t.db: schema(t.db) for t in make_data.TABLES}
    assert len(set(schemas.values())) == len(schemas)
    assert schemas["shop"] == (
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, "
        "price INTEGER, stock INTEGER);"
    )
    for t in make_data.TABLES:
        for column in t.numbers:
            values = execute(t.db, f"SELECT {column} FROM {t.table}")
            assert len(values) == make_data.ROWS == len(set(values))  # "the highest" names one row


def test_a_question_says_what_its_gold_query_does() -> None:
    row = next(r for r in shipped("test") if r["shape"] == "count_above")
    assert row["question"].startswith("How many") and "COUNT(*)" in row["sql"]
    assert ("greater" in row["question"]) == (">" in row["sql"])


# ---------------------------------------------------------------- executor


def test_execute_runs_a_select() -> None:
    assert execute("shop", "SELECT COUNT(*) FROM products") == [(24,)]
    assert execute("school", "SELECT name FROM students WHERE id = 1") == [("Ana",)]


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM products",
        "UPDATE products SET price = 0",
        "INSERT INTO products (name) VALUES ('x')",
        "DROP TABLE products",
        "CREATE TABLE t (x)",
        "ATTACH DATABASE '/tmp/boltrl-sql-test.sqlite' AS other",
        "PRAGMA table_info(products)",
        "SELECT * FROM products; DELETE FROM products",  # two statements
        "SELECT * FROM nowhere",
        "SELEC name FROM products",
        "SELECT a.id FROM products a, products b, products c",  # 13,824 rows: too many
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT COUNT(*) FROM n",  # endless
        "SELECT '\x00'",
    ],
)
def test_execute_refuses_anything_but_a_bounded_read(query: str) -> None:
    with pytest.raises(QueryError):
        execute("shop", query)
    assert execute("shop", "SELECT COUNT(*) FROM products") == [(24,)]  # nothing was changed
    assert not Path("/tmp/boltrl-sql-test.sqlite").exists()


@pytest.mark.parametrize("db", ["nowhere", "../data/shop", "shop.sqlite", ""])
def test_execute_refuses_an_unknown_database(db: str) -> None:
    with pytest.raises(QueryError, match="no database"):
        execute(db, "SELECT 1")


# ---------------------------------------------------------------- parsing and reward


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("SELECT COUNT(*) FROM products;", "SELECT COUNT(*) FROM products"),
        (
            "```sql\nSELECT name\nFROM books\nWHERE year > 1990;\n```",
            "SELECT name FROM books WHERE year > 1990",
        ),
        ("Here is the query:\n\nselect name from zoo", "select name from zoo"),
        ("SELECT price FROM products\n\nThis returns the prices.", "SELECT price FROM products"),
        ("I cannot answer.", None),
        ("", None),
    ],
)
def test_parse_query(text: str, query: str | None) -> None:
    assert parse_query(text) == query


def test_same_result_compares_as_a_multiset_unless_ordered() -> None:
    assert same_result([("a",), ("b",)], [("b",), ("a",)], ordered=False)
    assert not same_result([("a",), ("b",)], [("b",), ("a",)], ordered=True)
    assert not same_result([("a",), ("a",)], [("a",)], ordered=False)  # duplicates count
    assert same_result([(50.0,)], [(50,)], ordered=False)
    assert same_result([(1 / 3,)], [(0.33333,)], ordered=False)  # 4 decimals
    assert not same_result([(0.33,)], [(1 / 3,)], ordered=False)


def test_reward_is_execution_match() -> None:
    task = {"db": "shop", "sql": "SELECT name FROM products WHERE price > 100"}
    assert reward("SELECT name FROM products WHERE price > 100", task) == 1.0
    assert reward("SELECT name FROM products WHERE 100 < price ORDER BY name", task) == 1.0  # same rows
    assert reward("SELECT name, price FROM products WHERE price > 100", task) == 0.0  # extra column
    assert reward("SELECT name FROM products", task) == 0.0
    assert reward("SELECT nme FROM products", task) == 0.0  # an error is 0, never raised
    assert reward("DELETE FROM products", task) == 0.0
    assert reward(None, task) == 0.0
    top = {"db": "shop", "sql": "SELECT name FROM products ORDER BY price DESC LIMIT 1"}
    assert reward("SELECT name FROM products WHERE price = (SELECT MAX(price) FROM products)", top) == 1.0


@pytest.mark.parametrize(
    ("reply", "correct"),
    [
        ("CORRECT", True),
        ("The answer is CORRECT. The query returns the price.", True),
        ("correct: it counts the rows", True),
        ("WRONG", False),
        ("INCORRECT, the table is wrong", False),
        ("It is correct but the result is wrong.", False),
        ("The query returns no result.", False),
        ("", False),
    ],
)
def test_verdict(reply: str, correct: bool) -> None:
    assert verdict(reply) is correct


def test_show_cuts_long_results() -> None:
    assert show([]) == "(no rows)"
    assert show([(1.5,), (2.0,)]) == "1.5\n2"
    text = show([(i,) for i in range(30)])
    assert text.splitlines()[-1] == "... (30 rows)" and len(text.splitlines()) == 11


def test_the_writer_prompt_shows_the_schema_and_one_example() -> None:
    system, example, answer, question = write_messages(schema("zoo"), "How many animals are there?")
    assert "CREATE TABLE animals" in str(system.content)
    assert "cars" in str(example.content) and str(answer.content).startswith("SELECT COUNT(*) FROM cars")
    assert question.content == "How many animals are there?"


# ---------------------------------------------------------------- the workflow


class Scripted:
    """A stand-in chat model that answers from a list and records the prompts it got."""

    def __init__(self, replies: list[str]) -> None:
        self.replies, self.prompts = list(replies), []

    async def ainvoke(self, messages: list[Any]) -> Any:
        from langchain_core.messages import AIMessage

        self.prompts.append(messages)
        return AIMessage(self.replies.pop(0))


def run_graph(writer: list[str], checker: list[str], rewriter: list[str]) -> tuple[dict[str, Any], Any]:
    import asyncio

    models = Scripted(writer), Scripted(checker), Scripted(rewriter)
    graph = build_graph(*models)  # type: ignore[arg-type]
    state = {"db": "shop", "schema": schema("shop"), "question": "How many products are there?"}
    return asyncio.run(graph.ainvoke(state)), models


def test_the_workflow_stops_when_the_checker_says_correct() -> None:
    final, (_, checker, rewriter) = run_graph(["SELECT COUNT(*) FROM products"], ["CORRECT."], [])
    assert final["query"] == "SELECT COUNT(*) FROM products" and final["turns"] == 1
    assert "24" in checker.prompts[0][0].content and rewriter.prompts == []


def test_the_workflow_rewrites_at_most_twice() -> None:
    wrong = ["WRONG: no."] * MAX_TURNS
    queries = ["SELECT name FROM products", "SELECT nme FROM products", "SELECT COUNT(id) FROM products"]
    final, (_, checker, rewriter) = run_graph(queries[:1], wrong, queries[1:])
    assert final["turns"] == MAX_TURNS == 3 and len(rewriter.prompts) == 2 and len(checker.prompts) == 3
    assert "no such column" in rewriter.prompts[1][-1].content  # the error reaches the rewriter
    assert rewriter.prompts[1][-2].content == "SELECT nme FROM products"  # after its own query
    assert final["query"] == "SELECT COUNT(id) FROM products"


def test_a_failed_query_is_never_correct() -> None:
    final, _ = run_graph(["no query"], ["CORRECT"] * 3, ["still none", "SELECT COUNT(*) FROM products"])
    assert final["turns"] == 3 and final["query"] == "SELECT COUNT(*) FROM products"


# ---------------------------------------------------------------- quick mode, end to end


@pytest.mark.slow
@pytest.mark.timeout(900)  # a whole train.py run; the suite's 300 s is for unit tests
def test_quick_mode_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train.py --quick` with the tiny random model: LangGraph through the gateway, three named
    roles, the checker's calls recorded but left out of training.

    The tiny model writes no SQL, so rewards are 0 and every rollout takes all three turns; this
    checks the plumbing and the agent selection, not learning, which README.md shows.
    """
    from examples.sql import train

    steps, calls = run_quick(train, tmp_path, monkeypatch, rollouts_per_step=32)
    for r in steps:  # 32 rollouts x 3 turns: 96 writer/rewriter calls kept, 96 checker calls left out
        assert r["adapter/calls"] == 192 and r["adapter/dropped_agent"] == 96 == r["adapter/dropped_calls"]
    agents = {c["agent"] for c in calls}
    assert agents == {"writer", "checker", "rewriter"}
    writer = next(c for c in calls if c["agent"] == "writer")
    assert "CREATE TABLE" in writer["request"]["messages"][0]["content"]  # the schema was sent
