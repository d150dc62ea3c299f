"""A large local JSONL file validated on every core: ranges of whole lines in worker processes.

Parsing and checking rows is CPU-bound Python, so threads would share one core; processes don't.
The file is cut into one contiguous range per worker, each cut just after a newline, and each
worker reads its own range (``scan.scan_range``) while this process reads the whole file once for
its SHA-256 (``hashlib`` releases the GIL; the digest must see the bytes in order). The validator
then merges the passes in file order, so the report is the same as from one process.

Workers start by ``fork`` when this process has a single thread (cheap: nothing is imported
again), else by ``spawn``: forking a process with other threads — the Functions host's worker
has several — can deadlock the child.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import IO

from shared.validation.linetable import LineTable
from shared.validation.options import LocalFile, Split, ValidationOptions
from shared.validation.scan import Pass, RangeTask, scan_range

MIN_RANGE = 16 * 1024**2
"""The smallest share worth a worker: below ~2 × this a file is validated in one process."""
_PROBE = 64 * 1024


def available_cpus() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def plan(source: LocalFile, size: int, workers: int) -> list[tuple[int, int]]:
    """Byte ranges [start, end) covering the file, each starting at 0 or just after a newline; an
    empty list when the file is too small to be worth splitting (or is one huge line)."""
    count = min(workers, size // MIN_RANGE)
    if count < 2:
        return []
    starts = [0]
    with source.open() as stream:
        for i in range(1, count):
            at = max(size * i // count, starts[-1] + 1)
            stream.seek(at)
            while data := stream.read(_PROBE):
                newline = data.find(b"\n")
                if newline >= 0:
                    at += newline + 1
                    break
                at += len(data)
            if at >= size:
                break
            starts.append(at)
    if len(starts) < 2:
        return []
    return list(zip(starts, [*starts[1:], size], strict=True))


def start_method() -> str:
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


def scan_in_parallel(
    source: LocalFile,
    split: Split,
    ranges: list[tuple[int, int]],
    *,
    options: ValidationOptions,
    train: LineTable | None,
) -> tuple[list[Pass], str]:
    """Each range's pass, in file order, and the SHA-256 of the bytes the ranges cover, which this
    process reads once while the workers run."""
    context = multiprocessing.get_context(start_method())
    # (an executor, not multiprocessing.Pool: a worker that dies — killed for memory, say — fails
    # its future with BrokenProcessPool instead of leaving the caller waiting forever)
    with ProcessPoolExecutor(len(ranges), mp_context=context) as pool:
        pending = [pool.submit(scan_range, RangeTask(source, split, a, b, options, train)) for a, b in ranges]
        with source.open() as stream:
            sha = _sha256(stream, ranges[-1][1])
        passes = [future.result() for future in pending]
    return passes, sha


def _sha256(stream: IO[bytes], size: int) -> str:
    """The digest of the first ``size`` bytes, read into one reused buffer."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(1024 * 1024))
    left = size
    while left and (n := stream.readinto(buffer[: min(left, len(buffer))])):  # type: ignore[attr-defined]
        digest.update(buffer[:n])
        left -= n
    if left:
        raise OSError(f"the file ended {left:,} bytes early: it changed while it was read")
    return digest.hexdigest()
