"""Every problem the validator can report: a stable code, its severity, its scope and a title.

Codes are part of the report's contract (ingest stores reports, users grep them): never rename one.
``scope`` says what a problem invalidates: one ``row`` (dropped under ``drop-invalid``), a whole
``file`` (reading stopped or never started) or the ``dataset`` (a verdict over all rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]
Scope = Literal["row", "file", "dataset"]


@dataclass(frozen=True)
class Code:
    code: str
    severity: Severity
    scope: Scope
    title: str


_CODES = (
    # file level: the file cannot be read (any further)
    Code("file_too_large", "error", "file", "file is over the size limit"),
    Code("unsupported_encoding", "error", "file", "file is not UTF-8"),
    Code("not_a_json_array", "error", "file", ".json file is not a top-level array"),
    Code("malformed_json_array", "error", "file", ".json array is broken between rows"),
    Code("parquet_unreadable", "error", "file", "Parquet file cannot be read"),
    # row level
    Code("invalid_utf8", "error", "row", "invalid UTF-8"),
    Code("invalid_json", "error", "row", "invalid JSON"),
    Code("row_too_large", "error", "row", "row over the size limit"),
    Code("row_not_object", "error", "row", "row is not a JSON object"),
    Code("unsupported_value", "error", "row", "row holds a value JSON cannot represent"),
    Code("messages_missing", "error", "row", "no 'messages' key"),
    Code("messages_not_list", "error", "row", "'messages' is not a list"),
    Code("messages_empty", "error", "row", "'messages' is empty"),
    Code("message_not_object", "error", "row", "a message is not an object"),
    Code("role_missing", "error", "row", "a message has no 'role'"),
    Code("role_invalid", "error", "row", "role is not system/user/assistant"),
    Code("content_missing", "error", "row", "a message has no 'content'"),
    Code("content_not_string", "error", "row", "content is not a string"),
    Code("content_empty", "error", "row", "content is empty or whitespace"),
    Code("system_not_first", "error", "row", "system message not first, or repeated"),
    Code("consecutive_roles", "error", "row", "two consecutive messages with the same role"),
    Code("missing_assistant", "error", "row", "no assistant message"),
    Code("last_not_assistant", "error", "row", "last message is not from the assistant"),
    Code("reserved_token", "error", "row", "content contains a chat-template token"),
    Code("no_assistant_tokens", "error", "row", "truncation to max_seq_length leaves no assistant tokens"),
    # dataset level
    Code("too_few_examples", "error", "dataset", "too few valid examples"),
    Code("too_many_invalid", "error", "dataset", "too many invalid rows to drop"),
    # warnings (about kept rows)
    Code("unknown_keys", "warning", "row", "rows with keys other than messages/prompt/prompt_id"),
    Code("duplicate_conversation", "warning", "row", "duplicate conversations"),
    Code("train_test_overlap", "warning", "row", "test conversations also in train"),
    Code("exceeds_max_seq_length", "warning", "row", "examples longer than max_seq_length (truncated)"),
    Code("no_system_prompt", "warning", "row", "examples without a system prompt"),
    Code("empty_test_split", "warning", "dataset", "the hash split put no row in test"),
)

CODES: dict[str, Code] = {c.code: c for c in _CODES}
