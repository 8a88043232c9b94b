"""Write the calc data: arithmetic word problems that need a calculator, with a fixed seed.

Each problem is one or two steps (a product, a sum, a product then a sum or a difference, an exact
division) over awkward two- and three-digit numbers, so a 135M model cannot do it in its head but can
write the expression for a calculator. Questions are unique across the splits.

    python examples/calc/make_data.py            # writes examples/calc/data/{train,val,test}.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SIZES = {"train": 1000, "val": 50, "test": 200}
SEED = 20250805

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivan", "Jo", "Kemal", "Lena"]
ITEMS = [("boxes", "pencils"), ("crates", "apples"), ("bags", "marbles"), ("packs", "cards"),
         ("trays", "cookies"), ("cartons", "eggs"), ("shelves", "books"), ("rows", "chairs")]  # fmt: skip

Problem = tuple[str, int]


def _n(rng: random.Random, lo: int, hi: int) -> int:
    """A number in [lo, hi] that is not a multiple of 10 (round numbers are easy in one's head)."""
    while True:
        n = rng.randint(lo, hi)
        if n % 10:
            return n


def product(rng: random.Random) -> Problem:
    a, b = _n(rng, 13, 99), _n(rng, 13, 99)
    box, thing = rng.choice(ITEMS)
    return f"A shop has {a} {box} with {b} {thing} in each. How many {thing} are there in total?", a * b


def total(rng: random.Random) -> Problem:
    a, b = _n(rng, 123, 989), _n(rng, 123, 989)
    who = rng.choice(NAMES)
    question = (
        f"{who} walked {a} meters in the morning and {b} meters in the evening. How many meters in all?"
    )
    return question, a + b


def difference(rng: random.Random) -> Problem:
    a = _n(rng, 500, 999)
    b = _n(rng, 113, a - 50)
    return f"A tank holds {a} liters of water. {b} liters are used. How many liters are left?", a - b


def share(rng: random.Random) -> Problem:
    each, people = _n(rng, 13, 97), _n(rng, 3, 29)
    who = rng.choice(NAMES)
    question = (
        f"{who} shares {each * people} stickers equally among {people} friends. "
        "How many stickers does each friend get?"
    )
    return question, each


def buy_more(rng: random.Random) -> Problem:
    have, packs, size = _n(rng, 13, 199), _n(rng, 3, 19), _n(rng, 12, 49)
    who = rng.choice(NAMES)
    question = (
        f"{who} has {have} cards and buys {packs} packs of {size} cards. How many cards does {who} have now?"
    )
    return question, have + packs * size


def sell_some(rng: random.Random) -> Problem:
    crates, size = _n(rng, 13, 49), _n(rng, 14, 48)
    sold = _n(rng, 11, crates * size - 1)
    question = (
        f"A farm packs {crates} crates of {size} apples and sells {sold} apples. How many apples are left?"
    )
    return question, crates * size - sold


def trip(rng: random.Random) -> Problem:
    speed, hours, extra = _n(rng, 41, 97), _n(rng, 3, 12), _n(rng, 11, 99)
    question = (
        f"A bus drives {speed} km per hour for {hours} hours and then {extra} km more. "
        "How many km does it drive?"
    )
    return question, speed * hours + extra


KINDS: list[Callable[[random.Random], Problem]] = [
    product,
    total,
    difference,
    share,
    buy_more,
    sell_some,
    trip,
]


def generate(sizes: dict[str, int] = SIZES, seed: int = SEED) -> dict[str, list[dict[str, object]]]:
    """The splits, deterministic for a seed; no question appears twice in or across splits."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[dict[str, object]]] = {}
    for name, size in sizes.items():
        rows: list[dict[str, object]] = []
        while len(rows) < size:
            question, answer = rng.choice(KINDS)(rng)
            if question not in seen:
                seen.add(question)
                rows.append({"question": question, "answer": answer})
        splits[name] = rows
    return splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA, help="directory for the JSONL files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in generate().items():
        path = args.out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        print(f"{path}: {len(rows)} problems")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
