"""One pass over rows — a whole file, or a byte range of a JSONL file in a worker process.

A ``Pass`` is what the pass found, with line numbers counted from the first line it read: the
validator shifts them when it merges the passes of one file in order (``validator``). Duplicate
conversations are not turned into warnings here, because the first copy may lie in an earlier
range: the pass keeps each distinct conversation's first line (``firsts``) and the first few
repeats within it, and the merge resolves them against the file's table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import IO

import orjson
import xxhash

from shared.validation.codes import CODES
from shared.validation.histogram import EXACT, Histogram
from shared.validation.linetable import LineTable
from shared.validation.options import DatasetSource, RowSink, Split, ValidationOptions
from shared.validation.readers import CHUNK, Chunk, JsonlRows, Problem, Row
from shared.validation.report import DroppedRow, Issue, IssueGroup
from shared.validation.rows import Facts, make_checker

_TWO_64 = float(2**64)


class Groups:
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

    def absorb(self, other: Groups, shift: int, cap: int = 50) -> None:
        """Add a later pass's groups, its line numbers moved down by ``shift``."""
        for code, n in other.counts.items():
            kept = self.examples.setdefault(code, [])
            room = self.limit - min(self.counts.get(code, 0), self.limit)
            for issue in other.examples.get(code, [])[:room]:
                kept.append(_shifted(issue, shift))
            self.counts[code] = self.counts.get(code, 0) + n
        for code, names in other.detail.items():
            mine = self.detail.setdefault(code, {})
            for name, n in names.items():
                if name in mine or len(mine) < cap:
                    mine[name] = mine.get(name, 0) + n

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


def _shifted(issue: Issue, shift: int) -> Issue:
    if not shift or issue.line is None:
        return issue
    return replace(issue, line=issue.line + shift)


@dataclass
class Pass:
    """What one pass over rows accumulates. Lines count from 1 at the pass's first line."""

    limit: int
    lines: int = 0
    """Lines (JSONL) or rows read, blank lines included: the next range's line numbers start after."""
    rows: int = 0
    valid: int = 0
    messages_total: int = 0
    messages_min: int = 0
    messages_max: int = 0
    assistant_tokens: int = 0
    no_system: int = 0
    fatal: bool = False
    tokens: Histogram = field(default_factory=Histogram)
    errors: Groups = field(init=False)
    warnings: Groups = field(init=False)
    dropped: list[DroppedRow] = field(default_factory=list)
    dropped_count: int = 0
    firsts: LineTable = field(default_factory=LineTable)
    """Each distinct valid conversation's key → its first line in this pass."""
    repeats: int = 0
    repeat_examples: list[tuple[int, int]] = field(default_factory=list)
    """The first ``limit`` repeats within this pass: (line, conversation key)."""
    split_counts: dict[Split, int] = field(default_factory=lambda: {"train": 0, "test": 0})

    def __post_init__(self) -> None:
        self.errors = Groups(self.limit)
        self.warnings = Groups(self.limit)

    def invalid(
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
        self.dropped_count += 1
        if len(self.dropped) < self.limit:
            self.dropped.append(DroppedRow(split, line, tuple(dict.fromkeys(p[0] for p in problems))))


def scan(
    rows: Iterator[Row],
    split: Split,
    *,
    options: ValidationOptions,
    check: Callable[[object], Facts],
    train: LineTable | None = None,
    sink: RowSink | None = None,
    hash_split: bool = False,
    unit: str = "line",
) -> Pass:
    """The hot loop: every row of ``rows``. Counters are locals, written to the ``Pass`` at the end.

    ``train``: the train file's table, to flag test rows that repeat a train conversation.
    ``sink``: receives each valid row (see ``validate_dataset``); ``hash_split`` routes it.
    """
    result = Pass(options.max_examples_per_code)
    warnings, limit = result.warnings, result.limit
    dumps = orjson.dumps
    digest = xxhash.xxh3_64_intdigest
    hash_split = hash_split and sink is not None
    test_fraction = options.test_fraction
    split_counts = result.split_counts
    max_seq = options.max_seq_length
    remember = result.firsts.add
    repeat_examples = result.repeat_examples
    exact, exact_bound, add_large = result.tokens.exact, EXACT, result.tokens.add_large
    n_rows = n_valid = n_messages_total = n_no_system = tokens_total = tokens_max = assistant_total = 0
    n_repeats = 0
    messages_min, messages_max = 1 << 62, 0
    for line, _offset, _size, value, dumped in rows:
        n_rows += 1
        if type(value) is Problem:
            if value.fatal:
                n_rows -= 1  # the end of a broken file is not a row
                result.fatal = True
                result.errors.add(value.code, split, value.message, line=line, byte_offset=value.byte_offset)
                break
            result.invalid(split, line, [(value.code, value.message, None)], value.column, value.byte_offset)
            continue
        problems, n_messages, tokens, assistant_tokens, has_system, key, unknown = check(value)
        if problems is not None:
            result.invalid(split, line, problems)
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
        if remember(key, line):
            n_repeats += 1
            if len(repeat_examples) < limit:
                repeat_examples.append((line, key))
        if train is not None and (other := train.get(key)):
            message = f"same messages as train {unit} {other:,}"
            warnings.add("train_test_overlap", split, message, line=line, related_line=other)
        if sink is not None:
            data = dumped if dumped is not None else dumps(value)
            if hash_split:
                target: Split = "test" if digest(data) / _TWO_64 < test_fraction else "train"
            else:
                target = split
            sink(target, data)
            split_counts[target] += 1
    result.rows, result.valid = n_rows, n_valid
    result.messages_total, result.assistant_tokens, result.no_system = n_messages_total, assistant_total, n_no_system
    result.repeats = n_repeats
    result.tokens.absorb(n_valid, tokens_total, tokens_max)
    if n_valid:
        result.messages_min, result.messages_max = messages_min, messages_max
    return result


@dataclass(frozen=True)
class RangeTask:
    """A worker's share of a JSONL file: the lines in bytes [start, end), where ``start`` is 0 or
    just after a newline and ``end`` just after one (or the end of the file)."""

    source: DatasetSource
    split: Split
    start: int
    end: int
    options: ValidationOptions
    train: LineTable | None = None


def scan_range(task: RangeTask) -> Pass:
    """One pass over a ``RangeTask`` (run in a worker process)."""
    options = task.options
    check = make_checker(options.reserved_tokens, options.max_seq_length)
    with task.source.open() as stream:
        stream.seek(task.start)
        reader = JsonlRows(_range(stream, task.end - task.start), options.max_line_bytes, offset=task.start)
        result = scan(iter(reader), task.split, options=options, check=check, train=task.train)
    result.lines = reader.lines
    return result


def _range(stream: IO[bytes], size: int) -> Iterator[Chunk]:
    """``size`` bytes in ``CHUNK`` pieces, read into one reused buffer: each piece is valid only
    until the next is asked for (``JsonlRows`` copies what it keeps). Reusing the buffer spares a
    fresh 2 MiB allocation per piece, and its page faults (about 7% of a worker's time)."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    left = size
    while left > 0 and (n := stream.readinto(view[: min(left, CHUNK)])):  # type: ignore[attr-defined]
        left -= n
        yield buffer if n == CHUNK else bytes(view[:n])
