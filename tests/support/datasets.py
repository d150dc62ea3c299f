"""Small chat datasets for tests, in ultrachat_200k's shape."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def row(i: int, *, system: bool = False) -> dict[str, Any]:
    prompt = f"Question number {i}: what is {i} plus {i}?"
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]
    if system:
        messages.insert(0, {"role": "system", "content": "You answer arithmetic questions."})
    return {"prompt": prompt, "prompt_id": hashlib.sha256(prompt.encode()).hexdigest(), "messages": messages}


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def valid_jsonl(n: int = 40, start: int = 0) -> bytes:
    return jsonl([row(i) for i in range(start, start + n)])


def invalid_jsonl(n: int = 40) -> bytes:
    """Mostly fine, with a row ending on the user's turn and a line of broken JSON."""
    rows = [row(i) for i in range(n)]
    rows[3]["messages"] = rows[3]["messages"][:1]
    return jsonl(rows[:5]) + b'{"messages": [\n' + jsonl(rows[5:])
