"""``validate_dataset``: one streaming pass per file — parse, check, measure, hash, split, emit.

Memory is constant in the file size except for duplicate detection: one 8-byte conversation hash
and a 4-byte line number per distinct valid conversation (see ``linetable``), for the train file
and, when given, the test file. Everything else (token histogram, counters, at most
``max_examples_per_code`` examples per code) is bounded.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import IO

import orjson

from shared.validation.codes import CODES
from shared.validation.histogram import EXACT, Histogram
from shared.validation.linetable import LineTable
from shared.validation.options import DatasetSource, RowSink, Split, ValidationOptions
from shared.validation.readers import Chunks, HashingFile, Problem, Row, json_rows, jsonl_rows, mib, parquet_rows
from shared.validation.report import (
    Dropped,
    DroppedRow,
    FileStats,
    Issue,
    IssueGroup,
    TokenStats,
    ValidationReport,
)
from shared.validation.rows import make_checker

_TWO_64 = float(2**64)
_MASK64 = (1 << 64) - 1


class _Groups:
    """Problems grouped by code: a count, the first few examples, optional per-name counts."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[Issue]] = {}
        self.detail: dict[str, dict[str, int]] = {}

    def add(self, code: str, file: Split | None, message: str, **where: int | None) -> None:
        count = self.counts.get(code, 0) + 1
        self.counts[code] = count
        if count <= self.limit:
            self.examples.setdefault(code, []).append(Issue(code, message, file, **where))

    def count(self, code: str, n: int = 1) -> None:
        self.counts[code] = self.counts.get(code, 0) + n

    def note(self, code: str, name: str, cap: int = 50) -> None:
        names = self.detail.setdefault(code, {})
        if name in names or len(names) < cap:
            names[name] = names.get(name, 0) + 1

    def build(self) -> dict[str, IssueGroup]:
        groups = {}
        for code in sorted(self.counts):
            meta = CODES[code]
            groups[code] = IssueGroup(
                code=code,
                severity=meta.severity,
                scope=meta.scope,
                title=meta.title,
                count=self.counts[code],
                examples=tuple(self.examples.get(code, ())),
                detail=dict(self.detail.get(code, {})),
            )
        return groups


class _FileTally:
    """What one file's pass accumulates."""

    def __init__(self) -> None:
        self.rows = self.valid = self.invalid = 0
        self.messages_total = 0
        self.messages_min = 0
        self.messages_max = 0
        self.tokens = Histogram()
        self.assistant_tokens = 0
        self.fatal = False


class _Validation:
    def __init__(self, options: ValidationOptions, sink: RowSink | None, hash_split: bool) -> None:
        self.options = options
        self.sink = sink
        self.hash_split = hash_split
        self.errors = _Groups(options.max_examples_per_code)
        self.warnings = _Groups(options.max_examples_per_code)
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
        stream = source.open()
        size = _size_if_known(stream)
        sha, read = "", 0  # no digest for a file refused before it is read
        try:
            if size is not None and size > options.max_file_bytes:
                self._too_large(split, size)
                tally.fatal = True
                read = size
            elif source.fmt == "parquet":
                if size is None:  # Parquet needs to seek
                    stream, size = _spool(stream, options.max_file_bytes)
                if size > options.max_file_bytes:
                    self._too_large(split, None)
                    tally.fatal = True
                    read = size
                else:
                    hashing = HashingFile(stream, size)
                    self._consume(split, parquet_rows(hashing, options.max_line_bytes), tally, "row")
                    sha, read = hashing.finish(), size
            else:
                chunks = Chunks(stream, options.max_file_bytes)
                try:
                    reader = jsonl_rows if source.fmt == "jsonl" else json_rows
                    unit = "line" if source.fmt == "jsonl" else "row"
                    self._consume(split, reader(chunks, options.max_line_bytes), tally, unit)
                    chunks.drain()  # after a fatal error: the digest still covers the whole file
                finally:
                    chunks.close()
                sha, read = chunks.sha256, chunks.bytes_read
                if chunks.too_large:
                    self._too_large(split, None)
                    tally.fatal = True
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
            invalid_rows=tally.invalid,
            messages_mean=round(tally.messages_total / tally.valid, 3) if tally.valid else 0.0,
            messages_min=tally.messages_min,
            messages_max=tally.messages_max,
            tokens=TokenStats(
                total=t.total,
                p50=t.quantile(0.5),
                p90=t.quantile(0.9),
                max=t.maximum,
                assistant_total=tally.assistant_tokens,
            ),
        )

    def _too_large(self, split: Split, size: int | None) -> None:
        limit = mib(self.options.max_file_bytes)
        how = f"is {mib(size)}" if size is not None else "goes on past the limit (reading stopped there)"
        self.errors.add("file_too_large", split, f"the {split} file {how}; the limit is {limit}")

    def _consume(self, split: Split, rows: Iterator[Row], tally: _FileTally, unit: str) -> None:
        """The hot loop: every row of one file. Counters are locals, written back at the end."""
        options = self.options
        check, warnings = self.check, self.warnings
        sink, dumps = self.sink, orjson.dumps
        blake2b = hashlib.blake2b
        hash_split = self.hash_split and sink is not None
        test_fraction = options.test_fraction
        split_counts = self.split_counts
        max_seq = options.max_seq_length
        table = self.tables.setdefault(split, LineTable())
        remember = table.add
        train_table = self.tables.get("train") if split == "test" else None
        exact, exact_bound, add_large = tally.tokens.exact, EXACT, tally.tokens.add_large
        n_rows = n_valid = n_messages_total = n_no_system = tokens_total = tokens_max = assistant_total = 0
        messages_min, messages_max = 1 << 62, 0
        for line, _offset, _size, value, dumped in rows:
            n_rows += 1
            if type(value) is Problem:
                if value.fatal:
                    n_rows -= 1  # the end of a broken file is not a row
                    tally.fatal = True
                    self.errors.add(value.code, split, value.message, line=line, byte_offset=value.byte_offset)
                    break
                self._invalid(split, line, [(value.code, value.message, None)], value.column, value.byte_offset)
                continue
            problems, n_messages, tokens, assistant_tokens, has_system, key, unknown = check(value)
            if problems is not None:
                self._invalid(split, line, problems)
                continue
            # a valid row: facts, warnings, output
            n_valid += 1
            n_messages_total += n_messages
            messages_min = min(messages_min, n_messages)
            messages_max = max(messages_max, n_messages)
            if tokens < exact_bound:
                exact[tokens] += 1
            else:
                add_large(tokens)
            tokens_total += tokens
            tokens_max = max(tokens_max, tokens)
            assistant_total += assistant_tokens
            if tokens > max_seq:
                warnings.add(
                    "exceeds_max_seq_length",
                    split,
                    f"≈{tokens:,} tokens, over max_seq_length={max_seq:,}: the end will be truncated",
                    line=line,
                )
            if not has_system:
                n_no_system += 1
            if unknown:
                names = [name if len(name) <= 64 else name[:64] + "…" for name in unknown]
                warnings.add("unknown_keys", split, f"keys not used for training: {', '.join(names[:10])}", line=line)
                for name in names:
                    warnings.note("unknown_keys", name)
            key = (key & _MASK64) or 1
            if first := remember(key, line):
                warnings.add(
                    "duplicate_conversation", split, f"same messages as {unit} {first:,}", line=line, related_line=first
                )
            if train_table is not None and (other := train_table.get(key)):
                message = f"same messages as train {unit} {other:,}"
                warnings.add("train_test_overlap", split, message, line=line, related_line=other)
            if sink is not None:
                data = dumped if dumped is not None else dumps(value)
                if hash_split:
                    h = int.from_bytes(blake2b(data, digest_size=8).digest(), "big")
                    target: Split = "test" if h / _TWO_64 < test_fraction else "train"
                else:
                    target = split
                sink(target, data)
                split_counts[target] += 1
        tally.rows += n_rows
        tally.valid += n_valid
        tally.invalid = tally.rows - tally.valid
        tally.messages_total += n_messages_total
        tally.assistant_tokens += assistant_total
        tally.tokens.absorb(n_valid, tokens_total, tokens_max)
        if n_valid:
            tally.messages_min, tally.messages_max = messages_min, messages_max
        if n_no_system:
            warnings.count("no_system_prompt", n_no_system)

    def _invalid(
        self,
        split: Split,
        line: int,
        problems: list[tuple[str, str, int | None]],
        column: int | None = None,
        byte_offset: int | None = None,
    ) -> None:
        for code, message, index in problems:
            self.errors.add(
                code, split, message, line=line, column=column, byte_offset=byte_offset, message_index=index
            )
        self._drop(split, line, tuple(dict.fromkeys(p[0] for p in problems)))

    def _drop(self, split: Split, line: int, codes: tuple[str, ...]) -> None:
        self.dropped_count += 1
        if len(self.dropped) < self.options.max_examples_per_code:
            self.dropped.append(DroppedRow(split, line, codes))

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
) -> ValidationReport:
    """Validate a chat dataset in one streaming pass per file and report on it.

    Each kept (valid) row goes to ``sink`` as compact JSON, in input order. Without a ``test``
    file, a row goes to "test" when the first 8 bytes of BLAKE2b(row JSON), read as a big-endian
    integer over 2**64, fall below ``test_fraction`` — the same input always splits the same way.
    With a test file, train rows go to "train" and test rows to "test". Under ``strict`` any error
    makes the dataset invalid (the caller then discards what the sink got); under ``drop-invalid``
    invalid rows are left out, and the dataset is rejected only when more than
    ``max_drop_fraction`` of the rows are invalid, a file cannot be read, or too few examples
    remain. Exceptions from the streams (I/O, a vanished blob) and from the sink propagate.
    """
    run = _Validation(options, sink, hash_split=test is None)
    run.file("train", train)
    if test is not None:
        run.file("test", test)
    return run.report()
