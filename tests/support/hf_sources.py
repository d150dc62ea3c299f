"""Offline mirrors of Hugging Face datasets for shared.sources: the same splits written as a
``DatasetDict.save_to_disk`` folder or as the hub stores a dataset (``data/<split>-0000i-of-0000n.parquet``
and a README whose YAML lists the ``configs`` and the splits' sizes)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson

from tests.support.datasets import row

Layout = Literal["disk", "hub"]
LAYOUTS: tuple[Layout, ...] = ("disk", "hub")
HUB_ID = "HuggingFaceH4/ultrachat_200k"


def ultrachat(n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` ultrachat-shaped rows (prompt, prompt_id, messages); row i asks "Question number i"."""
    return [row(i) for i in range(start, start + n)]


def write_mirror(mirror: Path, splits: Mapping[str, Sequence[dict[str, Any]]], layout: Layout,
                 hub: str = HUB_ID, shards: int = 1) -> Path:
    """``<mirror>/<hub>`` holding ``splits``; returns ``mirror`` (what ``prepare(mirror_dir=...)`` takes)."""
    folder = mirror / hub
    if layout == "disk":
        from datasets import Dataset, DatasetDict

        DatasetDict({name: Dataset.from_list(list(rows)) for name, rows in splits.items()}).save_to_disk(str(folder))
        return mirror
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True)
    for name, rows in splits.items():
        table = pa.Table.from_pylist(list(rows))
        step = -(-len(rows) // shards) or 1
        for i in range(shards):
            pq.write_table(table.slice(i * step, step), folder / "data" / f"{name}-{i:05d}-of-{shards:05d}.parquet")
    (folder / "README.md").write_text(_card(splits))
    return mirror


def _card(splits: Mapping[str, Sequence[dict[str, Any]]]) -> str:
    """The dataset card's YAML header, as the hub writes it for ultrachat_200k (trimmed)."""
    configs = "".join(f"  - split: {name}\n    path: data/{name}-*\n" for name in splits)
    sizes = "".join(f"  - name: {name}\n    num_bytes: {len(orjson.dumps(list(rows)))}\n"
                    f"    num_examples: {len(rows)}\n" for name, rows in splits.items())
    return (f"---\nconfigs:\n- config_name: default\n  data_files:\n{configs}"
            f"dataset_info:\n  splits:\n{sizes}---\n# a tiny mirror\n")


class Collected:
    """A sink: every line ``prepare`` hands over, by role, in order."""

    def __init__(self) -> None:
        self.lines: dict[str, list[bytes]] = defaultdict(list)

    def __call__(self, role: str, line: bytes) -> None:
        self.lines[role].append(line)

    def rows(self, role: str) -> list[Any]:
        return [orjson.loads(line) for line in self.lines[role]]

    def numbers(self, role: str) -> list[int]:
        """Which source rows were written (row i's first message asks "Question number i")."""
        return [int(r["messages"][0]["content"].split(":")[0].rsplit(" ", 1)[1]) for r in self.rows(role)]

    def content(self) -> bytes:
        """Each role's rows as a JSONL file would hold them, one after the other."""
        return b"".join(b"".join(line + b"\n" for line in self.lines[role]) for role in sorted(self.lines))
