"""Write the sql data: five small SQLite databases and questions with gold SQL, with a fixed seed.

Each database has one table with its own schema (a shop's products, a school's students, a library's
books, a company's employees, a zoo's animals), 24 rows of made-up values. The questions are simple
single-table SELECT / WHERE / COUNT / aggregate / ORDER BY ... LIMIT 1 questions that a 135M model
can plausibly answer when it sees the schema; each comes with the gold SQL that answers it. Numeric
columns hold distinct values (so "the highest" names one row) and every gold result is non-empty.
Questions are unique across the splits.

    python examples/sql/make_data.py      # writes examples/sql/data/{*.sqlite,train,val,test.jsonl}
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SIZES = {"train": 1000, "val": 50, "test": 200}
SEED = 20250806
ROWS = 24


@dataclass(frozen=True)
class Table:
    """One database: its table, columns, and the words a question uses for them."""

    db: str
    table: str
    thing: str
    """One row, in words ("product"); the plural adds an s unless `things` says otherwise."""
    things: str
    group: str
    """The text column the questions filter on (category, city, ...)."""
    in_group: str
    """How a question says "whose group is {v}": "in the {v} category"."""
    groups: tuple[str, ...]
    numbers: dict[str, tuple[str, int, int]]
    """Numeric column -> (its name in words, lowest, highest); values are distinct integers."""
    names: tuple[str, ...]
    """Values of the `name` column (ROWS of them, unique)."""
    summable: tuple[str, ...] = ()
    """Numeric columns whose total means something (no "total year")."""


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split(", "))


FIRST = _names(
    "Ana, Ben, Chen, Dara, Eli, Farah, Gus, Hana, Ivan, Jo, Kemal, Lena, Mina, Nico, "
    "Omar, Pia, Quinn, Rosa, Sami, Tara, Uma, Vic, Wes, Yara"
)

TABLES = (
    Table(
        db="shop",
        table="products",
        thing="product",
        things="products",
        group="category",
        in_group="in the {v} category",
        groups=("toys", "books", "garden", "kitchen"),
        numbers={"price": ("price", 3, 180), "stock": ("stock", 5, 400)},
        names=_names(
            "lamp, kettle, rake, puzzle, atlas, teapot, shovel, kite, novel, pan, hose, robot, "
            "diary, mug, seeds, yoyo, cookbook, whisk, gloves, drum, poems, toaster, bucket, "
            "blocks"
        ),
        summable=("stock",),
    ),
    Table(
        db="school",
        table="students",
        thing="student",
        things="students",
        group="city",
        in_group="from {v}",
        groups=("Lyon", "Porto", "Oslo", "Graz"),
        numbers={"age": ("age", 10, 40), "score": ("score", 40, 100)},
        names=FIRST,
    ),
    Table(
        db="library",
        table="books",
        thing="book",
        things="books",
        group="genre",
        in_group="in the {v} genre",
        groups=("mystery", "history", "poetry", "science"),
        numbers={"year": ("year", 1900, 2023), "pages": ("number of pages", 90, 900)},
        names=_names(
            "Red Door, Blue River, Old Maps, Night Train, Cold Stars, Iron Hill, Quiet Sea, "
            "Last Word, Deep Roots, Glass Town, Salt Road, Wild Rain, Paper Moon, Stone Bridge, "
            "Dark Forest, Green Field, Silver Key, Lost Letter, First Light, High Tide, "
            "Small Hours, Open Gate, Long Winter, Bright Lake"
        ),
        summable=("pages",),
    ),
    Table(
        db="company",
        table="employees",
        thing="employee",
        things="employees",
        group="department",
        in_group="in the {v} department",
        groups=("sales", "support", "research", "finance"),
        numbers={"salary": ("salary", 30000, 120000), "hire_year": ("hire year", 1995, 2024)},
        names=_names(
            "Abel, Bea, Cyrus, Dina, Ezra, Fay, Gil, Hugo, Ida, Joel, Kai, Lola, Max, Nora, "
            "Otto, Paz, Rex, Sara, Theo, Una, Vera, Will, Xena, Zoe"
        ),
        summable=("salary",),
    ),
    Table(
        db="zoo",
        table="animals",
        thing="animal",
        things="animals",
        group="species",
        in_group="of the {v} species",
        groups=("lion", "zebra", "parrot", "turtle"),
        numbers={"age": ("age", 1, 60), "weight": ("weight", 2, 900)},
        names=_names(
            "Leo, Stripes, Polly, Shelly, Nala, Ziggy, Kiwi, Tank, Simba, Dot, Mango, Rocky, "
            "Zara, Bolt, Sunny, Pebble, Max, Echo, Rio, Sage, Rex, Luna, Coco, Slow"
        ),
        summable=("weight",),
    ),
)
TABLES_BY_DB = {t.db: t for t in TABLES}


def rows(table: Table, rng: random.Random) -> list[tuple[object, ...]]:
    """The table's rows: (id, name, group, *numbers), numbers distinct within each column."""
    columns = [rng.sample(range(lo, hi + 1), ROWS) for _, lo, hi in table.numbers.values()]
    groups = [table.groups[i % len(table.groups)] for i in range(ROWS)]
    rng.shuffle(groups)
    return [(i + 1, table.names[i], groups[i], *(col[i] for col in columns)) for i in range(ROWS)]


def schema(table: Table) -> str:
    """The CREATE TABLE statement (also what the agent shows the model)."""
    numbers = ", ".join(f"{c} INTEGER" for c in table.numbers)
    return f"CREATE TABLE {table.table} (id INTEGER PRIMARY KEY, name TEXT, {table.group} TEXT, {numbers})"


def build_database(table: Table, data: list[tuple[object, ...]], path: Path) -> None:
    """Write the table's database with `data` as its rows to `path` (replaced)."""
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    try:
        db.execute(schema(table))
        marks = ", ".join("?" * (3 + len(table.numbers)))
        db.executemany(f"INSERT INTO {table.table} VALUES ({marks})", data)
        db.commit()
    finally:
        db.close()


# ---------------------------------------------------------------- question shapes
# Each shape yields every question it can ask of one table, with its gold SQL. Small shapes say the
# same thing a few ways so that every shape has enough questions for a balanced test split.

Question = tuple[str, str]  # (question, gold SQL)
Rows = list[tuple[object, ...]]
Shape = Callable[[Table, Rows], Iterator[Question]]
AGGREGATES = {"AVG": "average", "MAX": "maximum", "MIN": "minimum", "SUM": "total"}


def _a(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _thresholds(t: Table, data: Rows) -> Iterator[tuple[str, str, int]]:
    """(column, its words, value) for values strictly inside each numeric column's range, so that
    both sides of the value hold at least three rows."""
    for i, (column, (words, _, _)) in enumerate(t.numbers.items()):
        values = sorted(int(r[3 + i]) for r in data)  # type: ignore[call-overload]
        for n in values[3:-3]:
            yield column, words, n


def count_all(t: Table, data: Rows) -> Iterator[Question]:
    sql = f"SELECT COUNT(*) FROM {t.table}"
    for q in (
        f"How many {t.things} are there?",
        f"Count the {t.things}.",
        f"What is the number of {t.things}?",
    ):
        yield q, sql


def count_group(t: Table, data: Rows) -> Iterator[Question]:
    for v in t.groups:
        sql = f"SELECT COUNT(*) FROM {t.table} WHERE {t.group} = '{v}'"
        yield f"How many {t.things} are {t.in_group.format(v=v)}?", sql
        yield f"Count the {t.things} {t.in_group.format(v=v)}.", sql


def names_in_group(t: Table, data: Rows) -> Iterator[Question]:
    for v in t.groups:
        sql = f"SELECT name FROM {t.table} WHERE {t.group} = '{v}'"
        yield f"List the names of the {t.things} {t.in_group.format(v=v)}.", sql
        yield f"Which {t.things} are {t.in_group.format(v=v)}?", sql


def lookup(t: Table, data: Rows) -> Iterator[Question]:
    for column, (words, _, _) in t.numbers.items():
        for name in t.names:
            yield (
                f"What is the {words} of the {t.thing} named {name}?",
                (f"SELECT {column} FROM {t.table} WHERE name = '{name}'"),
            )


def lookup_group(t: Table, data: Rows) -> Iterator[Question]:
    for name in t.names:
        yield (
            f"What is the {t.group} of the {t.thing} named {name}?",
            (f"SELECT {t.group} FROM {t.table} WHERE name = '{name}'"),
        )


def names_above(t: Table, data: Rows) -> Iterator[Question]:
    for column, words, n in _thresholds(t, data):
        for said, op in (("greater", ">"), ("less", "<")):
            yield (
                f"Which {t.things} have {_a(words)} {said} than {n}?",
                (f"SELECT name FROM {t.table} WHERE {column} {op} {n}"),
            )


def count_above(t: Table, data: Rows) -> Iterator[Question]:
    for column, words, n in _thresholds(t, data):
        for said, op in (("greater", ">"), ("less", "<")):
            yield (
                f"How many {t.things} have {_a(words)} {said} than {n}?",
                (f"SELECT COUNT(*) FROM {t.table} WHERE {column} {op} {n}"),
            )


def extreme(t: Table, data: Rows) -> Iterator[Question]:
    for column, (words, _, _) in t.numbers.items():
        for said, order in (("highest", "DESC"), ("lowest", "ASC")):
            sql = f"SELECT name FROM {t.table} ORDER BY {column} {order} LIMIT 1"
            yield f"Which {t.thing} has the {said} {words}?", sql
            yield f"What is the name of the {t.thing} with the {said} {words}?", sql


def aggregate(t: Table, data: Rows) -> Iterator[Question]:
    for column, (words, _, _) in t.numbers.items():
        for fn, said in AGGREGATES.items():
            if fn != "SUM" or column in t.summable:
                yield (
                    f"What is the {said} {words} of all {t.things}?",
                    f"SELECT {fn}({column}) FROM {t.table}",
                )


def aggregate_group(t: Table, data: Rows) -> Iterator[Question]:
    for column, (words, _, _) in t.numbers.items():
        for fn, said in AGGREGATES.items():
            if fn == "SUM" and column not in t.summable:
                continue
            for v in t.groups:
                yield (
                    f"What is the {said} {words} of the {t.things} {t.in_group.format(v=v)}?",
                    (f"SELECT {fn}({column}) FROM {t.table} WHERE {t.group} = '{v}'"),
                )


SHAPES: list[Shape] = [
    count_all,
    count_group,
    names_in_group,
    lookup,
    lookup_group,
    names_above,
    count_above,
    extreme,
    aggregate,
    aggregate_group,
]


# ---------------------------------------------------------------- generation


def generate(
    sizes: dict[str, int] = SIZES, seed: int = SEED
) -> tuple[dict[str, Rows], dict[str, list[dict[str, object]]]]:
    """(rows per database, splits), deterministic for a seed.

    Every question of every shape over every database is listed, each shape's list shuffled, and the
    splits (test first, then val, then train) take one question from each shape in turn while it has
    any left (test and val leave a third of each for train): the test split is balanced over shapes,
    every shape is trained on, and no question appears twice.
    """
    rng = random.Random(seed)
    tables = {t.db: rows(t, rng) for t in TABLES}
    pools: list[list[dict[str, object]]] = []
    for shape in SHAPES:
        pool = [
            {"db": t.db, "question": q, "sql": sql, "shape": shape.__name__}
            for t in TABLES
            for q, sql in shape(t, tables[t.db])
        ]
        rng.shuffle(pool)
        pools.append(pool)
    splits: dict[str, list[dict[str, object]]] = {}
    for split in ("test", "val", "train"):
        # test and val leave at least a third of each shape's questions for training
        floors = [len(pool) // 3 if split != "train" else 0 for pool in pools]
        out: list[dict[str, object]] = []
        while len(out) < sizes[split] and any(len(p) > f for p, f in zip(pools, floors, strict=True)):
            for pool, floor in zip(pools, floors, strict=True):
                if len(pool) > floor and len(out) < sizes[split]:
                    out.append(pool.pop())
        rng.shuffle(out)
        splits[split] = out
    return tables, {name: splits[name] for name in sizes}


def write(out: Path, seed: int = SEED) -> dict[str, int]:
    """Write the databases and the JSONL splits into `out`; returns the size of each split."""
    out.mkdir(parents=True, exist_ok=True)
    tables, splits = generate(seed=seed)
    for table in TABLES:
        build_database(table, tables[table.db], out / f"{table.db}.sqlite")
    for name, items in splits.items():
        (out / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in items))
    return {name: len(items) for name, items in splits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA, help="directory for the databases and JSONL")
    args = parser.parse_args(argv)
    for name, n in write(args.out).items():
        print(f"{args.out / name}.jsonl: {n} questions")
    print(f"{args.out}: {', '.join(t.db + '.sqlite' for t in TABLES)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
