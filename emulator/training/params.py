"""The pipeline inputs the CPU trainer honours, parsed from the values Azure ML passes (strings or numbers)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from emulator.training.report import StageError

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
OPTIMIZERS = ("adamw_torch", "adamw_hf", "adamw", "adafactor")
# Accepted and without effect on one CPU process (hardware, distribution, checkpointing, precision).
NO_EFFECT_ON_CPU = frozenset({
    "number_of_gpu_to_use_finetuning", "num_nodes_finetune", "shm_size_finetune", "precision",
    "apply_deepspeed", "deepspeed", "deepspeed_stage", "apply_ort", "dataloader_num_workers",
    "auto_find_batch_size", "enable_full_determinism", "eval_accumulation_steps",
})


@dataclass(frozen=True)
class TrainParams:
    # Defaults are the published component's defaults.
    num_train_epochs: int = 1
    max_steps: int = -1
    learning_rate: float = 2e-5
    per_device_train_batch_size: int = 1
    per_device_eval_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    apply_lora: bool = False
    merge_lora_weights: bool = True
    lora_r: int = 8
    lora_alpha: int = 128
    lora_dropout: float = 0.0
    seed: int = 42
    max_seq_length: int = -1
    logging_steps: int = 10
    evaluation_strategy: str = "epoch"
    eval_steps: int = 500
    # Early stopping (HF EarlyStoppingCallback with load_best_model_at_end): on the eval loss
    apply_early_stopping: bool = False
    early_stopping_patience: int = 1
    early_stopping_threshold: float = 0.0
    metric_for_best_model: str = "loss"
    save_total_limit: int = -1


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise StageError("validation", f"parameter {name} must be 'true' or 'false', got {value!r}")


def _as_int(name: str, value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number != int(number):
        raise StageError("validation", f"parameter {name} must be an integer, got {value!r}")
    return int(number)


def _as_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise StageError("validation", f"parameter {name} must be a number, got {value!r}")
    return number


def parse_params(raw: Mapping[str, Any]) -> tuple[TrainParams, list[str]]:
    """The honoured parameters, and one note per parameter that is ignored (and why)."""
    types = {f.name: f.type for f in fields(TrainParams)}
    values: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in raw.items():
        if value is None:
            continue
        kind = types.get(name)
        if kind is None:
            reason = "has no effect on the CPU emulator" if name in NO_EFFECT_ON_CPU else "is not used by the trainer"
            notes.append(f"parameter {name}={value!r} ignored ({reason})")
            continue
        if kind == "bool":
            values[name] = _as_bool(name, value)
        elif kind == "int":
            values[name] = _as_int(name, value)
        elif kind == "float":
            values[name] = _as_float(name, value)
        else:
            values[name] = str(value)
    params = TrainParams(**values)
    _check(params)
    return params, notes


def _check(p: TrainParams) -> None:
    problems = []
    if p.num_train_epochs < 1:
        problems.append("num_train_epochs must be >= 1")
    if p.max_steps == 0 or p.max_steps < -1:
        problems.append("max_steps must be -1 or a positive integer")
    if p.learning_rate <= 0:
        problems.append("learning_rate must be > 0")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                 "logging_steps", "lora_r", "lora_alpha", "eval_steps"):
        if getattr(p, name) < 1:
            problems.append(f"{name} must be >= 1")
    if p.warmup_steps < 0:
        problems.append("warmup_steps must be >= 0")
    if p.weight_decay < 0:
        problems.append("weight_decay must be >= 0")
    if not 0.0 <= p.lora_dropout < 1.0:
        problems.append("lora_dropout must be in [0, 1)")
    if p.max_seq_length == 0 or p.max_seq_length < -1:
        problems.append("max_seq_length must be -1 or a positive integer")
    if p.lr_scheduler_type not in SCHEDULERS:
        problems.append(f"lr_scheduler_type {p.lr_scheduler_type!r} is not one of {', '.join(SCHEDULERS)}")
    if p.optim not in OPTIMIZERS:
        problems.append(f"optim {p.optim!r} is not one of {', '.join(OPTIMIZERS)}")
    if p.early_stopping_patience < 1:
        problems.append("early_stopping_patience must be >= 1")
    if p.early_stopping_threshold < 0:
        problems.append("early_stopping_threshold must be >= 0")
    if p.save_total_limit == 0 or p.save_total_limit < -1:
        problems.append("save_total_limit must be -1 or a positive integer")
    if p.apply_early_stopping and p.metric_for_best_model != "loss":
        problems.append(f"metric_for_best_model {p.metric_for_best_model!r}: the CPU trainer stops early on "
                        "'loss' only (f1 and exact need generation at every evaluation)")
    if p.apply_early_stopping and p.evaluation_strategy not in ("epoch", "steps"):
        problems.append("apply_early_stopping needs evaluations: evaluation_strategy 'epoch' or 'steps'")
    if p.evaluation_strategy not in ("epoch", "steps", "no", "disable"):
        problems.append(f"evaluation_strategy {p.evaluation_strategy!r} is not one of epoch, steps, disable")
    if problems:
        raise StageError("validation", "bad parameters: " + "; ".join(problems))
