"""Usage counted with the base model's tokenizer equals what transformers counts for the same chat.

The tokenizer is a real byte-level BPE (the emulator's base-model recipe, trained on a small corpus here)
saved as a Hugging Face model directory; transformers' ``apply_chat_template(tokenize=True)`` is the
reference for the prompt, its ``encode(add_special_tokens=False)`` for the answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.scoring.usage import TokenCounter, load_counter
from tests.support.tokenizer import build_tokenizer_dir

CHATS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "What is the capital of Peru?"}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of Chile?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Count to 12345, then say café, 東京 and \"quotes\"."}],
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tokenizer_dir(tmp_path_factory.mktemp("tokenizer"))


def reference_prompt_tokens(model_dir: Path, chat: list[dict[str, str]]) -> int:
    from transformers import AutoTokenizer

    ids: Any = AutoTokenizer.from_pretrained(model_dir).apply_chat_template(chat, add_generation_prompt=True,
                                                                             tokenize=True)
    return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


@pytest.mark.parametrize("chat", CHATS)
def test_prompt_tokens_equal_transformers_apply_chat_template(model_dir: Path, chat: list[dict[str, str]]) -> None:
    assert TokenCounter(model_dir).prompt_tokens(chat) == reference_prompt_tokens(model_dir, chat)


def test_completion_tokens_and_totals(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    answer = "The capital of Peru is Lima. 東京 is not."
    usage = TokenCounter(model_dir).usage(CHATS[0], answer)
    expected = len(AutoTokenizer.from_pretrained(model_dir).encode(answer, add_special_tokens=False))
    assert usage["completion_tokens"] == expected > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_no_directory_or_a_broken_one_means_no_counter(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert load_counter(None) is None and load_counter("") is None
    assert load_counter(str(tmp_path)) is None  # no tokenizer.json: usage is omitted, not guessed
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    assert load_counter(str(tmp_path)) is None
    assert "cannot load a tokenizer" in caplog.text
