"""A JSONL file validated by several worker processes gives the report one process gives."""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli import main as cli
from shared.validation import (
    LocalFile,
    Split,
    ValidationOptions,
    ValidationReport,
    parallel,
    validate_dataset,
    validator,
)
from shared.validation.readers import CHUNK


def conv(i: int, turns: int = 2, **extra: Any) -> dict[str, Any]:
    messages = [
        {"role": ("user", "assistant")[k % 2], "content": f"turn {k} of conversation {i}: " + "word " * (i % 40)}
        for k in range(turns)
    ]
    return {"prompt": messages[0]["content"], "prompt_id": str(i), "messages": messages, **extra}


def messy_lines(n: int, seed: int) -> list[bytes]:
    """Valid rows mixed with every kind of trouble a worker's range may hold, repeats included."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    for i in range(n):
        pick = rng.random()
        if pick < 0.08:
            lines.append(orjson.dumps(conv(rng.randrange(max(i, 1)))))  # a repeat of an earlier row (mostly)
        elif pick < 0.10:
            lines.append(b"{not json")
        elif pick < 0.12:
            lines.append(b"")  # a blank line: counted, not a row
        elif pick < 0.14:
            lines.append(orjson.dumps({"messages": [{"role": "user", "content": "no answer"}]}))
        elif pick < 0.15:
            lines.append(orjson.dumps(conv(i, extra_key=i)))  # unknown key
        elif pick < 0.16:
            lines.append(orjson.dumps(conv(i, turns=4)) + b"\r")  # CRLF
        elif pick < 0.17:
            lines.append(b'{"messages": [{"role": "user", "content": "' + b"x" * 3000 + b'"}]}')  # over max_line
        elif pick < 0.18:
            lines.append(orjson.dumps(conv(i, turns=2)).replace(b"conversation", "café".encode()))
        elif pick < 0.19:
            lines.append(b"\xff\xfe bad utf-8")
        else:
            lines.append(orjson.dumps(conv(i, turns=2 + 2 * (i % 3))))
    return lines


OPTIONS = ValidationOptions(policy="drop-invalid", max_drop_fraction=1.0, max_line_bytes=2000, max_seq_length=60)


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_RANGE", 4096)  # a few KB per worker, so small files split


def report(path: Path, workers: int, test: Path | None = None) -> ValidationReport:
    return validate_dataset(LocalFile.at(path), LocalFile.at(test) if test else None, OPTIONS, workers=workers)


def test_plan_cuts_after_newlines_and_covers_the_file(tmp_path: Path, small_ranges: None) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(messy_lines(400, seed=1)) + b"\n")
    size = path.stat().st_size
    ranges = parallel.plan(LocalFile.at(path), size, 5)
    data = path.read_bytes()
    assert len(ranges) == 5 and ranges[0][0] == 0 and ranges[-1][1] == size
    assert all(end == start for (_, end), (start, _) in itertools.pairwise(ranges))
    assert all(data[start - 1 : start] == b"\n" for start, _ in ranges[1:])


def test_plan_keeps_small_files_and_single_huge_lines_in_one_process(tmp_path: Path, small_ranges: None) -> None:
    one_line = tmp_path / "one.jsonl"
    one_line.write_bytes(orjson.dumps(conv(1, turns=2)) * 1000)  # no newline at all
    assert parallel.plan(LocalFile.at(one_line), one_line.stat().st_size, 4) == []
    small = tmp_path / "small.jsonl"
    small.write_bytes(b"\n".join(messy_lines(10, seed=2)))
    assert parallel.plan(LocalFile.at(small), small.stat().st_size, 4) == []


@pytest.fixture
def ranges_run(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many ranges each parallel validation ran (a spy on the validator's call)."""
    runs: list[int] = []
    real = parallel.scan_in_parallel

    def spy(source: LocalFile, split: Split, ranges: list[tuple[int, int]], **kw: Any) -> Any:
        runs.append(len(ranges))
        return real(source, split, ranges, **kw)

    monkeypatch.setattr(validator, "scan_in_parallel", spy)
    return runs


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_any_number_of_workers_gives_the_same_report(
    tmp_path: Path, small_ranges: None, ranges_run: list[int], workers: int
) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(messy_lines(1500, seed=workers)))  # BOM, no final newline
    one = report(path, workers=1)
    assert ranges_run == []
    many = report(path, workers=workers)
    assert ranges_run == [workers]
    assert many.to_json() == one.to_json()
    # the mess really is there, so the comparison covers it
    assert {"invalid_json", "invalid_utf8", "row_too_large", "missing_assistant"} <= set(one.errors)
    assert {"duplicate_conversation", "unknown_keys", "exceeds_max_seq_length"} <= set(one.warnings)
    assert one.warnings["duplicate_conversation"].count > 25


def test_repeats_across_ranges_point_at_the_first_copy(tmp_path: Path, small_ranges: None) -> None:
    rows = [orjson.dumps(conv(i)) for i in range(300)]
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(rows + rows[:3] + rows[:3]) + b"\n")  # the repeats sit in the last range
    many = report(path, workers=4)
    group = many.warnings["duplicate_conversation"]
    assert group.count == 6
    assert [(i.line, i.related_line) for i in group.examples] == [(301, 1), (302, 2), (303, 3), (304, 1), (305, 2)]
    assert many.to_json() == report(path, workers=1).to_json()


def test_a_test_file_is_checked_against_the_train_file_in_parallel(
    tmp_path: Path, small_ranges: None, ranges_run: list[int]
) -> None:
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_bytes(b"\n".join(messy_lines(800, seed=5)) + b"\n")
    test.write_bytes(b"\n".join(messy_lines(600, seed=5)[200:]) + b"\n")  # overlaps train
    many = report(train, workers=3, test=test)
    assert ranges_run == [3, 3]
    assert many.warnings["train_test_overlap"].count > 300
    assert many.to_json() == report(train, workers=1, test=test).to_json()


def test_spawned_workers_agree_with_forked_ones(
    tmp_path: Path, small_ranges: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spawn is what runs inside the Functions host (other threads): nothing is inherited there, so
    the conversation keys must not depend on the process (Python's str hash would)."""
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(messy_lines(600, seed=9)) + b"\n")
    forked = report(path, workers=2)
    monkeypatch.setattr(parallel, "start_method", lambda: "spawn")
    monkeypatch.setattr(parallel, "MIN_RANGE", 4096)
    spawned = report(path, workers=2)
    assert spawned.to_json() == forked.to_json() == report(path, workers=1).to_json()
    assert not multiprocessing.active_children()


def test_fork_only_from_a_single_threaded_process() -> None:
    import threading

    assert parallel.start_method() in ("fork", "spawn")
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    try:
        assert parallel.start_method() == "spawn"
    finally:
        stop.set()
        helper.join()


def test_a_utf16_file_is_refused_whatever_the_workers(tmp_path: Path, small_ranges: None) -> None:
    path = tmp_path / "t.jsonl"
    text = b"\n".join(orjson.dumps(conv(i)) for i in range(500)).decode()
    path.write_bytes("\ufeff".encode("utf-16-le") + text.encode("utf-16-le"))
    many = report(path, workers=4)
    assert "unsupported_encoding" in many.errors and not many.files["train"].complete
    assert many.to_json() == report(path, workers=1).to_json()


def test_cli_workers_option(tmp_path: Path, small_ranges: None, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(conv(i)) for i in range(500)) + b"\n")
    assert cli.main(["validate", str(path), "--json", "--workers", "3"]) == 0
    three = capsys.readouterr().out
    assert cli.main(["validate", str(path), "--json", "--workers", "1"]) == 0
    assert capsys.readouterr().out == three
    with pytest.raises(SystemExit):
        cli.main(["validate", str(path), "--workers", "0"])


def test_ranges_longer_than_a_read_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker reads its range into one reused 2 MiB buffer: lines that span two fills, and
    errors in both, come out as in one process."""
    monkeypatch.setattr(parallel, "MIN_RANGE", 1024 * 1024)
    path = tmp_path / "train.jsonl"
    lines = messy_lines(4000, seed=11)
    path.write_bytes(b"\n".join(lines * 8) + b"\n")  # ~5 MB: each range needs several buffer fills
    assert path.stat().st_size > 2 * 2 * CHUNK
    many = report(path, workers=2)
    assert many.to_json() == report(path, workers=1).to_json()
    assert many.warnings["duplicate_conversation"].count > 7 * 3000  # the later copies


def _die(task: object) -> None:
    os._exit(3)  # a worker killed mid-range (the OOM killer, say)


def test_a_dead_worker_means_one_process_not_a_hang(
    tmp_path: Path, small_ranges: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(messy_lines(600, seed=3)) + b"\n")
    monkeypatch.setattr(parallel, "start_method", lambda: "fork")  # the child sees the patched function
    monkeypatch.setattr(parallel, "scan_range", _die)
    with caplog.at_level(logging.WARNING):
        survived = report(path, workers=2)
    assert "a validation worker died" in caplog.text
    monkeypatch.undo()
    assert survived.to_json() == report(path, workers=1).to_json()


_SLOW_CLI = """
import sys, time
from cli import main as cli
from shared.validation import parallel
parallel.MIN_RANGE = 4096
real_scan = parallel.scan_range
def slow_scan(task):
    time.sleep(30)
    return real_scan(task)
def slow_sha(stream, size):
    print("workers started", flush=True)
    time.sleep(30)
parallel.scan_range, parallel._sha256 = slow_scan, slow_sha
sys.exit(cli.main(["validate", sys.argv[1]]))
"""


def test_ctrl_c_stops_the_workers_and_exits_130(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(conv(i)) for i in range(500)) + b"\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CLI, str(path)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "workers started\n"
        time.sleep(0.3)  # the workers are sleeping in their ranges
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole group gets it
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.strip().endswith("interrupted"), err
    deadline = time.monotonic() + 5
    while (alive := _group_alive(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
