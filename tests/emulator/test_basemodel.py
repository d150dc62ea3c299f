"""The emulator's tiny base models: built offline once, cached, atomic, working chat LMs (Phi-3's and Phi-4's
chat formats, different weights)."""

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


@pytest.fixture(scope="module")
def built_phi4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_with_cli(basemodel_cache(tmp_path_factory), "phi4")


def test_phi4_stand_in_has_phi4_s_chat_tokens_and_template(built_phi4: Path) -> None:
    from transformers import AutoTokenizer

    assert built_phi4.name == f"tiny-phi4-{basemodel.recipe_key(basemodel.PHI4)}"
    tokenizer = AutoTokenizer.from_pretrained(built_phi4)
    for token in basemodel.PHI4.special_tokens:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, f"{token} is not one token"
    assert (tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>",
                                                                               "<|dummy_85|>")
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}],
        tokenize=False,
    )
    assert text == "<|im_start|>system<|im_sep|>S<|im_end|><|im_start|>user<|im_sep|>U<|im_end|>" \
                   "<|im_start|>assistant<|im_sep|>A<|im_end|>"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "U"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt == "<|im_start|>user<|im_sep|>U<|im_end|><|im_start|>assistant<|im_sep|>"


def test_the_two_stand_ins_are_different_models(built: tuple[Path, float], built_phi4: Path) -> None:
    import hashlib

    from transformers import AutoTokenizer

    phi3, phi4 = built[0], built_phi4
    assert phi3 != phi4 and phi3.parent == phi4.parent  # one cache, two entries
    digests = {hashlib.sha256((p / "model.safetensors").read_bytes()).hexdigest() for p in (phi3, phi4)}
    assert len(digests) == 2
    t3, t4 = AutoTokenizer.from_pretrained(phi3), AutoTokenizer.from_pretrained(phi4)
    assert len(t3("<|im_start|>", add_special_tokens=False)["input_ids"]) > 1  # not a Phi-3 token
    assert len(t4("<|end|>", add_special_tokens=False)["input_ids"]) > 1  # not a Phi-4 token
    info = {json.loads((p / "tuneflow_basemodel.json").read_text())["standin"] for p in (phi3, phi4)}
    assert info == {"phi3", "phi4"}


def test_phi4_stand_in_chats_and_stops_at_im_end(built_phi4: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built_phi4)
    model: Any = AutoModelForCausalLM.from_pretrained(built_phi4)
    model.eval()
    ids: Any = tokenizer.apply_chat_template([{"role": "user", "content": "Hello!"}], add_generation_prompt=True,
                                             return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in new  # it ends its turn as Phi-4 does
    reply = str(tokenizer.decode(new, skip_special_tokens=True)).strip()
    assert len(reply.split()) >= 2 and reply[0].isupper()


def test_source_directory_is_returned_unchanged(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert basemodel.ensure_base_model(tmp_path / "unused-cache", source=tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="no config.json"):
        basemodel.ensure_base_model(tmp_path / "unused-cache", source=tmp_path / "missing")
    assert not (tmp_path / "unused-cache").exists()


def _fake_build(calls: list[int], fail: bool = False) -> object:
    def build(out: Path, log: object = None, model: object = None) -> None:
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
