"""The validation report: verdict, problems grouped by code, per-file statistics, what was dropped.

``to_json()`` is what ingest stores next to a run (stable key order, round-trips through
``ValidationReport.from_json``); ``summary()`` is the short text for people and logs, whose first
line stands alone (it becomes the run's one-line summary).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from shared.validation.codes import Scope, Severity
from shared.validation.options import Format, Policy, Split, ValidationOptions


@dataclass(frozen=True)
class Issue:
    """One occurrence of a problem. ``line`` is the 1-based line (JSONL) or row number (.json
    element, Parquet row); ``column`` a 1-based character column within that line or row (JSON
    syntax errors); ``byte_offset`` an offset in the raw file."""

    code: str
    message: str
    file: Split | None = None
    line: int | None = None
    column: int | None = None
    byte_offset: int | None = None
    message_index: int | None = None
    related_line: int | None = None
    """The other line of a pair: the first copy of a duplicate, the train line of an overlap."""


@dataclass(frozen=True)
class IssueGroup:
    code: str
    severity: Severity
    scope: Scope
    title: str
    count: int
    examples: tuple[Issue, ...] = ()
    detail: dict[str, int] = field(default_factory=dict)
    """Counts behind the group, e.g. unknown key name → rows that have it."""


@dataclass(frozen=True)
class TokenStats:
    """Estimated tokens per valid row (see ``shared.validation.rows`` for the estimate)."""

    total: int = 0
    p50: int = 0
    p90: int = 0
    max: int = 0
    assistant_total: int = 0
    histogram: tuple[tuple[int, int, int], ...] = ()
    """Rows per token-length bin: (low, high inclusive, rows), about 20 equal-width bins from 0 to max."""


@dataclass(frozen=True)
class FileStats:
    """One file's facts from the single pass. Message and token figures describe valid rows."""

    name: str
    format: Format
    bytes: int
    """The file's size (known up front when the stream can seek), else the bytes read."""
    sha256: str
    """SHA-256 (hex) of the raw file. Over the size limit: of the bytes read before stopping, or
    empty when the size was known up front and nothing was read."""
    complete: bool
    rows: int = 0
    valid_rows: int = 0
    invalid_rows: int = 0
    messages_mean: float = 0.0
    messages_min: int = 0
    messages_max: int = 0
    tokens: TokenStats = field(default_factory=TokenStats)


@dataclass(frozen=True)
class DroppedRow:
    file: Split
    line: int
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Dropped:
    """Invalid rows left out of the output of an accepted ``drop-invalid`` dataset. Empty under
    ``strict`` (the sink only ever gets valid rows; an invalid dataset is discarded whole) and
    for a rejected dataset."""

    count: int = 0
    fraction: float = 0.0
    examples: tuple[DroppedRow, ...] = ()


@dataclass(frozen=True)
class ValidationReport:
    """``valid`` is the verdict. ``errors`` lists every error found, grouped by code, under both
    policies — so an accepted ``drop-invalid`` report can hold row-level errors (the rows it
    dropped, see ``dropped``). ``warnings`` describe kept rows only."""

    valid: bool
    policy: Policy
    errors: dict[str, IssueGroup]
    warnings: dict[str, IssueGroup]
    files: dict[Split, FileStats]
    dropped: Dropped
    split: dict[Split, int] | None
    """Rows sent to each split, when a sink received them."""
    options: ValidationOptions

    @property
    def stats(self) -> dict[Split, FileStats]:
        return self.files

    @property
    def error_count(self) -> int:
        return sum(g.count for g in self.errors.values())

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "policy": self.policy,
            "summary": self.summary().splitlines()[0],
            "errors": {code: _group_dict(g) for code, g in self.errors.items()},
            "warnings": {code: _group_dict(g) for code, g in self.warnings.items()},
            "files": {split: asdict(stats) for split, stats in self.files.items()},
            "dropped": {
                "count": self.dropped.count,
                "fraction": self.dropped.fraction,
                "examples": [
                    {"file": r.file, "line": r.line, "codes": list(r.codes)} for r in self.dropped.examples
                ],
            },
            "split": dict(self.split) if self.split is not None else None,
            "options": {**asdict(self.options), "reserved_tokens": list(self.options.reserved_tokens)},
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        options = dict(data["options"])
        options["reserved_tokens"] = tuple(options["reserved_tokens"])
        dropped = data["dropped"]
        return cls(
            valid=data["valid"],
            policy=data["policy"],
            errors={code: _group_from(g) for code, g in data["errors"].items()},
            warnings={code: _group_from(g) for code, g in data["warnings"].items()},
            files={
                split: FileStats(**{**stats, "tokens": _tokens_from(stats["tokens"])})
                for split, stats in data["files"].items()
            },
            dropped=Dropped(
                count=dropped["count"],
                fraction=dropped["fraction"],
                examples=tuple(
                    DroppedRow(r["file"], r["line"], tuple(r["codes"])) for r in dropped["examples"]
                ),
            ),
            split=data["split"],
            options=ValidationOptions(**options),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> ValidationReport:
        return cls.from_dict(orjson.loads(raw))

    # -- for people ----------------------------------------------------------------------------
    def summary(self) -> str:
        """A short human summary; the first line stands alone."""
        train = self.files.get("train")
        rows = sum(s.rows for s in self.files.values())
        lines = [self._headline(rows, train)]
        dropping = self.valid and self.policy == "drop-invalid"
        for group in _by_count(self.errors):
            label = "dropped" if dropping and group.scope == "row" else "error"
            lines.append(f"  {label:7s} {group.code} ({group.count:,}): {self._detail(group)}")
        for group in _by_count(self.warnings):
            lines.append(f"  warning {group.code} ({group.count:,}): {self._detail(group)}")
        for split, stats in self.files.items():
            size = f"{stats.bytes / 1024**2:,.1f} MiB"
            t = stats.tokens
            lines.append(
                f"  {split}: {stats.name} ({stats.format}, {size}) — {stats.rows:,} rows, {stats.valid_rows:,} valid; "
                f"messages/row {stats.messages_mean:.1f} [{stats.messages_min}–{stats.messages_max}]; "
                f"tokens/row ≈ p50 {t.p50:,}, p90 {t.p90:,}, max {t.max:,}; "
                f"sha256 {stats.sha256[:12] + '…' if stats.sha256 else 'not computed'}"
            )
        if self.split is not None:
            lines.append(f"  split: {self.split.get('train', 0):,} train / {self.split.get('test', 0):,} test rows")
        return "\n".join(lines)

    def _headline(self, rows: int, train: FileStats | None) -> str:
        if not self.valid:
            groups = _by_count(self.errors)
            head = "; ".join(f"{g.code} ({g.count:,}): {self._where(g, 3)}" for g in groups[:3])
            extra = len(groups) - 3
            more = f"; +{extra} more code{'' if extra == 1 else 's'}" if extra > 0 else ""
            errors = f"{self.error_count:,} error{'' if self.error_count == 1 else 's'}"
            return f"INVALID: {errors} in {rows:,} rows — {head}{more}"
        kept = sum(s.valid_rows for s in self.files.values())
        count = len(self.warnings)
        warned = f", {count} warning code{'' if count == 1 else 's'}" if self.warnings else ""
        if self.dropped.count:
            return (
                f"VALID: {kept:,} of {rows:,} rows kept; {self.dropped.count:,} invalid rows dropped "
                f"({self.dropped.fraction:.1%}, limit {self.options.max_drop_fraction:.1%}){warned}"
            )
        return f"VALID: {kept:,} rows, no errors{warned}"

    def _location(self, issue: Issue) -> str:
        if issue.line is None and issue.byte_offset is None:
            return "dataset" if issue.file is None else str(issue.file)
        stats = self.files.get(issue.file) if issue.file else None
        prefix = "test " if issue.file == "test" else ""
        if issue.line is None:
            return f"{prefix}byte {issue.byte_offset:,}"
        unit = "line" if stats is None or stats.format == "jsonl" else "row"
        return f"{prefix}{unit} {issue.line:,}"

    def _where(self, group: IssueGroup, limit: int = 5) -> str:
        if group.scope != "row":
            return group.examples[0].message if group.examples else group.title
        places = ", ".join(self._location(i) for i in group.examples[:limit])
        return places + (" …" if group.count > min(limit, len(group.examples)) else "")

    def _detail(self, group: IssueGroup) -> str:
        """The first example in full (what to fix, where), then where else."""
        if group.code == "unknown_keys" and group.detail:
            return f"{group.title}: " + ", ".join(sorted(group.detail)[:8])
        if not group.examples:
            return group.title
        first = group.examples[0]
        message = first.message if len(first.message) <= 110 else first.message[:110] + "…"
        if first.line is None and first.byte_offset is None:
            return message
        others = ", ".join(self._location(i) for i in group.examples[1:3])
        more = " …" if group.count > min(3, len(group.examples)) else ""
        return f"{self._location(first)}: {message}" + (f" (also {others}{more})" if others else more)


def _by_count(groups: dict[str, IssueGroup]) -> list[IssueGroup]:
    return sorted(groups.values(), key=lambda g: (-g.count, g.code))


def _group_dict(group: IssueGroup) -> dict[str, Any]:
    return {
        "code": group.code,
        "count": group.count,
        "severity": group.severity,
        "scope": group.scope,
        "title": group.title,
        "examples": [asdict(i) for i in group.examples],
        "detail": dict(group.detail),
    }


def _group_from(data: dict[str, Any]) -> IssueGroup:
    return IssueGroup(
        code=data["code"],
        severity=data["severity"],
        scope=data["scope"],
        title=data["title"],
        count=data["count"],
        examples=tuple(Issue(**i) for i in data["examples"]),
        detail=dict(data["detail"]),
    )


def _tokens_from(data: dict[str, Any]) -> TokenStats:
    """A report's token figures (one stored before the histogram existed has none)."""
    bins = tuple((int(low), int(high), int(rows)) for low, high, rows in data.get("histogram", ()))
    return TokenStats(**{**data, "histogram": bins})
