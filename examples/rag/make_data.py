"""Write the rag data: a corpus of passages about invented entities and 2-hop questions over it.

In the style of MuSiQue, every answer needs two passages: one about the person the question names,
which gives a bridge entity (a city or a company), and one about that bridge, which gives the answer.

    passage about a person   "Orlan Vessik was born in Quelmar. Vessik works for Tanbar Mills."
    passage about a city     "Quelmar is a city in Vendoria. ..."
    passage about a company  "Tanbar Mills was founded by Edra Polsin. Tanbar Mills is based in Dunmir."

    In which country was Orlan Vessik born?              -> Vendoria     (person, then city)
    Who founded the company that Orlan Vessik works for? -> Edra Polsin  (person, then company)
    In which city is the company Orlan Vessik works for based? -> Dunmir (person, then company)

All names are made up from syllables, so a model cannot know an answer without reading it, and no
passage names both the person of a question and its answer. Each question names its own person
(persons are not shared between questions or splits); cities, countries and companies are shared,
as in a real corpus. Fixed seed, no downloads.

    python examples/rag/make_data.py     # writes examples/rag/data/{corpus,train,val,test}.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
SIZES = {"train": 1000, "val": 50, "test": 200}
SEED = 20250806
N_COUNTRIES, N_CITIES, N_COMPANIES = 12, 60, 80

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "o"]
CODAS = ["", "", "n", "r", "l", "s", "m", "th"]
COUNTRY_ENDINGS = ["ia", "ora", "and", "esh", "avia"]
SIGHTS = ["old bridges", "markets", "harbour", "festivals", "library", "gardens", "cathedral", "mines"]
JOBS = ["a clerk", "an engineer", "a designer", "a chemist", "a driver", "a manager", "a writer", "a welder"]
COMPANY_KINDS = ["Mills", "Foundry", "Labs", "Textiles", "Shipping", "Motors", "Press", "Bank"]

# question type -> (templates, the fact of the person that bridges, the fact of the bridge answered)
TEMPLATES = {
    "birth_country": ["In which country was {person} born?", "Which country is {person} from?"],
    "employer_founder": [
        "Who founded the company that {person} works for?",
        "Who is the founder of {person}'s employer?",
    ],
    "employer_city": [
        "In which city is the company that {person} works for based?",
        "Where is the employer of {person} based?",
    ],
}

Row = dict[str, Any]


class Names:
    """Made-up capitalised words, never the same one twice."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: int, ending: str = "") -> str:
        while True:
            parts = [self.rng.choice(ONSETS) + self.rng.choice(VOWELS) for _ in range(syllables)]
            word = ("".join(parts) + (ending or self.rng.choice(CODAS))).capitalize()
            if word not in self.used and len(word) >= 4:
                self.used.add(word)
                return word

    def person(self) -> str:
        return f"{self.word(2)} {self.word(self.rng.choice([2, 3]))}"


def generate(sizes: dict[str, int] = SIZES, seed: int = SEED) -> dict[str, list[Row]]:
    """The corpus and the splits, deterministic for a seed.

    Returns `{"corpus": passages, "train": ..., "val": ..., "test": ...}`. A passage is
    `{id, title, text}`; a question is `{id, question, answer, type, entity, bridge, hops}` where
    `hops` are the ids of the two passages that answer it, in order.
    """
    rng = random.Random(seed)
    names = Names(rng)
    countries = [names.word(2, rng.choice(COUNTRY_ENDINGS)) for _ in range(N_COUNTRIES)]
    cities = [names.word(rng.choice([2, 3])) for _ in range(N_CITIES)]
    city_country = {city: rng.choice(countries) for city in cities}
    corpus: list[Row] = []
    city_passage: dict[str, str] = {}
    for i, city in enumerate(cities):
        river = names.word(2)
        pid = f"city-{i:03d}"
        city_passage[city] = pid
        text = (
            f"{city} is a city in {city_country[city]}. "
            f"{city} lies on the {river} river and is known for its {rng.choice(SIGHTS)}."
        )
        corpus.append({"id": pid, "title": city, "text": text})

    companies: list[tuple[str, str, str]] = []  # name, founder, city
    company_passage: dict[str, str] = {}
    for i in range(N_COMPANIES):
        name = f"{names.word(2)} {rng.choice(COMPANY_KINDS)}"
        founder, city = names.person(), rng.choice(cities)
        pid = f"company-{i:03d}"
        company_passage[name] = pid
        companies.append((name, founder, city))
        text = f"{name} was founded by {founder} in {rng.randint(1890, 2015)}. {name} is based in {city}."
        corpus.append({"id": pid, "title": name, "text": text})

    splits: dict[str, list[Row]] = {}
    n = 0
    for split, size in sizes.items():
        rows: list[Row] = []
        for i in range(size):
            person = names.person()
            company, founder, company_city = rng.choice(companies)
            birth = rng.choice([c for c in cities if c != company_city])
            pid = f"person-{n:04d}"
            n += 1
            last = person.split()[1]
            text = f"{person} was born in {birth}. {last} works for {company} as {rng.choice(JOBS)}."
            corpus.append({"id": pid, "title": person, "text": text})
            kind = list(TEMPLATES)[i % len(TEMPLATES)]
            question = rng.choice(TEMPLATES[kind]).format(person=person)
            if kind == "birth_country":
                bridge, answer, second = birth, city_country[birth], city_passage[birth]
            else:
                bridge, second = company, company_passage[company]
                answer = founder if kind == "employer_founder" else company_city
            rows.append(
                {
                    "id": f"{split}-{i:04d}",
                    "question": question,
                    "answer": answer,
                    "type": kind,
                    "entity": person,
                    "bridge": bridge,
                    "hops": [pid, second],
                }
            )
        rng.shuffle(rows)
        splits[split] = rows
    rng.shuffle(corpus)
    return {"corpus": corpus, **splits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA, help="directory for the JSONL files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in generate().items():
        path = args.out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        print(f"{path}: {len(rows)} {'passages' if name == 'corpus' else 'questions'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
