"""The emulator's tiny base model: built offline once, cached, atomic, and a working Phi-3-style chat LM."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from emulator import basemodel
from tests.support.basemodel import basemodel_cache, build_with_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    started = time.monotonic()
    path = build_with_cli(basemodel_cache(tmp_path_factory))
    return path, time.monotonic() - started


def test_builds_a_hugging_face_model_directory(built: tuple[Path, float]) -> None:
    path, seconds = built
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json"):
        assert (path / name).is_file(), name
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "phi3"
    assert config["num_hidden_layers"] == basemodel.RECIPE["num_hidden_layers"]
    assert path.name == f"tiny-phi3-{basemodel.recipe_key()}"
    print(f"\nbase model ready in {seconds:.1f}s (includes the build unless another module built it first)")


def test_second_call_is_instant_and_returns_the_same_directory(
    built: tuple[Path, float], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path, _ = built
    started = time.monotonic()
    again = basemodel.ensure_base_model(basemodel_cache(tmp_path_factory))
    assert again == path
    assert time.monotonic() - started < 0.5
    assert build_with_cli(basemodel_cache(tmp_path_factory)) == path
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".build-")]  # no leftovers


def test_tokenizer_has_phi3_chat_tokens_and_template(built: tuple[Path, float]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built[0])
    for token in basemodel.SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"{token} is not one token"
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}],
        tokenize=False,
    )
    assert text == "<|system|>\nS<|end|>\n<|user|>\nU<|end|>\n<|assistant|>\nA<|end|>\n<|endoftext|>"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "U"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt == "<|user|>\nU<|end|>\n<|assistant|>\n"
    assert 1000 <= len(tokenizer) <= 4096


def test_base_model_speaks_some_english_and_stops_at_end_of_turn(built: tuple[Path, float]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built[0])
    model: Any = AutoModelForCausalLM.from_pretrained(built[0])
    model.eval()
    ids: Any = tokenizer.apply_chat_template([{"role": "user", "content": "Hello!"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    assert tokenizer.convert_tokens_to_ids("<|end|>") in new  # it ends its turn
    reply = str(tokenizer.decode(new, skip_special_tokens=True)).strip()
    assert len(reply.split()) >= 2 and reply[0].isupper()
    # It knows its corpus's facts as prose (what fine-tuning on capital questions builds on).
    facts: Any = tokenizer("The capital of Kenya is", return_tensors="pt")
    with torch.no_grad():
        completion = model.generate(**facts, max_new_tokens=4, do_sample=False)
    completed = str(tokenizer.decode(completion[0, facts["input_ids"].shape[1]:], skip_special_tokens=True))
    assert completed.strip().startswith("Nairobi")


def test_source_directory_is_returned_unchanged(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert basemodel.ensure_base_model(tmp_path / "unused-cache", source=tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="no config.json"):
        basemodel.ensure_base_model(tmp_path / "unused-cache", source=tmp_path / "missing")
    assert not (tmp_path / "unused-cache").exists()


def _fake_build(calls: list[int], fail: bool = False) -> object:
    def build(out: Path, log: object = None) -> None:
        calls.append(1)
        time.sleep(0.3)  # long enough for a concurrent caller to arrive meanwhile
        (out / "model.safetensors").write_text("partial")
        if fail:
            raise RuntimeError("boom")
        (out / "config.json").write_text("{}")

    return build


def test_concurrent_callers_share_one_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(basemodel, "build", _fake_build(calls))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(basemodel.ensure_base_model(tmp_path)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(set(results)) == 1 and (results[0] / "config.json").is_file()


def test_failed_build_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(basemodel, "build", _fake_build(calls, fail=True))
    with pytest.raises(RuntimeError, match="boom"):
        basemodel.ensure_base_model(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [".basemodel.lock"]
