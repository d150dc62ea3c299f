"""Verdicts, policies, the split, statistics and the report itself."""

from __future__ import annotations

import hashlib
import io
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import orjson
import pytest
import xxhash

from shared.validation import LocalFile, ValidationOptions, ValidationReport, estimate_tokens, validate_dataset
from shared.validation.histogram import EXACT, Histogram


def conv(i: int, answer: str | None = None, turns: int = 1) -> dict[str, Any]:
    messages = []
    for t in range(turns):
        messages += [{"role": "user", "content": f"q{i}.{t}"}, {"role": "assistant", "content": answer or f"a{i}.{t}"}]
    return {"prompt": f"q{i}", "prompt_id": str(i), "messages": messages}


BAD = {"messages": [{"role": "user", "content": "no answer"}]}


def write_jsonl(tmp_path: Path, rows: list[Any], name: str = "train.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def run(train: Path, test: Path | None = None, **options: Any) -> tuple[ValidationReport, list[tuple[str, bytes]]]:
    out: list[tuple[str, bytes]] = []
    report = validate_dataset(
        LocalFile.at(train),
        LocalFile.at(test) if test else None,
        ValidationOptions(**options),
        lambda split, row: out.append((split, row)),
    )
    return report, out


# -- the split -------------------------------------------------------------------------------------
def test_hash_split_is_deterministic_and_follows_the_documented_formula(tmp_path: Path) -> None:
    rows = [conv(i) for i in range(2000)]
    path = write_jsonl(tmp_path, rows)
    first, out = run(path, test_fraction=0.1)
    again, out_again = run(path, test_fraction=0.1)
    assert out == out_again and first.split == again.split
    for split, row in out:
        assert split == ("test" if xxhash.xxh3_64_intdigest(row) / 2**64 < 0.1 else "train")
    assert first.split is not None and 150 <= first.split["test"] <= 250
    assert [row for _s, row in out] == [orjson.dumps(r) for r in rows]  # input order, compact JSON


def test_split_is_the_same_whatever_the_file_format(tmp_path: Path) -> None:
    rows = [conv(i) for i in range(300)]
    a = run(write_jsonl(tmp_path, rows), test_fraction=0.2)[1]
    (tmp_path / "t.json").write_text(__import__("json").dumps(rows, indent=3))
    b = run(tmp_path / "t.json", test_fraction=0.2)[1]
    assert a == b


def test_a_test_file_is_used_as_is_and_overlap_is_reported(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path, [conv(i) for i in range(20)])
    test = write_jsonl(tmp_path, [conv(100), conv(3), conv(101), conv(7)], "test.jsonl")
    report, out = run(train, test)
    assert report.valid and report.split == {"train": 20, "test": 4}
    assert [s for s, _ in out] == ["train"] * 20 + ["test"] * 4
    group = report.warnings["train_test_overlap"]
    assert group.count == 2
    assert [(e.file, e.line, e.related_line) for e in group.examples] == [("test", 2, 4), ("test", 4, 8)]
    assert "duplicate_conversation" not in report.warnings


def test_no_sink_means_no_split(tmp_path: Path) -> None:
    report = validate_dataset(LocalFile.at(write_jsonl(tmp_path, [conv(i) for i in range(20)])))
    assert report.split is None and report.valid


def test_hash_split_that_leaves_test_empty_warns(tmp_path: Path) -> None:
    report, _ = run(write_jsonl(tmp_path, [conv(i) for i in range(12)]), test_fraction=1e-9)
    assert report.valid and "empty_test_split" in report.warnings
    headline = report.summary().splitlines()[0]
    assert headline.endswith(f", {len(report.warnings)} warning codes"), headline
    one = ValidationReport.from_dict({**report.to_dict(), "warnings": {"empty_test_split": report.to_dict()[
        "warnings"]["empty_test_split"]}})
    assert one.summary().splitlines()[0].endswith(", 1 warning code"), one.summary()  # not "1 warning codes"


# -- policies --------------------------------------------------------------------------------------
def rows_with_invalid(n: int, bad: int) -> list[Any]:
    rows: list[Any] = [conv(i) for i in range(n)]
    for k in range(bad):
        rows[k * (n // bad)] = BAD
    return rows


def test_strict_rejects_any_error_but_streams_only_valid_rows(tmp_path: Path) -> None:
    report, out = run(write_jsonl(tmp_path, rows_with_invalid(100, 3)))
    assert not report.valid and report.errors["missing_assistant"].count == 3
    assert len(out) == 97 and report.dropped.count == 0
    assert report.summary().startswith("INVALID: 3 errors in 100 rows — missing_assistant (3): line 1, line 34, line 67")


def test_drop_invalid_drops_a_few_bad_rows(tmp_path: Path) -> None:
    report, out = run(write_jsonl(tmp_path, rows_with_invalid(100, 3)), policy="drop-invalid")
    assert report.valid and len(out) == 97
    assert all(orjson.loads(row) != BAD for _s, row in out)
    assert report.dropped.count == 3 and report.dropped.fraction == 0.03
    assert [(d.line, d.codes) for d in report.dropped.examples] == [(1, ("missing_assistant",))] * 1 + [
        (34, ("missing_assistant",)),
        (67, ("missing_assistant",)),
    ]
    assert report.errors["missing_assistant"].count == 3  # still listed
    assert report.summary().startswith("VALID: 97 of 100 rows kept; 3 invalid rows dropped (3.0%, limit 5.0%)")


def test_drop_invalid_threshold_is_inclusive(tmp_path: Path) -> None:
    assert run(write_jsonl(tmp_path, rows_with_invalid(100, 5)), policy="drop-invalid")[0].valid
    report = run(write_jsonl(tmp_path, rows_with_invalid(100, 6)), policy="drop-invalid")[0]
    assert not report.valid and "too_many_invalid" in report.errors
    assert "6 of 100 rows are invalid (6.0%)" in report.errors["too_many_invalid"].examples[0].message
    assert report.dropped.count == 0  # nothing is kept from a rejected dataset


def test_drop_invalid_still_rejects_file_level_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(orjson.dumps([conv(i) for i in range(50)])[:-1])  # truncated array
    report = run(path, policy="drop-invalid")[0]
    assert not report.valid and report.errors["malformed_json_array"].scope == "file"


def test_too_few_valid_examples(tmp_path: Path) -> None:
    report = run(write_jsonl(tmp_path, [conv(i) for i in range(9)] + [BAD]), policy="drop-invalid")[0]
    assert not report.valid and "too_few_examples" in report.errors
    assert "9 valid training examples; at least 10" in report.errors["too_few_examples"].examples[0].message
    assert run(write_jsonl(tmp_path, [conv(i) for i in range(3)]), min_examples=3)[0].valid


def test_a_test_file_without_valid_rows_is_an_error(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path, [conv(i) for i in range(20)])
    test = write_jsonl(tmp_path, [BAD], "test.jsonl")
    report = run(train, test, policy="drop-invalid", max_drop_fraction=0.5)[0]
    assert not report.valid and report.errors["too_few_examples"].examples[0].file == "test"


# -- statistics ------------------------------------------------------------------------------------
def test_token_quantiles_match_numpy(tmp_path: Path) -> None:
    rng = random.Random(7)
    rows = [conv(i, answer="w" * rng.randint(1, 20_000), turns=rng.randint(1, 4)) for i in range(600)]
    report = run(write_jsonl(tmp_path, rows))[0]
    tokens = np.array([sum(estimate_tokens(m["content"]) for m in r["messages"]) for r in rows])
    stats = report.files["train"].tokens
    assert stats.total == tokens.sum() and stats.max == tokens.max()
    for q, got in ((50, stats.p50), (90, stats.p90)):
        want = float(np.percentile(tokens, q, method="inverted_cdf"))
        assert abs(got - want) <= 0.01 * want, (q, got, want)
    messages = np.array([len(r["messages"]) for r in rows])
    assert report.files["train"].messages_mean == round(messages.mean(), 3)
    assert (report.files["train"].messages_min, report.files["train"].messages_max) == (messages.min(), messages.max())


def test_histogram_is_exact_below_the_bound_and_within_one_percent_above() -> None:
    rng = random.Random(3)
    values = [rng.randint(0, EXACT - 1) for _ in range(5000)] + [int(rng.lognormvariate(10, 1.5)) for _ in range(5000)]
    histogram = Histogram()
    for v in values:
        histogram.add(v)
    ordered = sorted(values)
    for q in (0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
        want = ordered[max(1, math.ceil(q * len(values))) - 1]
        got = histogram.quantile(q)
        if want < EXACT:
            assert got == want
        else:
            assert abs(got - want) <= 0.01 * want
    assert histogram.maximum == max(values) and histogram.count == 10_000
    assert len(histogram.large) < 1500 and Histogram().quantile(0.5) == 0


def test_file_stats(tmp_path: Path) -> None:
    rows = [conv(i, turns=1 + i % 3) for i in range(30)] + [BAD]
    path = write_jsonl(tmp_path, rows)
    stats = run(path)[0].files["train"]
    assert (stats.rows, stats.valid_rows, stats.invalid_rows) == (31, 30, 1)
    assert stats.bytes == path.stat().st_size and stats.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert stats.format == "jsonl" and stats.complete and stats.name == str(path)
    assistant = sum(estimate_tokens(m["content"]) for r in rows[:30] for m in r["messages"] if m["role"] == "assistant")
    assert stats.tokens.assistant_total == assistant


# -- the report ------------------------------------------------------------------------------------
def test_report_json_round_trip_and_stable_keys(tmp_path: Path) -> None:
    rows = [*rows_with_invalid(40, 2), {**conv(1), "extra": 1}]
    train = write_jsonl(tmp_path, rows)
    test = write_jsonl(tmp_path, [conv(5), conv(200)], "test.jsonl")
    report = run(train, test, policy="drop-invalid", max_drop_fraction=0.1)[0]
    raw = report.to_json()
    assert ValidationReport.from_json(raw) == report
    assert raw == report.to_json()
    data = orjson.loads(raw)
    assert list(data) == ["valid", "policy", "summary", "errors", "warnings", "files", "dropped", "split", "options"]
    assert list(data["errors"]) == sorted(data["errors"])
    assert data["summary"] == report.summary().splitlines()[0]
    assert data["files"]["test"]["rows"] == 2 and data["options"]["policy"] == "drop-invalid"


def test_examples_are_capped_per_code_but_counts_are_exact(tmp_path: Path) -> None:
    report = run(write_jsonl(tmp_path, rows_with_invalid(100, 20)), max_examples_per_code=3)[0]
    group = report.errors["missing_assistant"]
    assert group.count == 20 and len(group.examples) == 3


def test_summary_is_short_and_names_the_problems(tmp_path: Path) -> None:
    rows: list[Any] = [conv(i) for i in range(50)]
    rows[3], rows[9] = BAD, {"messages": "x"}
    report = run(write_jsonl(tmp_path, rows))[0]
    summary = report.summary()
    assert 3 <= len(summary.splitlines()) <= 15
    assert summary.splitlines()[0] == (
        "INVALID: 2 errors in 50 rows — messages_not_list (1): line 10; missing_assistant (1): line 4"
    )
    assert "train:" in summary and "sha256" in summary


# -- what propagates -------------------------------------------------------------------------------
class Vanished(Exception):
    pass


@dataclass(frozen=True)
class Flaky:
    data: bytes
    fmt: Any = "jsonl"
    name: str = "flaky.jsonl"

    def open(self) -> IO[bytes]:
        return cast(IO[bytes], _Fails(self.data))


class _Fails(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._inner, self.closed_by_us = io.BytesIO(data), False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._inner.tell() > 0:
            raise Vanished("blob deleted mid-read")
        return self._inner.readinto(memoryview(b)[:1000])


def test_stream_errors_propagate_with_their_own_type() -> None:
    data = b"".join(orjson.dumps(conv(i)) + b"\n" for i in range(100))
    with pytest.raises(Vanished):
        validate_dataset(Flaky(data))


def test_sink_errors_propagate(tmp_path: Path) -> None:
    def sink(split: str, row: bytes) -> None:
        raise RuntimeError("storage down")

    path = write_jsonl(tmp_path, [conv(i) for i in range(20)])
    with pytest.raises(RuntimeError, match="storage down"):
        validate_dataset(LocalFile.at(path), sink=sink)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="policy"):
        ValidationOptions(policy="lenient")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_line_bytes"):
        ValidationOptions(max_line_bytes=0)
