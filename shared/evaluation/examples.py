"""Evaluation examples from a run's test split: each conversation up to its last assistant turn is the
prompt, that turn the reference. A seeded sample keeps an evaluation the same however often it resumes."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

Message = dict[str, str]


@dataclass(frozen=True)
class Example:
    index: int  # the row's position in the test split: the key its outcomes are stored under
    prompt: list[Message]
    reference: str


def example_from(index: int, row: Any) -> Example | None:
    """The example a validated row makes, or None when it has no assistant turn after a user turn."""
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list):
        return None
    turns = [m for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str)]
    last = max((i for i, m in enumerate(turns) if m.get("role") == "assistant"), default=None)
    if last is None or not any(m.get("role") == "user" for m in turns[:last]):
        return None
    prompt = [{"role": str(m["role"]), "content": m["content"]} for m in turns[:last]]
    return Example(index, prompt, turns[last]["content"])


def sample(lines: Iterable[bytes], max_rows: int, seed: str) -> list[Example]:
    """Up to ``max_rows`` examples of the split, a sample seeded by ``seed`` (reservoir: one pass, bounded
    memory), in split order."""
    rng = random.Random(seed)
    kept: list[Example] = []
    seen = 0
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            example = example_from(index, orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # the split was validated: a torn last line of a ranged read, nothing more
        if example is None:
            continue
        seen += 1
        if len(kept) < max_rows:
            kept.append(example)
        else:
            slot = rng.randrange(seen)
            if slot < max_rows:
                kept[slot] = example
    return sorted(kept, key=lambda e: e.index)
