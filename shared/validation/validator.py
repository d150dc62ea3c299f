"""``validate_dataset``: one streaming pass per file — parse, check, measure, hash, split, emit.

Memory is constant in the file size except for duplicate detection: one 8-byte conversation hash
and a 4-byte line number per distinct valid conversation (see ``linetable``), for the train file
and, when given, the test file. Everything else (token histogram, counters, at most
``max_examples_per_code`` examples per code) is bounded.
"""

from __future__ import annotations

import heapq
import io
import logging
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import IO

from shared.validation.histogram import Histogram
from shared.validation.linetable import LineTable
from shared.validation.options import DatasetSource, LocalFile, RowSink, Split, ValidationOptions
from shared.validation.parallel import available_cpus, plan, scan_in_parallel
from shared.validation.readers import (
    Chunks,
    HashingFile,
    JsonlRows,
    Row,
    encoding_problem,
    json_rows,
    mib,
    parquet_rows,
)
from shared.validation.report import Dropped, DroppedRow, FileStats, Issue, TokenStats, ValidationReport
from shared.validation.rows import make_checker
from shared.validation.scan import Groups, Pass, scan

log = logging.getLogger(__name__)


class _FileTally:
    """One file's passes, merged in order."""

    def __init__(self) -> None:
        self.rows = self.valid = 0
        self.messages_total = 0
        self.messages_min = 0
        self.messages_max = 0
        self.tokens = Histogram()
        self.assistant_tokens = 0
        self.fatal = False


class _Validation:
    def __init__(self, options: ValidationOptions, sink: RowSink | None, hash_split: bool, workers: int) -> None:
        self.options = options
        self.sink = sink
        self.hash_split = hash_split
        self.workers = workers
        self.errors = Groups(options.max_examples_per_code)
        self.warnings = Groups(options.max_examples_per_code)
        self.dropped: list[DroppedRow] = []
        self.dropped_count = 0
        self.files: dict[Split, FileStats] = {}
        self.split_counts: dict[Split, int] = {"train": 0, "test": 0}
        self.tables: dict[Split, LineTable] = {}
        self.check = make_checker(options.reserved_tokens, options.max_seq_length)

    # -- one file ------------------------------------------------------------------------------
    def file(self, split: Split, source: DatasetSource) -> None:
        options = self.options
        tally = _FileTally()
        unit = "line" if source.fmt == "jsonl" else "row"
        stream = source.open()
        size = _size_if_known(stream)
        sha, read = "", 0  # no digest for a file refused before it is read
        try:
            if size is not None and size > options.max_file_bytes:
                self._too_large(split, size)
                tally.fatal = True
                read = size
            elif (work := self._ranges(source, size, stream)) is not None:
                stream.close()
                try:
                    sha, read = self._in_parallel(split, *work, tally, unit)
                except BrokenProcessPool as exc:
                    log.warning("a validation worker died (%s); validating %s in one process", exc, source.name)
                    stream = source.open()
                    sha, read = self._streamed(split, stream, source.fmt, tally, unit)
            elif source.fmt == "parquet":
                if size is None:  # Parquet needs to seek
                    stream, size = _spool(stream, options.max_file_bytes)
                if size > options.max_file_bytes:
                    self._too_large(split, None)
                    tally.fatal = True
                    read = size
                else:
                    hashing = HashingFile(stream, size)
                    rows = parquet_rows(hashing, options.max_line_bytes)
                    self._merge(split, self._scan(split, rows, unit), 0, tally, unit)
                    sha, read = hashing.finish(), size
            else:
                sha, read = self._streamed(split, stream, source.fmt, tally, unit)
        finally:
            stream.close()
        t = tally.tokens
        self.files[split] = FileStats(
            name=source.name,
            format=source.fmt,
            bytes=read,
            sha256=sha,
            complete=not tally.fatal,
            rows=tally.rows,
            valid_rows=tally.valid,
            invalid_rows=tally.rows - tally.valid,
            messages_mean=round(tally.messages_total / tally.valid, 3) if tally.valid else 0.0,
            messages_min=tally.messages_min,
            messages_max=tally.messages_max,
            tokens=TokenStats(
                total=t.total,
                p50=t.quantile(0.5),
                p90=t.quantile(0.9),
                max=t.maximum,
                assistant_total=tally.assistant_tokens,
                histogram=tuple(t.bins()),
            ),
        )

    def _ranges(
        self, source: DatasetSource, size: int | None, stream: IO[bytes]
    ) -> tuple[LocalFile, list[tuple[int, int]]] | None:
        """Worker ranges for a big local JSONL file checked without a sink (the sink wants rows in
        order, in this process); None means one pass here. A file that does not start as UTF-8
        JSONL (a UTF-16 byte-order mark) gets one pass too, which reports it."""
        if self.workers < 2 or self.sink is not None or source.fmt != "jsonl" or size is None:
            return None
        if not isinstance(source, LocalFile):  # workers open the file themselves
            return None
        head = stream.read(4)
        stream.seek(0)
        if encoding_problem(head):
            return None
        ranges = plan(source, size, self.workers)
        return (source, ranges) if ranges else None

    def _in_parallel(
        self, split: Split, source: LocalFile, ranges: list[tuple[int, int]], tally: _FileTally, unit: str
    ) -> tuple[str, int]:
        train = self.tables.get("train") if split == "test" else None
        passes, sha = scan_in_parallel(source, split, ranges, options=self.options, train=train)
        shift = 0
        for part in passes:
            self._merge(split, part, shift, tally, unit)
            shift += part.lines
        return sha, ranges[-1][1]

    def _streamed(self, split: Split, stream: IO[bytes], fmt: str, tally: _FileTally, unit: str) -> tuple[str, int]:
        """A JSONL or .json file read in chunks here, hashed on a helper thread as it goes."""
        chunks = Chunks(stream, self.options.max_file_bytes)
        try:
            max_line = self.options.max_line_bytes
            rows = iter(JsonlRows(chunks, max_line)) if fmt == "jsonl" else json_rows(chunks, max_line)
            self._merge(split, self._scan(split, rows, unit), 0, tally, unit)
            chunks.drain()  # after a fatal error: the digest still covers the whole file
        finally:
            chunks.close()
        if chunks.too_large:
            self._too_large(split, None)
            tally.fatal = True
        return chunks.sha256, chunks.bytes_read

    def _scan(self, split: Split, rows: Iterator[Row], unit: str) -> Pass:
        train = self.tables.get("train") if split == "test" else None
        return scan(
            rows,
            split,
            options=self.options,
            check=self.check,
            train=train,
            sink=self.sink,
            hash_split=self.hash_split,
            unit=unit,
        )

    def _merge(self, split: Split, part: Pass, shift: int, tally: _FileTally, unit: str) -> None:
        """Add the next pass of ``split`` (in file order), its lines moved down by ``shift``."""
        tally.rows += part.rows
        tally.valid += part.valid
        tally.messages_total += part.messages_total
        tally.assistant_tokens += part.assistant_tokens
        tally.fatal = tally.fatal or part.fatal
        tally.tokens.merge(part.tokens)
        if part.valid:
            first_valid = tally.valid == part.valid
            tally.messages_min = part.messages_min if first_valid else min(tally.messages_min, part.messages_min)
            tally.messages_max = max(tally.messages_max, part.messages_max)
        self.errors.absorb(part.errors, shift)
        self.warnings.absorb(part.warnings, shift)
        if part.no_system:
            self.warnings.count("no_system_prompt", part.no_system)
        for row in part.dropped[: max(0, self.options.max_examples_per_code - len(self.dropped))]:
            self.dropped.append(replace(row, line=row.line + shift))
        self.dropped_count += part.dropped_count
        for target, n in part.split_counts.items():
            self.split_counts[target] += n
        self._merge_repeats(split, part, shift, unit)

    def _merge_repeats(self, split: Split, part: Pass, shift: int, unit: str) -> None:
        """Duplicate conversations: repeats within the pass, and first copies in this pass of a
        conversation an earlier pass already had."""
        limit = self.options.max_examples_per_code
        table = self.tables.get(split)
        if table is None:  # the file's first pass: its table becomes the file's
            self.tables[split] = part.firsts
            found = [(line, part.firsts.get(key)) for line, key in part.repeat_examples]
            crossing = 0
        else:
            found = [
                (line + shift, table.get(key) or part.firsts.get(key) + shift) for line, key in part.repeat_examples
            ]
            pairs = ((line + shift, table.add(key, line + shift)) for key, line in part.firsts.items())
            earlier = [(line, first) for line, first in pairs if first]
            crossing = len(earlier)
            found += heapq.nsmallest(limit, earlier)
        found.sort()
        for line, first in found[:limit]:
            self.warnings.add(
                "duplicate_conversation", split, f"same messages as {unit} {first:,}", line=line, related_line=first
            )
        extra = part.repeats + crossing - min(len(found), limit)
        if extra:
            self.warnings.count("duplicate_conversation", extra)

    def _too_large(self, split: Split, size: int | None) -> None:
        limit = mib(self.options.max_file_bytes)
        how = f"is {mib(size)}" if size is not None else "goes on past the limit (reading stopped there)"
        self.errors.add("file_too_large", split, f"the {split} file {how}; the limit is {limit}")

    # -- the verdict ---------------------------------------------------------------------------
    def report(self) -> ValidationReport:
        options = self.options
        train = self.files["train"]
        if train.valid_rows < options.min_examples:
            self.errors.add(
                "too_few_examples",
                "train",
                f"{train.valid_rows:,} valid training examples; at least {options.min_examples:,} are needed",
            )
        test = self.files.get("test")
        if test is not None and test.valid_rows == 0:
            self.errors.add("too_few_examples", "test", "the test file has no valid example")
        rows = sum(f.rows for f in self.files.values())
        invalid = sum(f.invalid_rows for f in self.files.values())
        fraction = invalid / rows if rows else 0.0
        if options.policy == "drop-invalid" and fraction > options.max_drop_fraction:
            self.errors.add(
                "too_many_invalid",
                None,
                f"{invalid:,} of {rows:,} rows are invalid ({fraction:.1%}); drop-invalid allows at most "
                f"{options.max_drop_fraction:.1%}",
            )
        no_system = self.warnings.counts.get("no_system_prompt")
        if no_system:
            valid = sum(f.valid_rows for f in self.files.values())
            self.warnings.examples["no_system_prompt"] = [
                Issue("no_system_prompt", f"{no_system:,} of {valid:,} valid examples have no system message")
            ]
        split = None
        if self.sink is not None:
            split = dict(self.split_counts)
            if self.hash_split and split["test"] == 0 and split["train"] and options.test_fraction > 0:
                self.warnings.add(
                    "empty_test_split",
                    None,
                    f"the {options.test_fraction:.0%} hash split sent none of {split['train']:,} rows to test; "
                    "add rows or give a test file",
                )
        errors = self.errors.build()
        # strict: any error rejects; drop-invalid: only file- and dataset-level errors do
        strict = options.policy == "strict"
        valid = not errors if strict else all(g.scope == "row" for g in errors.values())
        dropped = Dropped(0, 0.0, ())
        if options.policy == "drop-invalid" and valid:
            dropped = Dropped(self.dropped_count, round(fraction, 6), tuple(self.dropped))
        return ValidationReport(
            valid=valid,
            policy=options.policy,
            errors=errors,
            warnings=self.warnings.build(),
            files=dict(self.files),
            dropped=dropped,
            split=split,
            options=options,
        )


def _size_if_known(stream: IO[bytes]) -> int | None:
    """The stream's total size when it can seek (local files, ranged blobs); None otherwise."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        size = stream.seek(0, io.SEEK_END)
        stream.seek(here)
        return size
    except (OSError, ValueError):
        return None


def _spool(stream: IO[bytes], limit: int) -> tuple[IO[bytes], int]:
    """Copy an unseekable stream to a temporary file (in memory up to 8 MiB), stopping past ``limit``."""
    import tempfile

    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115  # the caller closes it
    copied = 0
    try:
        while copied <= limit and (data := stream.read(1024 * 1024)):
            copied += len(data)
            spool.write(data)
    finally:
        stream.close()
    spool.seek(0)
    return spool, copied


def validate_dataset(
    train: DatasetSource,
    test: DatasetSource | None = None,
    options: ValidationOptions = ValidationOptions(),  # noqa: B008  # frozen, safe to share
    sink: RowSink | None = None,
    workers: int | None = None,
) -> ValidationReport:
    """Validate a chat dataset in one streaming pass per file and report on it.

    ``workers``: processes for a large local JSONL file checked without a sink (default: one per
    available core; 1 keeps everything in this process). The report does not depend on it.

    Each kept (valid) row goes to ``sink`` as compact JSON, in input order. Without a ``test``
    file, a row goes to "test" when XXH3-64(row JSON) / 2**64 falls below ``test_fraction`` — the
    same input always splits the same way. With a test file, train rows go to "train" and test
    rows to "test". Under ``strict`` any error makes the dataset invalid (the caller then discards
    what the sink got); under ``drop-invalid`` invalid rows are left out, and the dataset is
    rejected only when more than ``max_drop_fraction`` of the rows are invalid, a file cannot be
    read, or too few examples remain. Exceptions from the streams (I/O, a vanished blob) and from
    the sink propagate.
    """
    run = _Validation(options, sink, hash_split=test is None, workers=workers or available_cpus())
    run.file("train", train)
    if test is not None:
        run.file("test", test)
    return run.report()
