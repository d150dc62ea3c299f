"""Validation (read and check the chat files) and preprocessing (template, tokenize, mask the loss)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.training.report import StageError

ROLES = ("system", "user", "assistant")
IGNORE_INDEX = -100
Conversation = list[dict[str, str]]


def load_conversations(path: Path, split: str, cache_dir: Path) -> list[Conversation]:
    """Read one JSON Lines split with ``datasets`` (offline) and check every row's ``messages``."""
    if not path.is_file():
        raise StageError("validation", f"{split} file not found: {path}")
    if path.stat().st_size == 0:
        raise StageError("validation", f"{split} file is empty: {path.name}")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets
    from datasets import load_dataset

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its errors are reported as ours, once
    try:
        dataset = load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache_dir))
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        cause = exc.__cause__ or exc.__context__
        if cause is not None and str(cause):
            detail = f"{detail} ({str(cause).splitlines()[0]})"
        raise StageError("validation", f"{split} file is not valid JSON Lines: {detail}") from exc
    if "messages" not in dataset.column_names:
        raise StageError("validation", f"{split} file has no 'messages' column")
    if len(dataset) == 0:
        raise StageError("validation", f"{split} file has no rows")
    conversations: list[Conversation] = []
    problems: list[str] = []
    for index, messages in enumerate(dataset["messages"]):
        problem = _check_messages(messages)
        if problem:
            problems.append(f"row {index + 1}: {problem}")
            continue
        conversations.append([{"role": m["role"], "content": m["content"]} for m in messages])
    if problems:
        shown = "; ".join(problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise StageError("validation", f"{split} file has {len(problems)} invalid rows: {shown}{more}")
    return conversations


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "'messages' is not a non-empty list"
    seen_user = False
    trainable = False
    for position, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            return f"message {position} is not an object"
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return f"message {position} has role {role!r} (expected system, user or assistant)"
        if not isinstance(content, str):
            return f"message {position} has no text content"
        if role == "user":
            seen_user = True
        if role == "assistant" and seen_user and content.strip():
            trainable = True
    if not trainable:
        return "no assistant reply after a user message"
    return None


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


@dataclass
class PreprocessStats:
    examples: int
    truncated: int
    dropped: int
    mean_tokens: float
    max_tokens: int
    label_tokens: int


def sequence_limit(tokenizer: Any, model_config: Any, max_seq_length: int) -> int:
    """``max_seq_length`` if set, else the model's context (what Azure's -1 means)."""
    limits = [int(getattr(model_config, "max_position_embeddings", 0) or 0)]
    model_max = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if 0 < model_max < 10**6:
        limits.append(model_max)
    model_limit = min(x for x in limits if x > 0) if any(x > 0 for x in limits) else 2048
    return min(max_seq_length, model_limit) if max_seq_length > 0 else model_limit


def encode(tokenizer: Any, messages: Conversation, max_len: int) -> tuple[Example, bool]:
    """Token ids of the templated conversation, labels only on the assistant replies (and their end token).

    Spans come from rendering the template on growing prefixes of the conversation, and tokens are
    mapped to them by character offsets, so this works for any tokenizer with a chat template.
    """
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
        start = len(prompt) if full.startswith(prompt) else full.find(message["content"])
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        end = _common_prefix_length(full, through)
        if start >= 0 and end > start:
            spans.append((start, end))
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and full.startswith(bos))
    encoded = tokenizer(full, add_special_tokens=add_special, return_offsets_mapping=True)
    ids: list[int] = list(encoded["input_ids"])
    labels = [
        token if e > s and any(a <= s and e <= b for a, b in spans) else IGNORE_INDEX
        for token, (s, e) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    truncated = len(ids) > max_len
    return Example(ids[:max_len], labels[:max_len]), truncated


def _common_prefix_length(a: str, b: str) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def preprocess(
    tokenizer: Any, conversations: list[Conversation], max_len: int
) -> tuple[list[Example], PreprocessStats]:
    examples: list[Example] = []
    truncated = dropped = 0
    for messages in conversations:
        example, was_truncated = encode(tokenizer, messages, max_len)
        truncated += was_truncated
        if all(label == IGNORE_INDEX for label in example.labels):
            dropped += 1  # truncation left no reply to learn from
            continue
        examples.append(example)
    lengths = [len(e.input_ids) for e in examples] or [0]
    stats = PreprocessStats(
        examples=len(examples), truncated=truncated, dropped=dropped,
        mean_tokens=sum(lengths) / len(lengths), max_tokens=max(lengths),
        label_tokens=sum(sum(1 for x in e.labels if x != IGNORE_INDEX) for e in examples),
    )
    return examples, stats
