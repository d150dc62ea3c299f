"""A real Hugging Face tokenizer directory for tests: a byte-level BPE on the emulator's base-model recipe
(its chat template and special tokens), trained on a small corpus in a second."""

from __future__ import annotations

from pathlib import Path


def build_tokenizer_dir(out: Path) -> Path:
    from emulator.basemodel import build_tokenizer

    corpus = [f"The capital of country {i} is city {i * 7}. Hello, how can I help you today?" for i in range(300)]
    build_tokenizer(corpus, 600).save_pretrained(out)
    return out
