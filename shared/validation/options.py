"""What the validator reads (sources) and how strict it is (options)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, Protocol

Format = Literal["jsonl", "json", "parquet"]
Policy = Literal["strict", "drop-invalid"]
Split = Literal["train", "test"]

RowSink = Callable[[Split, bytes], None]
"""Receives each kept row as one compact JSON line (``orjson.dumps`` of the row, no newline), in
input order, tagged with the split it belongs to."""

PHI3_RESERVED = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>")

_EXTENSIONS: dict[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}


def detect_format(name: str) -> Format | None:
    """The dataset format from a file or blob name's extension (case-insensitive), or None."""
    dot = name.rfind(".")
    if dot < 0 or "/" in name[dot:]:
        return None
    return _EXTENSIONS.get(name[dot:].lower())


@dataclass(frozen=True)
class ValidationOptions:
    max_file_bytes: int = 2 * 1024**3
    max_line_bytes: int = 8 * 1024**2
    """A JSONL line, a .json array element or a Parquet row (as compact JSON) over this is an error."""
    max_seq_length: int = 2048
    reserved_tokens: tuple[str, ...] = PHI3_RESERVED
    min_examples: int = 10
    policy: Policy = "strict"
    max_drop_fraction: float = 0.05
    """Under ``drop-invalid``: the dataset is rejected when more than this fraction of rows is invalid."""
    max_examples_per_code: int = 5
    test_fraction: float = 0.05
    """Used only when no test file is given: the share of rows the deterministic hash split sends to test."""

    def __post_init__(self) -> None:
        if self.policy not in ("strict", "drop-invalid"):
            raise ValueError(f"policy must be 'strict' or 'drop-invalid', not {self.policy!r}")
        for name in ("max_file_bytes", "max_line_bytes", "max_seq_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0.0 <= self.max_drop_fraction <= 1.0 or not 0.0 <= self.test_fraction < 1.0:
            raise ValueError("max_drop_fraction must be in [0, 1] and test_fraction in [0, 1)")


class DatasetSource(Protocol):
    """A dataset file: ``name`` appears in messages; ``open()`` gives a readable binary stream
    (seekable for Parquet). The validator opens each source once and closes the stream."""

    @property
    def name(self) -> str: ...

    @property
    def fmt(self) -> Format: ...

    def open(self) -> IO[bytes]: ...


@dataclass(frozen=True)
class LocalFile:
    """A dataset on the local disk (the CLI's source)."""

    path: Path
    fmt: Format

    @property
    def name(self) -> str:
        return str(self.path)

    @classmethod
    def at(cls, path: str | Path) -> LocalFile:
        """A local file with its format taken from the extension; ValueError if it has none."""
        fmt = detect_format(str(path))
        if fmt is None:
            raise ValueError(f"{path}: unknown dataset format (expected .jsonl, .ndjson, .json or .parquet)")
        return cls(Path(path), fmt)

    def open(self) -> IO[bytes]:
        return self.path.open("rb", buffering=0)
