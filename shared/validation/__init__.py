"""Streaming validation of chat fine-tuning datasets (JSONL, JSON arrays, Parquet).

``validate_dataset`` reads each file once, in constant memory, checks every row against the chat
format (ultrachat_200k style: ``messages`` of ``{role, content}``), gathers statistics, hashes the
raw bytes, splits train/test deterministically and streams the kept rows to a sink.
"""

from shared.validation.codes import CODES, Code
from shared.validation.options import (
    DatasetSource,
    Format,
    LocalFile,
    Policy,
    RowSink,
    Split,
    ValidationOptions,
    detect_format,
)
from shared.validation.report import (
    Dropped,
    DroppedRow,
    FileStats,
    Issue,
    IssueGroup,
    TokenStats,
    ValidationReport,
)
from shared.validation.rows import estimate_tokens
from shared.validation.validator import validate_dataset

__all__ = [
    "CODES",
    "Code",
    "DatasetSource",
    "Dropped",
    "DroppedRow",
    "FileStats",
    "Format",
    "Issue",
    "IssueGroup",
    "LocalFile",
    "Policy",
    "RowSink",
    "Split",
    "TokenStats",
    "ValidationOptions",
    "ValidationReport",
    "detect_format",
    "estimate_tokens",
    "validate_dataset",
]
