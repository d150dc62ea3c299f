"""The validator's building blocks, and its constant-memory promise."""

from __future__ import annotations

import hashlib
import io
import random
import threading
import tracemalloc
from pathlib import Path

import orjson
import pytest

from shared.validation import LocalFile, validate_dataset
from shared.validation.linetable import LineTable
from shared.validation.readers import CHUNK, Chunks


def test_line_table_dict_then_compact_agree() -> None:
    rng = random.Random(1)
    keys = [rng.getrandbits(64) or 1 for _ in range(3000)]
    small, compact = LineTable(), LineTable(small=100)
    for line, key in enumerate(keys + keys[:500], start=1):
        assert small.add(key, line) == compact.add(key, line)
    assert compact.compact and not small.compact and len(small) == len(compact) == 3000
    assert all(compact.get(k) == small.get(k) == i + 1 for i, k in enumerate(keys))
    assert compact.add(keys[10], 9999) == 11 and compact.get(12345) == 0
    assert sorted(compact.items()) == sorted(small.items()) == sorted((k, i + 1) for i, k in enumerate(keys))


def test_chunks_hashes_counts_and_stops_at_the_limit() -> None:
    data = bytes(range(256)) * 40_000  # ~10 MB: several chunks, hashed on the helper thread
    chunks = Chunks(io.BytesIO(data), limit=len(data), chunk_size=1 << 20)
    assert b"".join(chunks) == data
    chunks.close()
    assert chunks.sha256 == hashlib.sha256(data).hexdigest() and chunks.bytes_read == len(data)
    assert not chunks.too_large

    limited = Chunks(io.BytesIO(data), limit=3 << 20, chunk_size=1 << 20)
    assert sum(len(c) for c in limited) == 3 << 20
    limited.close()
    assert limited.too_large and limited.bytes_read == 3 << 20


def test_chunks_helper_thread_ends_when_the_reader_stops_early() -> None:
    before = threading.active_count()
    chunks = Chunks(io.BytesIO(b"x" * (8 << 20)), limit=1 << 30, chunk_size=1 << 20)
    next(iter(chunks)), next(iter(chunks))
    chunks.close()
    assert threading.active_count() == before


def _rows(n: int, rng: random.Random) -> bytes:
    words = ["data", "model", "language", "training", "the", "of", "and", "to", "in", "is", "that", "answer", "question", "value"]
    out = []
    for i in range(n):
        turns = rng.choice((2, 4, 6))
        messages = [
            {"role": ("user", "assistant")[k % 2], "content": " ".join(rng.choices(words, k=rng.randint(50, 400)))}
            for k in range(turns)
        ]
        out.append(orjson.dumps({"prompt": messages[0]["content"], "prompt_id": str(i), "messages": messages}))
    return b"\n".join(out) + b"\n"


def _peak(path: Path) -> int:
    sent = [0]

    def sink(split: str, row: bytes) -> None:
        sent[0] += len(row)

    tracemalloc.start()
    try:
        report = validate_dataset(LocalFile.at(path), sink=sink)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.valid and sent[0] > 0.9 * path.stat().st_size
    return peak


def test_memory_stays_flat_as_the_file_grows(tmp_path: Path) -> None:
    rng = random.Random(5)
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    small.write_bytes(_rows(1200, rng))  # ~5 MB
    with large.open("wb") as f:  # ~40 MB
        for _ in range(8):
            f.write(_rows(1200, rng))
    peak_small, peak_large = _peak(small), _peak(large)
    print(f"tracemalloc peak: {peak_small / 1e6:.1f} MB at 5 MB, {peak_large / 1e6:.1f} MB at 40 MB")
    assert small.stat().st_size > 4_500_000 and large.stat().st_size > 8 * 4_500_000
    assert peak_small < 30 * 1024 * 1024
    # 8x the data, +35 MB: the duplicate table grows (~100 bytes a row while it is a dict, ~1 MB
    # here), and how many 2 MiB chunks wait for the hashing thread at the peak depends on timing
    # (at most its queue's 3)
    assert peak_large - peak_small < 1_000_000 + 3 * CHUNK, (peak_small, peak_large)


def test_a_huge_line_is_never_held(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with path.open("wb") as f:
        f.write(_rows(20, random.Random(1)))
        f.write(b'{"prompt": "' + b"x" * (24 << 20) + b'"}\n')  # 24 MiB line, limit 8 MiB
        f.write(_rows(20, random.Random(2)))
    tracemalloc.start()
    try:
        report = validate_dataset(LocalFile.at(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(report.errors) == {"row_too_large"} and report.errors["row_too_large"].examples[0].line == 21
    assert peak < 20 * 1024 * 1024


def test_chunks_survives_a_failing_hash_and_reports_it() -> None:
    class Broken:
        def update(self, data: bytes) -> None:
            raise MemoryError("no room")

    chunks = Chunks(io.BytesIO(b"y" * (6 << 20)), limit=1 << 30, chunk_size=1 << 20, depth=1)
    chunks._sha = Broken()  # type: ignore[assignment]
    assert sum(len(c) for c in chunks) == 6 << 20  # the reader never blocked
    chunks.close()
    with pytest.raises(MemoryError, match="no room"):
        _ = chunks.sha256
