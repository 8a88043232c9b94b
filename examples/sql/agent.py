"""The sql agent: a LangGraph workflow that writes a SQLite query, runs it, checks it, and rewrites it.

Written as LangGraph's own documentation writes a workflow over an OpenAI-compatible endpoint: a
`StateGraph` whose nodes call `langchain_openai.ChatOpenAI` models and a read-only SQLite executor.

    START -> write -> execute -> check --(correct, or 3 queries written)--> END
                         ^          |
                         +- rewrite +--(wrong)

Three model roles share the one policy model and name themselves to the gateway with the
`X-Boltrl-Agent` header: `writer` writes the first query, `checker` reads the query and its result and
says CORRECT or WRONG, `rewriter` writes a new query from the old one, its result and the checker's
words. The trainer trains only the writer and the rewriter (`LightningRL(agents=["writer",
"rewriter"])`); the checker's calls are recorded but dropped (`adapter/dropped_agent`).

The only boltrl parts are `@boltrl.rollout`, the `llm` fields the models are built from, and the
reward: 1.0 when the last query's result equals the gold query's result (execution match), else 0.0.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph

import boltrl

DATA = Path(__file__).resolve().parent / "data"
MAX_TURNS = 3
"""Most queries written in one rollout: the first one and at most two rewrites."""
MAX_ROWS = 200
"""Rows a query may return before it is cut (no question here needs more than 24)."""
TIME_LIMIT_S = 1.0
"""Wall-clock limit of one query (a cross join of the 24-row tables is far under it)."""
SHOWN_ROWS = 10
"""Rows of a result shown to the checker and the rewriter."""
CHECK_TOKENS = 24
"""Most tokens of a checker's reply: its verdict comes first, the rest is feedback for the rewriter."""

# ---------------------------------------------------------------- the database side


class QueryError(Exception):
    """The query could not run: bad SQL, not a read-only SELECT, too slow, or too many rows."""


_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}


def _authorize(action: int, *args: Any) -> int:
    # Only reading: no writes, no ATTACH, no PRAGMA, whatever the model writes.
    return sqlite3.SQLITE_OK if action in _ALLOWED else sqlite3.SQLITE_DENY


def execute(db: str, query: str, data: Path = DATA) -> list[tuple[Any, ...]]:
    """Run `query` on database `db` (read-only) and return its rows; QueryError if it cannot."""
    if not re.fullmatch(r"[a-z_]+", db) or not (data / f"{db}.sqlite").is_file():
        raise QueryError(f"no database named {db!r}")
    conn = sqlite3.connect(f"file:{data / db}.sqlite?mode=ro", uri=True)
    deadline = time.monotonic() + TIME_LIMIT_S
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    conn.set_authorizer(_authorize)
    try:
        rows = conn.execute(query).fetchmany(MAX_ROWS + 1)
    except sqlite3.OperationalError as e:
        raise QueryError("query took too long" if "interrupted" in str(e) else str(e)) from None
    except (sqlite3.Error, ValueError, OverflowError) as e:  # ValueError: e.g. a NUL byte in the query
        raise QueryError(str(e)) from None
    finally:
        conn.close()
    if len(rows) > MAX_ROWS:
        raise QueryError(f"more than {MAX_ROWS} rows")
    return rows


def _value(v: Any) -> Any:
    """A cell made comparable: floats to 4 decimals (AVG gives floats), whole floats to ints."""
    if isinstance(v, float) and math.isfinite(v):
        v = round(v, 4)
        return int(v) if v.is_integer() else v
    return v


def same_result(got: list[tuple[Any, ...]], gold: list[tuple[Any, ...]], ordered: bool) -> bool:
    """Execution match: the same rows (as a multiset, or in order when the gold query orders them)."""
    a = [tuple(_value(v) for v in row) for row in got]
    b = [tuple(_value(v) for v in row) for row in gold]
    return a == b if ordered else Counter(a) == Counter(b)


def reward(query: str | None, task: dict[str, Any], data: Path = DATA) -> float:
    """1.0 when `query` returns what the task's gold SQL returns on its database, else 0.0."""
    if not query:
        return 0.0
    gold = execute(str(task["db"]), str(task["sql"]), data)
    try:
        got = execute(str(task["db"]), query, data)
    except QueryError:
        return 0.0
    ordered = "order by" in str(task["sql"]).lower()
    return 1.0 if same_result(got, gold, ordered) else 0.0


def schema(db: str, data: Path = DATA) -> str:
    """The database's CREATE TABLE statements, as the model sees them."""
    conn = sqlite3.connect(f"file:{data / db}.sqlite?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
    finally:
        conn.close()
    return "\n".join(f"{sql};" for (sql,) in rows)


def parse_query(text: str) -> str | None:
    """The SQL in a model's reply: a ```sql block if there is one, else from the first SELECT to the
    first semicolon or blank line. None when there is no SELECT."""
    fenced = re.search(r"```(?:sql|sqlite)?\s*(.*?)(?:```|$)", text, re.DOTALL | re.IGNORECASE)
    if fenced and re.search(r"\bselect\b", fenced.group(1), re.IGNORECASE):
        text = fenced.group(1)
    m = re.search(r"\bselect\b.*?(?=;|\n\s*\n|```|$)", text, re.DOTALL | re.IGNORECASE)
    if not m:
        return None
    return " ".join(m.group(0).split())


def verdict(reply: str) -> bool:
    """True when the checker's reply says CORRECT and not WRONG or INCORRECT ("The answer is CORRECT.")."""
    words = set(re.findall(r"[A-Z]+", reply.upper()))
    return "CORRECT" in words and not words & {"WRONG", "INCORRECT"}


def show(rows: list[tuple[Any, ...]]) -> str:
    """A result as the checker and the rewriter read it."""
    if not rows:
        return "(no rows)"
    lines = [", ".join(str(_value(v)) for v in row) for row in rows[:SHOWN_ROWS]]
    if len(rows) > SHOWN_ROWS:
        lines.append(f"... ({len(rows)} rows)")
    return "\n".join(lines)


# ---------------------------------------------------------------- the prompts

WRITE = (
    "You write one SQLite query that answers the question about this database.\n\n{schema}\n\n"
    "Reply with the query only."
)
EXAMPLE_SCHEMA = "CREATE TABLE cars (id INTEGER PRIMARY KEY, name TEXT, color TEXT, speed INTEGER);"
EXAMPLE = ("How many cars have a speed greater than 120?", "SELECT COUNT(*) FROM cars WHERE speed > 120;")
CHECK = (
    "You check a SQLite query written for a question.\n\n{schema}\n\nQuestion: {question}\n"
    "Query: {query}\nResult:\n{result}\n\n"
    "Does the query answer the question? Reply CORRECT or WRONG, then say why in one sentence."
)
REWRITE = (
    "That query returned:\n{result}\n\nA reviewer says: {feedback}\n\n"
    "Write a corrected query. Reply with the query only."
)


def write_messages(schema_text: str, question: str) -> list[BaseMessage]:
    """The writer's prompt: the schema, then one example question and its query, then the question.

    A 135M model copies the form of an example it has seen (as in the calc example), so the example
    (on a table of its own) shows a bare query as the whole reply.
    """
    return [
        SystemMessage(WRITE.format(schema=schema_text)),
        HumanMessage(f"Example table:\n{EXAMPLE_SCHEMA}\n\n{EXAMPLE[0]}"),
        AIMessage(EXAMPLE[1]),
        HumanMessage(question),
    ]


# ---------------------------------------------------------------- the workflow


class SQLState(TypedDict, total=False):
    db: str
    schema: str
    question: str
    query: str | None
    result: str
    feedback: str
    correct: bool
    turns: int


def build_graph(writer: ChatOpenAI, checker: ChatOpenAI, rewriter: ChatOpenAI) -> Any:
    """The compiled workflow: write -> execute -> check -> (rewrite -> execute -> check)* -> END."""

    async def write(state: SQLState) -> SQLState:
        reply = await writer.ainvoke(write_messages(state["schema"], state["question"]))
        return {"query": parse_query(str(reply.content)), "turns": 1}

    def run_query(state: SQLState) -> SQLState:
        query = state.get("query")
        if not query:
            return {"result": "Error: no SELECT query was written"}
        try:
            return {"result": show(execute(state["db"], query))}
        except QueryError as e:
            return {"result": f"Error: {e}"}

    async def check(state: SQLState) -> SQLState:
        prompt = CHECK.format(
            schema=state["schema"],
            question=state["question"],
            query=state.get("query") or "(none)",
            result=state["result"],
        )
        reply = str((await checker.ainvoke([HumanMessage(prompt)])).content).strip()
        return {"feedback": reply, "correct": verdict(reply) and not state["result"].startswith("Error:")}

    async def rewrite(state: SQLState) -> SQLState:
        # the writer's conversation, its query as the model's turn, then the result and the review
        messages = [
            *write_messages(state["schema"], state["question"]),
            AIMessage(state.get("query") or "(no query)"),
            HumanMessage(REWRITE.format(result=state["result"], feedback=state["feedback"] or "(none)")),
        ]
        reply = await rewriter.ainvoke(messages)
        return {"query": parse_query(str(reply.content)), "turns": state["turns"] + 1}

    def after_check(state: SQLState) -> str:
        return END if state["correct"] or state["turns"] >= MAX_TURNS else "rewrite"

    builder = StateGraph(SQLState)
    builder.add_node("write", write)
    builder.add_node("execute", run_query)
    builder.add_node("check", check)
    builder.add_node("rewrite", rewrite)
    builder.add_edge(START, "write")
    builder.add_edge("write", "execute")
    builder.add_edge("execute", "check")
    builder.add_conditional_edges("check", after_check, ["rewrite", END])
    builder.add_edge("rewrite", "execute")
    return builder.compile()


def chat_model(llm: boltrl.LLM, name: str, **overrides: Any) -> ChatOpenAI:
    """A `ChatOpenAI` on the policy's endpoint that names itself `name` to the gateway."""
    sampling = {**llm.sampling, **overrides}
    return ChatOpenAI(
        model=llm.model,
        base_url=llm.base_url,
        api_key=llm.api_key,  # type: ignore[arg-type]
        default_headers={"X-Boltrl-Agent": name},
        max_retries=0,
        **sampling,
    )


@boltrl.rollout
async def agent(task: dict[str, Any], llm: boltrl.LLM) -> float:
    writer = chat_model(llm, "writer")
    checker = chat_model(
        llm, "checker", max_tokens=min(CHECK_TOKENS, llm.sampling.get("max_tokens", CHECK_TOKENS))
    )
    rewriter = chat_model(llm, "rewriter")
    graph = build_graph(writer, checker, rewriter)
    db = str(task["db"])
    final = await graph.ainvoke({"db": db, "schema": schema(db), "question": task["question"]})
    return reward(final.get("query"), task)
