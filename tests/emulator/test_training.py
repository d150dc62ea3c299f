"""The CPU trainer (``python -m emulator.training``): its stages, outputs, metrics and failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cli import demo_dataset
from emulator import basemodel, mlflow_folder
from emulator.training import data
from emulator.training.params import parse_params
from emulator.training.report import STAGES, StageError
from tests.support.basemodel import basemodel_cache, build_with_cli

ROOT = Path(__file__).resolve().parents[2]



@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_with_cli(basemodel_cache(tmp_path_factory))


def train(base: Path, work: Path, train_rows: Path, test_rows: Path, params: dict[str, Any],
          *extra: str) -> subprocess.CompletedProcess[str]:
    (work / "params.json").write_text(json.dumps(params))
    cmd = [sys.executable, "-m", "emulator.training", "--base-model", str(base), "--train", str(train_rows),
           "--test", str(test_rows), "--params", str(work / "params.json"), "--output", str(work / "mlflow"),
           "--metrics", str(work / "metrics.jsonl"), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def metrics(work: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]


def split(tmp_path: Path, n_train: int, n_test: int) -> tuple[Path, Path]:
    rows = list(demo_dataset.generate(n_train + n_test, seed=7))
    train_file, test_file = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows[:n_train]))
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows[n_train:]))
    return train_file, test_file


@pytest.fixture(scope="module")
def small_run(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """40 conversations, 12 steps: (work dir holding mlflow/, pytorch/, metrics.jsonl; stdout)."""
    work = tmp_path_factory.mktemp("small-run")
    train_file, test_file = split(work, 40, 8)
    params = {"num_train_epochs": "1", "max_steps": "12", "learning_rate": "2e-3", "per_device_train_batch_size": "2",
              "lora_r": "8", "lora_alpha": "16", "lora_dropout": "0.0", "apply_lora": "true", "seed": "42",
              "max_seq_length": "2048", "number_of_gpu_to_use_finetuning": "1", "precision": "16"}
    proc = train(base_model, work, train_file, test_file, params, "--log-every", "4",
                 "--pytorch-output", str(work / "pytorch"))
    assert proc.returncode == 0, proc.stderr
    return work, proc.stdout


@pytest.mark.slow
def test_training_run_writes_a_loadable_mlflow_model_and_metrics(small_run: tuple[Path, str]) -> None:
    tmp_path, stdout = small_run

    lines = metrics(tmp_path)
    events = [(m["stage"], m["status"]) for m in lines if "stage" in m]
    assert events == [(s, status) for s in STAGES for status in ("Running", "Completed")]
    steps = [m for m in lines if "step" in m and "train_loss" in m]
    assert [m["step"] for m in steps] == [4, 8, 12]
    assert all(m["train_loss"] > 0 and "learning_rate" in m for m in steps)
    summary = lines[-1]
    for key in ("eval_loss", "base_eval_loss", "train_runtime", "train_loss", "train_steps", "epoch"):
        assert key in summary, key
    assert summary["train_steps"] == 12
    assert summary["eval_loss"] < summary["base_eval_loss"]  # even 12 steps learn the answer format

    for stage in STAGES:
        assert f"[{stage}] completed" in stdout
    assert "number_of_gpu_to_use_finetuning='1' ignored" in stdout

    folder = tmp_path / "mlflow"
    mlmodel = mlflow_folder.read_mlmodel(folder)
    assert mlmodel["flavors"]["hftransformersv2"]["task_type"] == "chat-completion"
    assert mlmodel["metadata"]["finetune_parameters"]["max_steps"] == 12
    for name in ("conda.yaml", "requirements.txt", "data/model/model.safetensors", "data/tokenizer/tokenizer.json"):
        assert (folder / name).is_file(), name
    assert (tmp_path / "pytorch" / "config.json").is_file()
    # The merged model loads without peft, as a plain causal LM, and answers in the trained format.
    model, tokenizer = mlflow_folder.load_for_inference(folder)
    assert not any("lora" in name for name, _ in model.named_parameters())
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of Spain?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    assert tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).startswith("The capital of")


@pytest.mark.slow
def test_a_registered_mlflow_model_can_be_fine_tuned_again(small_run: tuple[Path, str], tmp_path: Path) -> None:
    first, _ = small_run
    train_file, test_file = split(tmp_path, 6, 2)
    proc = train(first / "mlflow", tmp_path, train_file, test_file,
                 {"max_steps": "2", "learning_rate": "1e-3", "apply_lora": "false"}, "--base-model-name", "again")
    assert proc.returncode == 0, proc.stderr
    assert "full fine-tuning" in proc.stdout
    summary = metrics(tmp_path)[-1]
    assert summary["train_steps"] == 2 and summary["base_eval_loss"] > 0
    assert mlflow_folder.read_mlmodel(tmp_path / "mlflow")["metadata"]["base_model_name"] == "again"


def test_bad_train_file_fails_with_a_clear_last_stderr_line(base_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"prompt": "hi", "answer": "hello"}\n' * 5)
    proc = train(base_model, tmp_path, bad, bad, {"apply_lora": "true"})
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == "validation: train file has no 'messages' column"
    failed = [m for m in metrics(tmp_path) if m.get("status") == "Failed"]
    assert failed == [{"stage": "validation", "status": "Failed", "time": failed[0]["time"],
                       "error": "train file has no 'messages' column"}]
    assert not (tmp_path / "mlflow" / "MLmodel").exists()


def test_bad_parameter_fails_in_validation(base_model: Path, tmp_path: Path) -> None:
    train_file, test_file = split(tmp_path, 4, 2)
    proc = train(base_model, tmp_path, train_file, test_file, {"lr_scheduler_type": "sideways"})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("validation: bad parameters: lr_scheduler_type 'sideways' is not one of linear")


def test_validation_messages_name_the_problem(tmp_path: Path) -> None:
    def load(text: str) -> str:
        path = tmp_path / "rows.jsonl"
        path.write_text(text)
        with pytest.raises(StageError) as err:
            data.load_conversations(path, "train", tmp_path / "cache")
        return err.value.message

    assert load('{"messages": [\n') .startswith("train file is not valid JSON Lines")
    ok = {"role": "user", "content": "hi"}
    assert load(json.dumps({"messages": [ok, {"role": "bot", "content": "x"}]}) + "\n") == (
        "train file has 1 invalid rows: row 1: message 2 has role 'bot' (expected system, user or assistant)")
    assert load(json.dumps({"messages": [ok]}) + "\n") == (
        "train file has 1 invalid rows: row 1: no assistant reply after a user message")
    with pytest.raises(StageError, match="test file not found"):
        data.load_conversations(tmp_path / "missing.jsonl", "test", tmp_path / "cache")


def test_parameters_are_parsed_as_azure_sends_them() -> None:
    params, notes = parse_params({"num_train_epochs": "2", "learning_rate": "2e-4", "apply_lora": "true",
                                  "lora_dropout": 0.1, "max_steps": -1, "warmup_steps": "3",
                                  "number_of_gpu_to_use_finetuning": 1, "mystery": "x"})
    assert (params.num_train_epochs, params.learning_rate, params.apply_lora) == (2, 2e-4, True)
    assert (params.lora_dropout, params.max_steps, params.warmup_steps) == (0.1, -1, 3)
    assert len(notes) == 2 and "no effect on the CPU emulator" in notes[0] and "mystery" in notes[1]
    cases: list[tuple[dict[str, Any], str]] = [({"seed": "4.5"}, "seed must be an integer"), ({"apply_lora": "maybe"}, "'true' or 'false'"),
                         ({"learning_rate": "0"}, "learning_rate must be > 0"), ({"max_steps": 0}, "max_steps")]
    for bad, message in cases:
        with pytest.raises(StageError, match=message):
            parse_params(bad)


def test_loss_is_masked_to_assistant_replies(base_model: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there."},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye."},
                {"role": "assistant", "content": "Goodbye."}]
    example, truncated = data.encode(tokenizer, messages, 512)
    assert not truncated
    labelled = tokenizer.decode([t for t in example.labels if t != data.IGNORE_INDEX])
    assert labelled == "Hello!<|end|>\nGoodbye.<|end|>\n<|endoftext|>"
    short, truncated = data.encode(tokenizer, messages, 5)
    assert truncated and len(short.input_ids) == 5


@pytest.mark.slow
def test_finetuned_model_beats_the_base_model_on_the_demo_dataset(base_model: Path, tmp_path: Path) -> None:
    """The demo: 300 conversations, the component's LoRA defaults and the tiny model's FINETUNE_DEFAULTS."""
    train_file, test_file = split(tmp_path, 300, 30)
    params = {"max_steps": "-1", "lora_r": "8", "lora_alpha": "128", "lora_dropout": "0.0", "seed": "42",
              "max_seq_length": "2048", **basemodel.FINETUNE_DEFAULTS}
    started = time.monotonic()
    proc = train(base_model, tmp_path, train_file, test_file, params)
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    summary = metrics(tmp_path)[-1]

    import torch

    model, tokenizer = mlflow_folder.load_for_inference(tmp_path / "mlflow")
    from transformers import AutoModelForCausalLM

    base: Any = AutoModelForCausalLM.from_pretrained(base_model)
    base.eval()

    def answer(m: Any, prompt: str) -> str:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = m.generate(**ids, max_new_tokens=24, do_sample=False)
        return str(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)).strip()

    heldout = demo_dataset.heldout_questions()
    base_hits = sum(answer(base, q["prompt"]) == q["expected"] for q in heldout)
    tuned_hits = sum(answer(model, q["prompt"]) == q["expected"] for q in heldout)
    print(f"\n300-row fine-tune: wall {wall:.1f}s (train_runtime {summary['train_runtime']:.1f}s); "
          f"eval_loss {summary['eval_loss']:.4f} vs base {summary['base_eval_loss']:.4f}; "
          f"held-out exact answers: tuned {tuned_hits}/{len(heldout)}, base {base_hits}/{len(heldout)}")
    assert summary["eval_loss"] < 0.5 * summary["base_eval_loss"]
    assert tuned_hits >= len(heldout) - 2 and base_hits == 0
    assert wall < 120


def test_early_stopping_stops_and_restores_the_best_checkpoint(base_model: Path, tmp_path: Path) -> None:
    """A threshold no improvement can meet: the second evaluation (step 4) counts as no better than the first
    (step 2), patience 1 stops there, and the step-2 weights are the model (load_best_model_at_end)."""
    train_file, test_file = split(tmp_path, 24, 6)
    params = {"max_steps": "20", "learning_rate": "2e-3", "per_device_train_batch_size": "2", "apply_lora": "true",
              "evaluation_strategy": "steps", "eval_steps": "2", "logging_steps": "2", "apply_early_stopping": "true",
              "early_stopping_patience": "1", "early_stopping_threshold": "100", "metric_for_best_model": "loss",
              "save_total_limit": "1"}
    proc = train(base_model, tmp_path, train_file, test_file, params)
    assert proc.returncode == 0, proc.stderr
    assert "early stopping at step 4" in proc.stdout and "best checkpoint: step 2" in proc.stdout
    records = metrics(tmp_path)
    evals = {m["step"]: m["eval_loss"] for m in records if "eval_loss" in m and "step" in m}
    assert sorted(evals) == [2, 4]
    summary = [m for m in records if "train_steps" in m][-1]
    assert summary["train_steps"] == 4 and summary["stopped_early_at_step"] == 4 and summary["best_step"] == 2
    assert summary["eval_loss"] == pytest.approx(evals[2], abs=1e-4)  # the restored step-2 weights were evaluated


def test_early_stopping_parameters_are_checked() -> None:
    for params, message in (
        ({"apply_early_stopping": "true", "early_stopping_patience": "0"}, "early_stopping_patience must be >= 1"),
        ({"apply_early_stopping": "true", "metric_for_best_model": "f1"}, "stops early on 'loss' only"),
        ({"apply_early_stopping": "true", "evaluation_strategy": "disable"}, "needs evaluations"),
        ({"save_total_limit": "0"}, "save_total_limit must be -1 or a positive integer"),
    ):
        with pytest.raises(StageError, match=message):
            parse_params(params)
    parsed, notes = parse_params({"apply_early_stopping": "true", "early_stopping_patience": "3",
                                  "early_stopping_threshold": "0.01", "save_total_limit": "2"})
    assert (parsed.apply_early_stopping, parsed.early_stopping_patience, parsed.early_stopping_threshold,
            parsed.save_total_limit) == (True, 3, 0.01, 2) and notes == []
