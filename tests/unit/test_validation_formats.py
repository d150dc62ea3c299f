"""Reading each format: positions of errors, encodings, chunk boundaries, size limits, Parquet."""

from __future__ import annotations

import decimal
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.validation import LocalFile, ValidationOptions, ValidationReport, detect_format, validate_dataset
from shared.validation.readers import HashingFile, JsonlRows, Problem, json_rows


def conv(i: int, **extra: Any) -> dict[str, Any]:
    q = f"question {i}?"
    return {"prompt": q, "prompt_id": str(i), "messages": [{"role": "user", "content": q},
            {"role": "assistant", "content": f"answer {i}."}], **extra}  # fmt: skip


ROWS = [conv(i) for i in range(12)]


def validate(path: Path, **options: Any) -> tuple[ValidationReport, list[bytes]]:
    out: list[bytes] = []
    report = validate_dataset(LocalFile.at(path), options=ValidationOptions(**options), sink=lambda s, b: out.append(b))
    return report, out


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def jsonl(rows: list[Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def parsed(rows: Iterator[Any]) -> list[tuple[int, int | None, Any]]:
    return [(line, offset, value) for line, offset, _size, value, _dumped in rows]


# -- formats by name -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.jsonl", "jsonl"), ("a.NDJSON", "jsonl"), ("dir/x.Json", "json"), ("a.b.parquet", "parquet"),
     ("a.csv", None), ("jsonl", None), ("a.json/x", None), ("", None)],
)  # fmt: skip
def test_detect_format(name: str, fmt: str | None) -> None:
    assert detect_format(name) == fmt


def test_local_file_refuses_an_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.jsonl"):
        LocalFile.at(tmp_path / "data.csv")


# -- JSON Lines ------------------------------------------------------------------------------------
def test_jsonl_invalid_json_line_column_and_offset(tmp_path: Path) -> None:
    first = orjson.dumps(ROWS[0]) + b"\n"
    bad = b'{"messages": [}'
    path = write(tmp_path, "t.jsonl", first + b"\n" + bad + b"\n" + jsonl(ROWS[1:]))
    report, _ = validate(path)
    issue = report.errors["invalid_json"].examples[0]
    assert (issue.line, issue.column) == (3, 15)  # the blank line 2 still counts as a line
    assert issue.byte_offset == len(first) + 1 + 14
    assert report.files["train"].rows == 13  # 12 good + 1 bad; blank lines are not rows
    assert set(report.errors) == {"invalid_json"}


def test_jsonl_column_counts_characters_not_bytes(tmp_path: Path) -> None:
    bad = '{"prompt": "héé", x}'.encode()
    path = write(tmp_path, "t.jsonl", jsonl(ROWS) + bad + b"\n")
    issue = validate(path)[0].errors["invalid_json"].examples[0]
    assert issue.column == 19 and issue.byte_offset == len(jsonl(ROWS)) + 20


def test_jsonl_invalid_utf8_gives_the_byte_offset(tmp_path: Path) -> None:
    head = jsonl(ROWS[:3])
    bad = b'{"messages": [{"role": "user", "content": "caf\xe9"}]}'
    path = write(tmp_path, "t.jsonl", head + bad + b"\n" + jsonl(ROWS[3:]))
    report, out = validate(path)
    issue = report.errors["invalid_utf8"].examples[0]
    assert issue.line == 4 and issue.byte_offset == len(head) + bad.index(b"\xe9")
    assert "0xe9" in issue.message and set(report.errors) == {"invalid_utf8"}
    assert len(out) == 12


def test_jsonl_with_bom_and_crlf_is_fine(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + jsonl(ROWS).replace(b"\n", b"\r\n")
    path = write(tmp_path, "t.jsonl", data)
    report, out = validate(path)
    assert report.valid and report.files["train"].rows == 12
    assert out == [orjson.dumps(r) for r in ROWS]
    assert report.files["train"].sha256 == hashlib.sha256(data).hexdigest()


def test_jsonl_bom_shifts_byte_offsets(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", b"\xef\xbb\xbf" + jsonl(ROWS) + b"{bad\r\n")
    issue = validate(path)[0].errors["invalid_json"].examples[0]
    assert issue.line == 13 and issue.byte_offset == 3 + len(jsonl(ROWS)) + 1


def test_jsonl_last_line_without_newline_and_trailing_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", jsonl(ROWS)[:-1])
    assert validate(path)[0].files["train"].rows == 12
    path = write(tmp_path, "u.jsonl", jsonl(ROWS) + b"\n  \r\n\n")
    report = validate(path)[0]
    assert report.valid and report.files["train"].rows == 12


def test_pretty_printed_json_in_a_jsonl_file_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", json.dumps(ROWS, indent=2).encode())
    report = validate(path)[0]
    assert not report.valid
    assert "name the file .json" in report.errors["invalid_json"].examples[0].message


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000])
def test_jsonl_chunk_boundaries_do_not_matter(size: int) -> None:
    data = b"\xef\xbb\xbf" + jsonl(ROWS[:4]) + b"\n{bad}\r\n" + b"x" * 0 + jsonl(ROWS[4:])
    whole = parsed(JsonlRows([data], 10_000))
    assert parsed(JsonlRows(pieces(data, size), 10_000)) == whole
    assert [line for line, _o, _v in whole] == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14]


@pytest.mark.parametrize("size", [1, 5, 50, 100_000])
def test_jsonl_over_long_line_is_skipped_without_losing_the_next(size: int) -> None:
    long_row = orjson.dumps(conv(99, prompt="p" * 500))
    data = jsonl(ROWS[:2]) + long_row + b"\n" + jsonl(ROWS[2:4]) + long_row  # last one has no newline
    rows = list(JsonlRows(pieces(data, size), 300))
    kinds = [(line, type(value).__name__) for line, _o, _s, value, _d in rows]
    assert kinds == [(1, "dict"), (2, "dict"), (3, "Problem"), (4, "dict"), (5, "dict"), (6, "Problem")]
    problem = rows[2][3]
    assert isinstance(problem, Problem) and problem.code == "row_too_large"
    assert rows[2][2] == len(long_row) and rows[3][1] == len(jsonl(ROWS[:2])) + len(long_row) + 1


def test_jsonl_over_long_line_reported_in_the_report(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", jsonl(ROWS) + orjson.dumps(conv(1, prompt="x" * 5000)) + b"\n")
    report = validate(path, max_line_bytes=1000)[0]
    issue = report.errors["row_too_large"].examples[0]
    assert issue.line == 13 and "over the 1,000 bytes row limit" in issue.message


def test_utf16_file_is_refused_up_front(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", "\ufeff".encode("utf-16-le") + jsonl(ROWS).decode().encode("utf-16-le"))
    report = validate(path)[0]
    assert set(report.errors) >= {"unsupported_encoding"}
    assert "UTF-16 LE" in report.errors["unsupported_encoding"].examples[0].message
    assert not report.files["train"].complete


# -- size limits -----------------------------------------------------------------------------------
def test_file_over_the_limit_is_refused_without_reading_when_seekable(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", jsonl(ROWS))
    report = validate(path, max_file_bytes=100)[0]
    assert "file_too_large" in report.errors and report.files["train"].rows == 0
    assert report.errors["file_too_large"].scope == "file" and not report.files["train"].complete
    assert report.files["train"].sha256 == "" and report.files["train"].bytes == path.stat().st_size


@dataclass(frozen=True)
class Unseekable:
    """A source whose stream cannot seek (like a streamed blob); counts what was read."""

    data: bytes
    fmt: Any = "jsonl"
    name: str = "stream.jsonl"

    def open(self) -> IO[bytes]:
        return cast(IO[bytes], _Counting(self.data))


class _Counting(io.RawIOBase):
    total = 0

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._inner.readinto(b)
        _Counting.total += n
        return n


def test_streamed_file_stops_reading_once_over_the_limit() -> None:
    data = jsonl(ROWS * 2000)  # ~2.4 MB, read in 2 MiB chunks
    _Counting.total = 0
    report = validate_dataset(Unseekable(data), options=ValidationOptions(max_file_bytes=1024 * 1024))
    assert "file_too_large" in report.errors and not report.valid
    assert _Counting.total == 1024 * 1024 + 1  # stopped one byte past the limit
    assert report.files["train"].rows == 0


def test_streamed_file_within_the_limit_validates() -> None:
    report = validate_dataset(Unseekable(jsonl(ROWS)), options=ValidationOptions(max_file_bytes=1024 * 1024))
    assert report.valid and report.files["train"].sha256 == hashlib.sha256(jsonl(ROWS)).hexdigest()


# -- .json arrays ----------------------------------------------------------------------------------
TRICKY = [
    conv(0, prompt='brackets ] } [ { and "quotes" and \\ backslashes \\" and ,'),
    {"prompt": "x", "messages": [{"role": "user", "content": "a\\\"]},{\"b"}, {"role": "assistant", "content": "}"}]},
    conv(2, meta={"deep": [[[[[[[[[[{"k": "]"}]]]]]]]]]]}),
    conv(3, prompt="ünïcödé — 東京 😀"),
    *ROWS,
]


def test_json_array_streams_tricky_strings_like_jsonl(tmp_path: Path) -> None:
    as_json, _ = validate(write(tmp_path, "t.json", json.dumps(TRICKY, indent=2).encode()))
    compact, compact_out = validate(write(tmp_path, "c.json", orjson.dumps(TRICKY)))
    as_jsonl, jsonl_out = validate(write(tmp_path, "t.jsonl", jsonl(TRICKY)))
    assert as_json.valid and compact.valid and as_jsonl.valid
    assert compact_out == jsonl_out == [orjson.dumps(r) for r in TRICKY]
    assert as_json.files["train"].rows == len(TRICKY)
    assert as_json.warnings["unknown_keys"].detail == {"meta": 1}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 4096])
def test_json_array_chunk_boundaries_do_not_matter(size: int) -> None:
    data = b"\xef\xbb\xbf" + json.dumps(TRICKY, indent=1).replace("\n", "\r\n").encode()
    rows = parsed(json_rows(pieces(data, size), 100_000))
    assert [value for _l, _o, value in rows] == TRICKY
    assert [line for line, _o, _v in rows] == list(range(1, len(TRICKY) + 1))
    assert rows == parsed(json_rows([data], 100_000))


def test_json_row_offsets_point_at_each_element() -> None:
    data = b'[ {"a": 1},\n  {"b": 2} ]'
    rows = parsed(json_rows([data], 1000))
    assert [(line, offset) for line, offset, _v in rows] == [(1, 2), (2, 14)]


def test_json_invalid_element_is_a_row_error_and_reading_goes_on(tmp_path: Path) -> None:
    text = orjson.dumps(ROWS).decode()
    bad = '{"messages": [1,], "x": "é"}'
    data = ("[" + bad + ",\n" + text[1:]).encode()
    report, out = validate(write(tmp_path, "t.json", data))
    with pytest.raises(orjson.JSONDecodeError) as raised:
        orjson.loads(bad)
    at = raised.value.pos  # a character index; the text before it is ASCII
    issue = report.errors["invalid_json"].examples[0]
    assert issue.line == 1 and issue.column == at + 1 and issue.byte_offset == 1 + at
    assert report.files["train"].rows == 13 and len(out) == 12
    assert set(report.errors) == {"invalid_json"}


def test_json_scalars_in_the_array_are_rows_that_are_not_objects(tmp_path: Path) -> None:
    body = ",".join(['1', '"text"', "null", "true", "-2.5e3"] + [orjson.dumps(r).decode() for r in ROWS])
    report = validate(write(tmp_path, "t.json", f"[{body}]".encode()))[0]
    assert report.errors["row_not_object"].count == 5 and set(report.errors) == {"row_not_object"}
    assert [e.line for e in report.errors["row_not_object"].examples] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b'{"messages": []}', "not_a_json_array", "found '{'"),
        (b"", "not_a_json_array", "empty"),
        (b"  \n", "not_a_json_array", "found nothing"),
        (b'[{"a": 1} {"b": 2}]', "malformed_json_array", "expected ',' or ']' after row 1"),
        (b'[{"a": 1},]', "malformed_json_array", "trailing comma"),
        (b'[{"a": 1},,{"b": 2}]', "malformed_json_array", "',,'"),
        (b'[{"a": 1}] extra', "malformed_json_array", "after the array"),
        (b'[{"a": 1}, {"b": "unterminated', "malformed_json_array", "ends inside row 2"),
        (b'[{"a": 1}', "malformed_json_array", "after row 1, found the end of the file"),
        (b"[ \n", "malformed_json_array", "ends inside the array, after row 0"),
    ],
)
def test_json_broken_arrays_end_the_file(tmp_path: Path, data: bytes, code: str, words: str) -> None:
    report = validate(write(tmp_path, "t.json", data))[0]
    assert code in report.errors and not report.valid
    assert report.errors[code].scope == "file" and words in report.errors[code].examples[0].message
    assert not report.files["train"].complete


def test_json_empty_array_has_no_examples(tmp_path: Path) -> None:
    report = validate(write(tmp_path, "t.json", b" [ ] "))[0]
    assert set(report.errors) == {"too_few_examples"} and report.files["train"].complete


@pytest.mark.parametrize("size", [1, 3, 7, 64, 100_000])
def test_json_over_long_element_is_skipped_chunk_by_chunk(size: int) -> None:
    huge = conv(7, prompt='x\\"]}' * 200 + "\\")  # escaped quotes and brackets, ends in a backslash
    elements = [orjson.dumps(ROWS[0]), orjson.dumps(huge), orjson.dumps(ROWS[1])]
    data = b"[" + b",".join(elements) + b"]"
    rows = list(json_rows(pieces(data, size), 400))
    assert [type(r[3]).__name__ for r in rows] == ["dict", "Problem", "dict"]
    assert rows[1][3].code == "row_too_large" and rows[1][2] == len(elements[1])
    assert rows[2][3] == ROWS[1]


def test_json_over_long_string_element_or_scalar(tmp_path: Path) -> None:
    data = b'["' + b"s" * 5000 + b'", ' + b"1" * 5000 + b", " + orjson.dumps(ROWS)[1:]
    report = validate(write(tmp_path, "t.json", data), max_line_bytes=1000)[0]
    assert report.errors["row_too_large"].count == 2 and set(report.errors) == {"row_too_large"}


# -- Parquet ---------------------------------------------------------------------------------------
def write_parquet(tmp_path: Path, rows: list[dict[str, Any]], name: str = "t.parquet", **kw: Any) -> Path:
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows), path, **kw)
    return path


def test_parquet_rows_validate_like_jsonl(tmp_path: Path) -> None:
    rows = [*ROWS, conv(50, prompt="ünïcödé")]
    path = write_parquet(tmp_path, rows, row_group_size=5)
    report, out = validate(path)
    assert report.valid and report.files["train"].rows == 13
    assert out == [orjson.dumps(r) for r in rows]
    assert report.files["train"].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.files["train"].bytes == path.stat().st_size


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    rows = [*ROWS[:2], {"prompt": "p", "prompt_id": "x", "messages": [{"role": "user", "content": None}]}, *ROWS[2:]]
    report = validate(write_parquet(tmp_path, rows))[0]
    assert set(report.errors) == {"content_not_string", "missing_assistant"}
    assert report.errors["content_not_string"].examples[0].line == 3
    assert "null" in report.errors["content_not_string"].examples[0].message


def test_parquet_row_size_is_its_compact_json(tmp_path: Path) -> None:
    rows = [*ROWS, conv(1, prompt="z" * 3000)]
    report = validate(write_parquet(tmp_path, rows), max_line_bytes=2000)[0]
    assert report.errors["row_too_large"].examples[0].line == 13


def test_parquet_value_json_cannot_hold(tmp_path: Path) -> None:
    table = pa.table({"messages": [ROWS[0]["messages"]] * 12, "price": pa.array([decimal.Decimal("1.5")] * 12)})
    pq.write_table(table, tmp_path / "d.parquet")
    report = validate(tmp_path / "d.parquet")[0]
    assert set(report.errors) == {"unsupported_value", "too_few_examples"}
    assert "Decimal" in report.errors["unsupported_value"].examples[0].message


def test_parquet_that_is_not_parquet(tmp_path: Path) -> None:
    report = validate(write(tmp_path, "t.parquet", jsonl(ROWS)))[0]
    assert "parquet_unreadable" in report.errors and not report.files["train"].complete


def test_parquet_from_an_unseekable_stream_is_spooled(tmp_path: Path) -> None:
    path = write_parquet(tmp_path, ROWS)
    source = Unseekable(path.read_bytes(), fmt="parquet", name="blob.parquet")
    report = validate_dataset(source)
    assert report.valid and report.files["train"].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_hashing_file_digest_is_exact_whatever_the_read_order() -> None:
    data = bytes(range(256)) * 1000
    raw = io.BytesIO(data)
    file = HashingFile(raw, len(data))
    file.seek(-1000, io.SEEK_END)
    assert file.read(1000) == data[-1000:]  # a footer first
    file.seek(4)  # a small hole before the first read is filled
    assert file.read(100_000) == data[4:100_004]
    file.seek(200_000)  # a big jump is not hashed now
    assert file.read(10) == data[200_000:200_010]
    assert file.finish() == hashlib.sha256(data).hexdigest()
    assert file.reread == 4 + (len(data) - 100_004)


def test_parquet_falls_back_to_the_public_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow._parquet

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("signature changed")

    monkeypatch.setattr(pyarrow._parquet, "ParquetReader", refuse)
    path = write_parquet(tmp_path, ROWS, row_group_size=4)
    report, out = validate(path)
    assert report.valid and out == [orjson.dumps(r) for r in ROWS]


def test_a_broken_file_is_still_hashed_whole(tmp_path: Path) -> None:
    data = b'[{"a": 1} {"b": 2}]' + b" " * (5 << 20)  # broken at byte 10, 5 MiB long
    report = validate(write(tmp_path, "t.json", data))[0]
    stats = report.files["train"]
    assert not stats.complete and stats.bytes == len(data)
    assert stats.sha256 == hashlib.sha256(data).hexdigest()


def _json_lines_array(rows: list[Any], separator: bytes = b",\n") -> bytes:
    return b"[" + separator.join(orjson.dumps(r) for r in rows) + b"]"


@pytest.mark.parametrize("size", [7, 100, 1 << 20])
def test_json_fast_path_survives_its_separator_inside_a_row(size: int) -> None:
    """A nested object whose first key is the rows' first key matches the separator mid-row."""
    nested = {"prompt": "a", "history": [{"x": 1}, {"prompt": "b"}], "messages": ROWS[0]["messages"]}
    rows = [*ROWS[:5], nested, *ROWS[5:], nested, ROWS[0]]
    data = _json_lines_array(rows)
    assert [v for _l, _o, v in parsed(json_rows(pieces(data, size), 100_000))] == rows


def test_json_fast_path_with_rows_whose_first_key_varies() -> None:
    rows = [dict(reversed(list(r.items()))) if i % 2 else r for i, r in enumerate(ROWS * 10)]
    data = _json_lines_array(rows, b", ")
    got = parsed(json_rows(pieces(data, 333), 100_000))
    assert [v for _l, _o, v in got] == rows and [line for line, _o, _v in got] == list(range(1, len(rows) + 1))
    assert [o for _l, o, _v in got] == parsed_offsets(data)


def parsed_offsets(data: bytes) -> list[int]:
    """Where each element of a flat array of objects starts (the text after '[' or ', ')."""
    offsets, depth, in_string, escaped = [], 0, False, False
    for i, byte in enumerate(data):
        ch = chr(byte)
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            if depth == 1:
                offsets.append(i)
            depth += 1
        elif ch in "]}":
            depth -= 1
    return offsets


def test_json_fast_path_row_errors_match_the_scan(tmp_path: Path) -> None:
    rows = [orjson.dumps(r) for r in ROWS]
    rows[4] = b'{"prompt": "x", "messages": [1,], "e": "\xc3\xa9"}'  # invalid inside: a row error
    data = b"[" + b",\n".join(rows) + b"]"
    report, out = validate(write(tmp_path, "t.json", data))
    with pytest.raises(orjson.JSONDecodeError) as raised:
        orjson.loads(rows[4])
    issue = report.errors["invalid_json"].examples[0]
    assert issue.line == 5 and issue.byte_offset == data.index(rows[4]) + raised.value.pos
    assert len(out) == 11 and report.files["train"].rows == 12
