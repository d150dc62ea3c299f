"""Row-level rules: each error code, alone, with the line, message index and a message to act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.validation import Issue, LocalFile, ValidationOptions, ValidationReport, estimate_tokens, validate_dataset
from shared.validation.codes import CODES


def conv(*turns: str, system: str | None = None, **extra: Any) -> dict[str, Any]:
    """A conversation: turns alternate user/assistant, starting with user."""
    messages = [{"role": "system", "content": system}] if system else []
    roles = ("user", "assistant")
    messages += [{"role": roles[i % 2], "content": text} for i, text in enumerate(turns)]
    return {"prompt": turns[0] if turns else "", "prompt_id": "p", "messages": messages, **extra}


def good(i: int) -> dict[str, Any]:
    return conv(f"question {i}?", f"answer {i}.")


def jsonl(rows: list[Any]) -> bytes:
    return b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in rows)


def run(tmp_path: Path, rows: list[Any], name: str = "train.jsonl", **options: Any) -> ValidationReport:
    path = tmp_path / name
    path.write_bytes(jsonl(rows))
    return validate_dataset(LocalFile.at(path), options=ValidationOptions(**options))


def only_error(report: ValidationReport, code: str) -> Issue:
    assert not report.valid
    assert set(report.errors) == {code}, report.summary()
    group = report.errors[code]
    assert group.count == 1
    return group.examples[0]


def msgs(*messages: Any) -> dict[str, Any]:
    return {"messages": list(messages)}


U = {"role": "user", "content": "hi"}
A = {"role": "assistant", "content": "hello"}
S = {"role": "system", "content": "be brief"}

# code -> (bad row, message index of the example, words the message must contain)
ROW_CASES: dict[str, tuple[Any, int | None, str]] = {
    "row_not_object": ([1, 2], None, "a list"),
    "messages_missing": ({"conversation": [U, A], "id": 3}, None, "'conversation'"),
    "messages_not_list": ({"messages": "hi"}, None, "a string"),
    "messages_empty": ({"messages": []}, None, "empty"),
    "message_not_object": (msgs("hi", A), 0, "message 0 is a string"),
    "role_missing": (msgs({"content": "hi"}, A), 0, "no 'role'"),
    "role_invalid": (msgs({"role": "bot", "content": "hi"}, A), 0, "'bot'"),
    "content_missing": (msgs({"role": "user"}, A), 0, "no 'content'"),
    "content_not_string": (msgs(U, {"role": "assistant", "content": 42}), 1, "a number"),
    "content_empty": (msgs(U, {"role": "assistant", "content": " \n\t"}), 1, "whitespace"),
    "system_not_first": (msgs(U, A, S, A), 2, "only the first message may be system"),
    "consecutive_roles": (msgs(U, U, A), 1, "both from 'user'"),
    "missing_assistant": (msgs(S, U), None, "no assistant message"),
    "last_not_assistant": (msgs(U, A, U), 2, "must end"),
    "reserved_token": (msgs(U, {"role": "assistant", "content": "sure<|end|>"}), 1, "'<|end|>'"),
}


@pytest.mark.parametrize("code", sorted(ROW_CASES))
def test_each_row_error_alone_with_its_location(tmp_path: Path, code: str) -> None:
    row, index, words = ROW_CASES[code]
    report = run(tmp_path, [good(i) for i in range(10)] + [row])
    issue = only_error(report, code)
    assert (issue.file, issue.line, issue.message_index) == ("train", 11, index)
    assert words in issue.message
    assert report.files["train"].rows == 11 and report.files["train"].valid_rows == 10
    assert report.errors[code].scope == "row" and report.errors[code].severity == "error"


def test_every_code_is_exercised_somewhere() -> None:
    """The row cases above plus the named tests in the other validation test modules."""
    elsewhere = {
        "file_too_large", "unsupported_encoding", "not_a_json_array", "malformed_json_array",
        "parquet_unreadable", "invalid_utf8", "invalid_json", "row_too_large", "unsupported_value",
        "no_assistant_tokens", "too_few_examples", "too_many_invalid", "unknown_keys",
        "duplicate_conversation", "train_test_overlap", "exceeds_max_seq_length", "no_system_prompt",
        "empty_test_split",
    }  # fmt: skip
    assert set(ROW_CASES) | elsewhere == set(CODES)


def test_repeated_system_message_is_named_as_such(tmp_path: Path) -> None:
    report = run(tmp_path, [good(i) for i in range(10)] + [msgs(S, U, A, S, U, A)])
    issue = only_error(report, "system_not_first")
    assert "a second system message" in issue.message and issue.message_index == 3


def test_unhashable_role_and_null_content_are_reported_not_crashing(tmp_path: Path) -> None:
    rows = [good(i) for i in range(10)]
    rows += [msgs({"role": ["user"], "content": "x"}, A), msgs(U, {"role": "assistant", "content": None})]
    report = run(tmp_path, rows)
    assert set(report.errors) == {"role_invalid", "content_not_string"}
    assert "null" in report.errors["content_not_string"].examples[0].message


def test_several_problems_in_one_row_are_all_listed_and_the_row_counted_once(tmp_path: Path) -> None:
    row = msgs({"role": "user", "content": ""}, {"role": "user", "content": "<|user|> again"})
    report = run(tmp_path, [good(i) for i in range(10)] + [row])
    assert set(report.errors) == {"content_empty", "consecutive_roles", "reserved_token", "missing_assistant"}
    assert report.files["train"].invalid_rows == 1


def test_a_less_than_sign_that_starts_no_reserved_token_is_fine(tmp_path: Path) -> None:
    text = "if a < b and c <| d then <|endoftext (no closing)"
    report = run(tmp_path, [good(i) for i in range(10)] + [conv("compare?", text)])
    assert report.valid, report.summary()
    expected = sum(estimate_tokens(t) for t in ("compare?", text))
    assert report.files["train"].tokens.max == expected


def test_reserved_tokens_follow_the_options(tmp_path: Path) -> None:
    rows = [good(i) for i in range(10)] + [conv("q", "[INST] do it [/INST]"), conv("q", "fine <|end|>")]
    report = run(tmp_path, rows, reserved_tokens=("[INST]", "[/INST]"))
    issue = only_error(report, "reserved_token")
    assert issue.line == 11 and "'[INST]'" in issue.message and "1 more" in issue.message
    assert run(tmp_path, rows, reserved_tokens=()).valid


def test_no_assistant_tokens_left_after_truncation_is_an_error(tmp_path: Path) -> None:
    long_question = "word " * 1700  # 8,500 bytes → ≈2,129 tokens before the assistant speaks
    report = run(tmp_path, [good(i) for i in range(10)] + [conv(long_question, "ok")], max_seq_length=2048)
    issue = only_error(report, "no_assistant_tokens")
    assert issue.line == 11 and "max_seq_length=2,048" in issue.message
    assert "exceeds_max_seq_length" not in report.warnings  # warnings describe kept rows only


def test_long_example_whose_assistant_survives_truncation_is_a_warning(tmp_path: Path) -> None:
    report = run(tmp_path, [good(i) for i in range(10)] + [conv("short?", "word " * 2000)], max_seq_length=2048)
    assert report.valid
    group = report.warnings["exceeds_max_seq_length"]
    assert group.count == 1 and group.examples[0].line == 11


def test_unknown_keys_warn_with_names_and_counts(tmp_path: Path) -> None:
    rows = [good(i) for i in range(10)] + [conv("a", "b", id=1), conv("c", "d", id=2, source="x")]
    report = run(tmp_path, rows)
    assert report.valid
    group = report.warnings["unknown_keys"]
    assert group.count == 2 and group.detail == {"id": 2, "source": 1}
    assert [e.line for e in group.examples] == [11, 12]


def test_duplicates_warn_with_line_pairs_by_messages_only(tmp_path: Path) -> None:
    rows = [good(i) for i in range(10)]
    rows += [{**good(3), "prompt_id": "other"}, good(5), good(3)]  # lines 11, 12, 13
    report = run(tmp_path, rows)
    assert report.valid
    group = report.warnings["duplicate_conversation"]
    assert group.count == 3
    assert [(e.line, e.related_line) for e in group.examples] == [(11, 4), (12, 6), (13, 4)]


def test_same_contents_with_other_roles_are_not_duplicates(tmp_path: Path) -> None:
    rows = [good(i) for i in range(10)]
    rows += [msgs(U, A), msgs({"role": "system", "content": "hi"}, A)]
    assert "duplicate_conversation" not in run(tmp_path, rows).warnings


def test_missing_system_prompt_is_counted(tmp_path: Path) -> None:
    rows = [good(i) for i in range(10)] + [conv("q", "a", system="be kind")] * 1
    report = run(tmp_path, rows)
    group = report.warnings["no_system_prompt"]
    assert group.count == 10 and "10 of 11" in group.examples[0].message


def test_warnings_and_stats_ignore_invalid_rows(tmp_path: Path) -> None:
    rows = [good(i) for i in range(10)] + [msgs(U), msgs(U), {**good(20), "extra": 1}]
    report = run(tmp_path, rows)
    assert "duplicate_conversation" not in report.warnings  # the two identical rows are invalid
    assert report.warnings["unknown_keys"].count == 1
    stats = report.files["train"]
    assert stats.valid_rows == 11 and stats.messages_min == 2 and stats.messages_max == 2


def test_row_facts_match_the_documented_token_estimate(tmp_path: Path) -> None:
    rows = [good(i) for i in range(10)]
    rows.append(conv("héllo wörld ✓", "réponse " * 30, "and?", "done", system="sys"))
    report = run(tmp_path, rows)
    expected = [sum(estimate_tokens(m["content"]) for m in r["messages"]) for r in rows]
    stats = report.files["train"]
    assert stats.tokens.total == sum(expected) and stats.tokens.max == max(expected)
    assistant = sum(estimate_tokens(m["content"]) for r in rows for m in r["messages"] if m["role"] == "assistant")
    assert stats.tokens.assistant_total == assistant
    assert estimate_tokens("é") == 1 + 4 and estimate_tokens("abcde") == 2 + 4  # ceil(utf8 bytes / 4) + 4


def test_messages_quote_user_data_briefly(tmp_path: Path) -> None:
    huge = "r" * 100_000
    rows = [good(i) for i in range(10)]
    rows += [msgs({"role": huge, "content": "x"}, A), {"k" * 5000: 1}]
    report = run(tmp_path, rows)
    messages = [e.message for g in report.errors.values() for e in g.examples]
    assert messages and all(len(m) < 300 for m in messages)
    assert "'rrrr" in report.errors["role_invalid"].examples[0].message


def test_unknown_key_names_are_bounded(tmp_path: Path) -> None:
    row = {**good(99), **{f"{i}{'k' * 200}": i for i in range(60)}}
    report = run(tmp_path, [good(i) for i in range(10)] + [row])
    group = report.warnings["unknown_keys"]
    assert len(group.detail) == 50 and all(len(name) <= 65 for name in group.detail)
    assert len(group.examples[0].message) < 1000
