"""A manifest's ``source``: a Hugging Face dataset to prepare instead of dropped files.

``{"hub": "HuggingFaceH4/ultrachat_200k", "splits": {"train": "train_sft", "test": "test_sft"},
"percent": 5, "sample": "first", "seed": 7}`` — the reference notebook's download step
(``load_dataset(hub, split=f"{split}[0%:{pc}%]")`` per split) as data. Problems are collected, each
with its key path, so one upload tells the user everything to fix.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Sample = Literal["first", "random"]
SAMPLES: tuple[Sample, ...] = ("first", "random")
DEFAULT_SPLITS: Mapping[str, str] = {"train": "train_sft", "test": "test_sft"}
MAX_SEED = 2**63 - 1
PREPARE_VERSION = 1  # bump when prepare() would write other bytes for the same spec

# The hub's repo id rules (huggingface_hub's validate_repo_id), in ASCII: [owner/]name, each part starting
# and ending with a letter or digit, at most 96 characters, no "--" or "..". No "/" first: never a path.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"(?:{_PART}/)?{_PART}")
_SPLIT = re.compile(r"[A-Za-z0-9_]{1,64}(?:\.[A-Za-z0-9_]{1,64})*")  # datasets' split-name rule, in ASCII
_HUB_WHAT = 'a Hugging Face dataset id such as "HuggingFaceH4/ultrachat_200k" (owner/name)'
_PERCENT_WHAT = "a number between 0 (exclusive) and 100"


@dataclass(frozen=True)
class SourceSpec:
    """What to prepare: ``percent`` of each split of ``hub``, the first rows or a seeded sample."""

    hub: str
    train_split: str = DEFAULT_SPLITS["train"]
    test_split: str | None = DEFAULT_SPLITS["test"]
    percent: float = 100.0
    sample: Sample = "first"
    seed: int = 42  # only random sampling uses it

    @property
    def splits(self) -> dict[str, str]:
        """Role ("train", "test") → the dataset's split name."""
        return {"train": self.train_split} | ({"test": self.test_split} if self.test_split else {})

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the prepared data (for the run id): equal specs prepare equal bytes."""
        found: dict[str, Any] = {
            "hub": self.hub,
            "splits": self.splits,
            "percent": int(self.percent) if self.percent.is_integer() else self.percent,
            "sample": self.sample,
            "columns": ["messages"],
            "prepare": PREPARE_VERSION,
        }
        if self.sample == "random":
            found["seed"] = self.seed
        return found


def parse_source(value: object, path: str = "source") -> tuple[SourceSpec | None, list[str]]:
    """The spec, or None with every problem found (``source.percent: expected ...``); never raises."""
    problems: list[str] = []
    if not isinstance(value, dict):
        problems.append(f'{path}: expected an object such as {{"hub": "HuggingFaceH4/ultrachat_200k"}}, '
                        f"got {_show(value)}")
        return None, problems
    checked = _keys(value, path, problems, _CHECKS)
    if "hub" not in value:
        problems.append(f"{path}.hub: required ({_HUB_WHAT})")
    if problems:
        return None, problems
    splits = checked.get("splits", DEFAULT_SPLITS)
    return SourceSpec(
        hub=checked["hub"],
        train_split=splits["train"],
        test_split=splits.get("test"),
        percent=checked.get("percent", 100.0),
        sample=checked.get("sample", "first"),
        seed=checked.get("seed", 42),
    ), []


Check = Callable[[Any, str, list[str]], Any]  # value, key path, problems → the checked value or None


def _keys(value: dict[Any, Any], path: str, problems: list[str], checks: Mapping[str, Check]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{path}.{key}"
        check = checks.get(key) if isinstance(key, str) else None
        if check is None:
            close = difflib.get_close_matches(str(key), list(checks), n=1, cutoff=0.6)
            problems.append(f"{where}: unknown key" + (f" (did you mean {close[0]!r}?)" if close
                                                      else f"; known keys: {', '.join(checks)}"))
            continue
        result = check(item, where, problems)
        if result is not None:
            checked[key] = result
    return checked


def _hub(value: Any, path: str, problems: list[str]) -> str | None:
    if isinstance(value, str) and _HUB_ID.fullmatch(value) and ".." not in value and "--" not in value:
        return value
    problems.append(f"{path}: expected {_HUB_WHAT}, got {_show(value)}")
    return None


def _split_name(value: Any, path: str, problems: list[str]) -> str | None:
    if isinstance(value, str) and _SPLIT.fullmatch(value):
        return value
    problems.append(f'{path}: expected a split name such as "train_sft" (letters, digits, "_"), got {_show(value)}')
    return None


def _splits(value: Any, path: str, problems: list[str]) -> dict[str, str] | None:
    if not isinstance(value, dict):
        problems.append(f'{path}: expected an object such as {{"train": "train_sft", "test": "test_sft"}}, '
                        f"got {_show(value)}")
        return None
    before = len(problems)
    checked = _keys(value, path, problems, {"train": _split_name, "test": _split_name})
    if "train" not in value:
        problems.append(f'{path}.train: required (the split to train on, such as "train_sft")')
    elif checked.get("test") is not None and checked.get("test") == checked.get("train"):
        problems.append(f"{path}.test: the same split as train ({_show(checked['test'])}): the test rows would be "
                        "training rows; name another split, or leave test out")
    return checked if len(problems) == before else None


def _percent(value: Any, path: str, problems: list[str]) -> float | None:
    if not isinstance(value, bool) and isinstance(value, int | float) and 0 < value <= 100:
        return float(value)  # NaN fails the comparison, infinity the bound
    problems.append(f"{path}: expected {_PERCENT_WHAT}, got {_show(value)}")
    return None


def _sample(value: Any, path: str, problems: list[str]) -> str | None:
    if isinstance(value, str) and value in SAMPLES:
        return value
    problems.append(f'{path}: expected "first" or "random", got {_show(value)}')
    return None


def _seed(value: Any, path: str, problems: list[str]) -> int | None:
    if not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= MAX_SEED:
        return value
    problems.append(f"{path}: expected an integer from 0 to 2**63 - 1, got {_show(value)}")
    return None


_CHECKS: Mapping[str, Check] = {"hub": _hub, "splits": _splits, "percent": _percent, "sample": _sample,
                                "seed": _seed}


def _show(value: Any) -> str:
    """A value as the user wrote it (JSON), cut short."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True, default=repr)
    except (TypeError, ValueError):  # non-string keys, cycles: only possible from Python callers
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
