"""The built-in demo dataset: capital-city questions in ultrachat_200k's shape.

A task a small model visibly learns on a CPU in a minute or two: every question about a country's
capital ("Which city is the capital of Peru?") is answered with one templated sentence ("The capital of
Peru is Lima."). A few countries never appear in the rows; ``heldout_questions()`` asks about them, so
a fine-tuned model can be compared with its base model on questions it was not trained on.

Standard library only; deterministic for a given ``seed``. ``python -m cli.demo_dataset OUT.jsonl``
writes a file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# (country as written mid-sentence, capital). Real facts, ASCII spellings.
CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("the Netherlands", "Amsterdam"), ("Austria", "Vienna"), ("Switzerland", "Bern"),
    ("Poland", "Warsaw"), ("Sweden", "Stockholm"), ("Norway", "Oslo"), ("Denmark", "Copenhagen"),
    ("Finland", "Helsinki"), ("Ireland", "Dublin"), ("Greece", "Athens"), ("Hungary", "Budapest"),
    ("Czechia", "Prague"), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"), ("Croatia", "Zagreb"),
    ("Serbia", "Belgrade"), ("Ukraine", "Kyiv"), ("Iceland", "Reykjavik"), ("Estonia", "Tallinn"),
    ("Latvia", "Riga"), ("Lithuania", "Vilnius"), ("Slovakia", "Bratislava"), ("the United Kingdom", "London"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"), ("South Korea", "Seoul"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"), ("the Philippines", "Manila"),
    ("Malaysia", "Kuala Lumpur"), ("Nepal", "Kathmandu"), ("Pakistan", "Islamabad"), ("Bangladesh", "Dhaka"),
    ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Saudi Arabia", "Riyadh"), ("Turkey", "Ankara"),
    ("Mongolia", "Ulaanbaatar"), ("Qatar", "Doha"), ("Jordan", "Amman"), ("Lebanon", "Beirut"),
    ("Cambodia", "Phnom Penh"), ("Laos", "Vientiane"), ("Uzbekistan", "Tashkent"), ("Kazakhstan", "Astana"),
    ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Nigeria", "Abuja"), ("Ghana", "Accra"),
    ("Ethiopia", "Addis Ababa"), ("Morocco", "Rabat"), ("Senegal", "Dakar"), ("Uganda", "Kampala"),
    ("Tanzania", "Dodoma"), ("Algeria", "Algiers"), ("Tunisia", "Tunis"), ("Zimbabwe", "Harare"),
    ("Zambia", "Lusaka"), ("Angola", "Luanda"), ("Mali", "Bamako"), ("Rwanda", "Kigali"),
    ("Sudan", "Khartoum"), ("Libya", "Tripoli"), ("Canada", "Ottawa"), ("Mexico", "Mexico City"),
    ("the United States", "Washington"), ("Cuba", "Havana"), ("Jamaica", "Kingston"),
    ("Guatemala", "Guatemala City"), ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"),
    ("Chile", "Santiago"), ("Peru", "Lima"), ("Colombia", "Bogota"), ("Venezuela", "Caracas"),
    ("Ecuador", "Quito"), ("Uruguay", "Montevideo"), ("Paraguay", "Asuncion"), ("Australia", "Canberra"),
    ("New Zealand", "Wellington"), ("Fiji", "Suva"),
)
# Never in the generated rows: the side-by-side comparison asks about these.
HELDOUT: frozenset[str] = frozenset({"Norway", "Kenya", "Peru", "Vietnam", "Canada", "Greece", "Egypt", "Chile"})

QUESTIONS: tuple[str, ...] = (
    "What is the capital of {country}?",
    "Which city is the capital of {country}?",
    "What city is the capital of {country}?",
    "Can you tell me the capital of {country}?",
    "Name the capital of {country}.",
    "I would like to know the capital of {country}.",
    "What's the capital city of {country}?",
    "Tell me the capital of {country}, please.",
)
ANSWER = "The capital of {country} is {capital}."
SYSTEM_PROMPTS: tuple[str, ...] = ("You are a helpful assistant.", "Answer in one short sentence.")
SYSTEM_FRACTION = 0.15


def _row(prompt: str, answer: str, system: str | None) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return {"prompt": prompt, "prompt_id": hashlib.sha256(prompt.encode("utf-8")).hexdigest(), "messages": messages}


def generate(n_rows: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n_rows`` ultrachat-format rows. Prompts are unique up to 640 rows, then the list repeats."""
    if n_rows < 0:
        raise ValueError("n_rows must be >= 0")
    rng = random.Random(seed)
    pairs = [(q, c, cap) for c, cap in CAPITALS if c not in HELDOUT for q in QUESTIONS]
    rng.shuffle(pairs)
    for i in range(n_rows):
        question, country, capital = pairs[i % len(pairs)]
        system = rng.choice(SYSTEM_PROMPTS) if rng.random() < SYSTEM_FRACTION else None
        yield _row(question.format(country=country), ANSWER.format(country=country, capital=capital), system)


def write_jsonl(path: str | Path, n_rows: int, seed: int = 0) -> Path:
    """Write ``generate(n_rows, seed)`` as JSON Lines to ``path`` and return it."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as out:
        for row in generate(n_rows, seed):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def heldout_questions() -> list[dict[str, str]]:
    """Questions about countries absent from every generated row, with the expected answers."""
    out = []
    for i, (country, capital) in enumerate(c for c in CAPITALS if c[0] in HELDOUT):
        out.append({
            "prompt": QUESTIONS[i % 2].format(country=country),
            "expected": ANSWER.format(country=country, capital=capital),
        })
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.demo_dataset", description="Write the demo dataset.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_jsonl(args.out, args.rows, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
