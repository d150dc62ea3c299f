"""The ``chat_completion_pipeline`` steps, run in order in one process (one function per stage)."""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.training import data, engine
from emulator.training.params import TrainParams, parse_params
from emulator.training.report import Reporter, StageError


@dataclass
class Job:
    base_model: Path
    train: Path
    test: Path | None
    params_file: Path | None
    output: Path
    pytorch_output: Path | None = None
    base_model_name: str | None = None
    log_every: int | None = None
    threads: int = 2
    # Filled in by the stages.
    params: TrainParams = field(default_factory=TrainParams)
    train_rows: list[data.Conversation] = field(default_factory=list)
    test_rows: list[data.Conversation] = field(default_factory=list)
    model: Any = None
    tokenizer: Any = None
    train_examples: list[data.Example] = field(default_factory=list)
    test_examples: list[data.Example] = field(default_factory=list)
    result: engine.TrainResult | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def validation(job: Job, reporter: Reporter, cache_dir: Path) -> None:
    raw: dict[str, Any] = {}
    if job.params_file is not None:
        try:
            raw = json.loads(job.params_file.read_text())
        except (OSError, ValueError) as exc:
            raise StageError("validation", f"cannot read the parameters file {job.params_file}: {exc}") from exc
        if not isinstance(raw, dict):
            raise StageError("validation", "the parameters file must hold a JSON object")
    if job.log_every is not None:
        raw["logging_steps"] = job.log_every
    job.params, notes = parse_params(raw)
    for note in notes:
        reporter.log(note)
    job.train_rows = data.load_conversations(job.train, "train", cache_dir)
    reporter.log(f"train file: {len(job.train_rows)} conversations")
    if job.test is not None:
        job.test_rows = data.load_conversations(job.test, "test", cache_dir)
        reporter.log(f"test file: {len(job.test_rows)} conversations")
    else:
        # No test file: hold out a tenth of the training rows (seeded), as a validation split.
        rows = list(job.train_rows)
        random.Random(job.params.seed).shuffle(rows)
        cut = max(1, len(rows) // 10) if len(rows) > 1 else 0
        job.test_rows, job.train_rows = rows[:cut], rows[cut:] or rows
        reporter.log(f"no test file: holding out {len(job.test_rows)} of the training conversations")


def model_import(job: Job, reporter: Reporter) -> None:
    try:
        job.model, job.tokenizer = engine.import_model(job.base_model)
    except (OSError, ValueError) as exc:
        raise StageError("model_import", f"cannot load the base model from {job.base_model}: {exc}") from exc
    n_params = sum(p.numel() for p in job.model.parameters())
    reporter.log(f"loaded {type(job.model).__name__} ({n_params / 1e6:.2f}M parameters) from {job.base_model}")


def preprocess(job: Job, reporter: Reporter) -> None:
    limit = data.sequence_limit(job.tokenizer, job.model.config, job.params.max_seq_length)
    job.train_examples, stats = data.preprocess(job.tokenizer, job.train_rows, limit)
    reporter.log(f"train: {stats.examples} examples, mean {stats.mean_tokens:.0f} / max {stats.max_tokens} tokens, "
                 f"{stats.label_tokens} assistant tokens, {stats.truncated} truncated to {limit}, "
                 f"{stats.dropped} dropped")
    if not job.train_examples:
        raise StageError("preprocess", f"no training example keeps an assistant reply within {limit} tokens")
    job.test_examples, test_stats = data.preprocess(job.tokenizer, job.test_rows, limit)
    reporter.log(f"test: {test_stats.examples} examples, {test_stats.label_tokens} assistant tokens")


def finetune(job: Job, reporter: Reporter) -> None:
    import torch

    p = job.params
    torch.manual_seed(p.seed)
    random.seed(p.seed)
    if p.apply_lora:
        job.model = engine.add_lora(job.model, p)
        trainable = sum(x.numel() for x in job.model.parameters() if x.requires_grad)
        reporter.log(f"LoRA r={p.lora_r} alpha={p.lora_alpha} dropout={p.lora_dropout} on all linear layers: "
                     f"{trainable / 1e3:.1f}k trainable parameters")
    else:
        reporter.log("full fine-tuning (apply_lora is false)")
    pad_id = int(job.tokenizer.pad_token_id)
    if p.apply_early_stopping and not job.test_examples:
        raise StageError("finetune", "apply_early_stopping needs validation data: the job has no test split")

    def eval_fn() -> float:
        return engine.evaluate(job.model, job.test_examples, p.per_device_eval_batch_size, pad_id)

    job.result = engine.finetune(job.model, job.train_examples, p, pad_id, reporter,
                                 eval_fn=eval_fn if job.test_examples and p.evaluation_strategy in ("steps", "epoch")
                                 else None)
    r = job.result
    reporter.log(f"trained {r.steps} steps ({r.epochs:.2f} epochs) in {r.runtime:.1f}s, "
                 f"mean train_loss {r.train_loss:.4f}")


def evaluate(job: Job, reporter: Reporter) -> None:
    pad_id = int(job.tokenizer.pad_token_id)
    batch = job.params.per_device_eval_batch_size
    if not job.test_examples:
        reporter.log("no test examples: eval_loss not computed")
        job.summary.update(eval_loss=None, base_eval_loss=None)
        return
    final = job.result.final_eval_loss if job.result is not None else None
    tuned = final if final is not None else engine.evaluate(job.model, job.test_examples, batch, pad_id)
    if job.params.apply_lora:
        with engine.base_model_context(job.model):
            base = engine.evaluate(job.model, job.test_examples, batch, pad_id)
    else:
        base_model, _ = engine.import_model(job.base_model)
        base = engine.evaluate(base_model, job.test_examples, batch, pad_id)
        del base_model
    job.summary.update(
        eval_loss=round(tuned, 5), base_eval_loss=round(base, 5),
        eval_perplexity=round(math.exp(min(tuned, 50.0)), 4), base_eval_perplexity=round(math.exp(min(base, 50.0)), 4),
    )
    reporter.log(f"eval_loss {tuned:.4f} (base model {base:.4f}) on {len(job.test_examples)} test examples")


def model_converter(job: Job, reporter: Reporter) -> None:
    name = job.base_model_name or _base_name(job.base_model)
    metadata = {
        "base_model_name": name,
        "finetuned_from": str(job.base_model),
        "finetune_parameters": dict(vars(job.params)),
    }
    if job.params.apply_lora and not job.params.merge_lora_weights:
        reporter.log("merge_lora_weights is false: the MLflow model still gets merged weights (needed to serve)")
    engine.convert(job.model, job.tokenizer, job.output, metadata, job.pytorch_output)
    reporter.log(f"MLflow model folder written to {job.output}")


def _base_name(base: Path) -> str:
    info = base / "tuneflow_basemodel.json"
    if info.is_file():
        try:
            standin = json.loads(info.read_text()).get("standin") or "phi3"  # builds before stand-ins had names
        except (OSError, ValueError, AttributeError):
            standin = "phi3"
        return f"tuneflow-tiny-{standin}"
    return base.name


def run(job: Job, reporter: Reporter) -> dict[str, Any]:
    """All stages in order; raises StageError (already reported) on failure. Returns the summary."""
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(max(1, job.threads))
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tuneflow-datasets-") as cache, reporter.stage("validation"):
        validation(job, reporter, Path(cache))
    with reporter.stage("model_import"):
        model_import(job, reporter)
    with reporter.stage("preprocess"):
        preprocess(job, reporter)
    with reporter.stage("finetune"):
        finetune(job, reporter)
    with reporter.stage("evaluate"):
        evaluate(job, reporter)
    with reporter.stage("model_converter"):
        model_converter(job, reporter)
    r = job.result
    assert r is not None
    job.summary.update(
        train_loss=round(r.train_loss, 5), train_runtime=round(r.runtime, 3), train_steps=r.steps, epoch=r.epochs,
        train_samples=len(job.train_examples), eval_samples=len(job.test_examples),
        train_samples_per_second=round(r.samples / r.runtime, 3) if r.runtime > 0 else None,
        **({"stopped_early_at_step": r.stopped_early_at} if r.stopped_early_at is not None else {}),
        **({"best_step": r.best_step} if r.best_step is not None else {}),
        total_runtime=round(time.monotonic() - started, 3),
    )
    reporter.metric(**job.summary)
    return job.summary
