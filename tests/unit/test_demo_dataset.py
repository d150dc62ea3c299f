"""The built-in demo dataset: ultrachat shape, determinism, and held-out questions kept out of the rows."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from cli import demo_dataset


def test_rows_have_the_ultrachat_shape() -> None:
    rows = list(demo_dataset.generate(300, seed=0))
    assert len(rows) == 300
    systems = 0
    for row in rows:
        assert set(row) == {"prompt", "prompt_id", "messages"}
        assert row["prompt_id"] == hashlib.sha256(row["prompt"].encode()).hexdigest()
        roles = [m["role"] for m in row["messages"]]
        assert roles in (["user", "assistant"], ["system", "user", "assistant"])
        systems += roles[0] == "system"
        user, answer = row["messages"][-2]["content"], row["messages"][-1]["content"]
        assert user == row["prompt"]
        country = re.fullmatch(r"The capital of (.+) is (.+)\.", answer)
        assert country and country.group(1) in user
    assert 0 < systems < 100  # some rows carry a system message, most do not


def test_same_seed_same_rows_other_seed_other_rows(tmp_path: Path) -> None:
    assert list(demo_dataset.generate(50, seed=3)) == list(demo_dataset.generate(50, seed=3))
    assert list(demo_dataset.generate(50, seed=3)) != list(demo_dataset.generate(50, seed=4))
    assert list(demo_dataset.generate(20, seed=3)) == list(demo_dataset.generate(50, seed=3))[:20]
    path = demo_dataset.write_jsonl(tmp_path / "demo.jsonl", 25, seed=3)
    assert [json.loads(line) for line in path.read_text().splitlines()] == list(demo_dataset.generate(25, seed=3))


def test_prompts_are_unique_up_to_the_documented_size() -> None:
    rows = list(demo_dataset.generate(640))
    assert len({r["prompt_id"] for r in rows}) == 640
    assert len(list(demo_dataset.generate(0))) == 0
    with pytest.raises(ValueError):
        list(demo_dataset.generate(-1))


def test_heldout_questions_never_appear_in_the_rows() -> None:
    heldout = demo_dataset.heldout_questions()
    assert len(heldout) >= 5
    text = "\n".join(json.dumps(r) for r in demo_dataset.generate(2000, seed=1))
    for item in heldout:
        country = re.fullmatch(r"The capital of (.+) is (.+)\.", item["expected"])
        assert country, item
        assert country.group(1) in item["prompt"]
        assert f"of {country.group(1)}" not in text and country.group(2) not in text


def test_cli_writes_a_file(tmp_path: Path) -> None:
    assert demo_dataset.main([str(tmp_path / "d.jsonl"), "--rows", "12", "--seed", "2"]) == 0
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 12
