"""Model import, the fine-tuning loop (LoRA or full, plain torch on the CPU), evaluation, conversion."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator import mlflow_folder
from emulator.basemodel import CHAT_TEMPLATE
from emulator.training.data import IGNORE_INDEX, Example
from emulator.training.params import TrainParams
from emulator.training.report import Reporter


def resolve_model_dir(base: Path) -> tuple[Path, Path]:
    """(weights dir, tokenizer dir) of a Hugging Face directory or an MLflow model folder."""
    if mlflow_folder.is_mlflow_folder(base):
        return mlflow_folder.model_paths(base)
    if not (base / "config.json").is_file():
        raise FileNotFoundError(f"{base} is neither a Hugging Face model directory nor an MLflow model folder")
    return base, base


def import_model(base: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, tokenizer_dir = resolve_model_dir(base)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHAT_TEMPLATE  # a base model without one gets Phi-3's
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
    return model, tokenizer


def batches(examples: list[Example], size: int, order: list[int] | None = None) -> Iterator[list[Example]]:
    indices = order if order is not None else list(range(len(examples)))
    for start in range(0, len(indices), size):
        yield [examples[i] for i in indices[start: start + size]]


def collate(batch: list[Example], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _token_loss_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed next-token loss over the labelled tokens, and their count."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shift_logits = logits[:, :-1, :].float()
    shift_labels = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="sum",
    )
    return loss, int((shift_labels != IGNORE_INDEX).sum())


def evaluate(model: Any, examples: list[Example], batch_size: int, pad_id: int) -> float:
    """Mean loss per assistant token on ``examples`` (nan when there are none)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches(examples, batch_size):
            loss, n = _token_loss_sum(model, collate(batch, pad_id))
            total += float(loss)
            count += n
    model.train(was_training)
    return total / count if count else math.nan


def base_model_context(model: Any) -> AbstractContextManager[Any]:
    """Within it, a LoRA model computes as its base model."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if callable(disable) else nullcontext()


def add_lora(model: Any, params: TrainParams) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=params.lora_r, lora_alpha=params.lora_alpha, lora_dropout=params.lora_dropout,
        target_modules="all-linear", task_type="CAUSAL_LM", bias="none",
    )
    return get_peft_model(model, config)


@dataclass
class TrainResult:
    steps: int
    epochs: float
    train_loss: float
    runtime: float
    samples: int
    # The eval loss of the final weights when training ended on an evaluation (saves evaluating twice).
    final_eval_loss: float | None
    # Early stopping: the step it stopped at (None: it ran to the end) and the best checkpoint kept
    stopped_early_at: int | None = None
    best_step: int | None = None
    best_eval_loss: float | None = None


class EarlyStopping:
    """HF's EarlyStoppingCallback on the eval loss, with ``load_best_model_at_end``: the best weights are
    kept in memory (one checkpoint: what ``save_total_limit`` bounds) and restored when training ends."""

    def __init__(self, model: Any, params: TrainParams) -> None:
        self.model = model
        self.patience, self.threshold = params.early_stopping_patience, params.early_stopping_threshold
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad = 0
        self._weights: dict[str, Any] | None = None

    def should_stop(self, step: int, eval_loss: float) -> bool:
        if self.best is None or self.best - eval_loss > self.threshold:
            self.best, self.best_step, self.bad = eval_loss, step, 0
            self._weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore_best(self) -> None:
        if self._weights is not None:
            self.model.load_state_dict(self._weights)


def _optimizer(model: Any, params: TrainParams) -> Any:
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    if params.optim == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(  # type: ignore[no-untyped-call]
            trainable, lr=params.learning_rate, weight_decay=params.weight_decay,
                         scale_parameter=False, relative_step=False, warmup_init=False)
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]  # biases and norms, as the HF Trainer does
    groups = [{"params": decay, "weight_decay": params.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=params.learning_rate,
        betas=(params.adam_beta1, params.adam_beta2), eps=params.adam_epsilon,
    )


def finetune(model: Any, examples: list[Example], params: TrainParams, pad_id: int, reporter: Reporter, *,
             eval_fn: Callable[[], float] | None = None) -> TrainResult:
    """A plain torch training loop with HF Trainer semantics for epochs, max_steps and accumulation."""
    import torch
    from transformers import get_scheduler

    micro_per_epoch = math.ceil(len(examples) / params.per_device_train_batch_size)
    steps_per_epoch = max(1, math.ceil(micro_per_epoch / params.gradient_accumulation_steps))
    total_steps = params.max_steps if params.max_steps > 0 else steps_per_epoch * params.num_train_epochs
    epochs_needed = math.ceil(total_steps / steps_per_epoch)
    optimizer = _optimizer(model, params)
    scheduler = get_scheduler(params.lr_scheduler_type, optimizer, num_warmup_steps=params.warmup_steps,
                              num_training_steps=total_steps)
    reporter.metric(total_steps=total_steps)  # the job's plan: how far its steps will go
    reporter.log(
        f"{len(examples)} examples, batch {params.per_device_train_batch_size} x accumulation "
        f"{params.gradient_accumulation_steps}, {total_steps} steps over {epochs_needed} epoch(s), "
        f"lr {params.learning_rate:g} ({params.lr_scheduler_type}, warmup {params.warmup_steps})"
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    started = time.monotonic()
    step = 0
    samples = 0
    window_loss = window_count = 0.0
    run_loss = run_count = 0.0
    last_eval: float | None = None
    last_eval_step = -1
    stopper = EarlyStopping(model, params) if params.apply_early_stopping and eval_fn is not None else None
    stopped: int | None = None
    for epoch in range(epochs_needed):
        generator = torch.Generator().manual_seed(params.seed + epoch)
        order = torch.randperm(len(examples), generator=generator).tolist()
        micro = list(batches(examples, params.per_device_train_batch_size, order))
        for start in range(0, len(micro), params.gradient_accumulation_steps):
            group = micro[start: start + params.gradient_accumulation_steps]
            tokens = sum(sum(1 for x in e.labels[1:] if x != IGNORE_INDEX) for b in group for e in b)
            group_loss = 0.0
            for batch in group:
                loss_sum, _count = _token_loss_sum(model, collate(batch, pad_id))
                # Token-weighted over the whole accumulated batch, so accumulation = a bigger batch.
                (loss_sum / max(tokens, 1)).backward()
                group_loss += float(loss_sum.detach())
                samples += len(batch)
            if params.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(trainable, params.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_loss += group_loss
            window_count += tokens
            run_loss += group_loss
            run_count += tokens
            epoch_progress = epoch + min(1.0, (start + len(group)) / len(micro))
            if step % params.logging_steps == 0 or step == total_steps:
                train_loss = window_loss / max(window_count, 1)
                lr = scheduler.get_last_lr()[0]
                reporter.metric(step=step, epoch=round(epoch_progress, 4), train_loss=round(train_loss, 5),
                                learning_rate=lr)
                reporter.log(f"step {step}/{total_steps} epoch {epoch_progress:.2f} "
                             f"train_loss {train_loss:.4f} lr {lr:.3g}")
                window_loss = window_count = 0.0
            if eval_fn is not None and params.evaluation_strategy == "steps" and step % params.eval_steps == 0:
                last_eval, last_eval_step = eval_fn(), step
                reporter.metric(step=step, epoch=round(epoch_progress, 4), eval_loss=round(last_eval, 5))
                reporter.log(f"step {step} eval_loss {last_eval:.4f}")
                if stopper is not None and stopper.should_stop(step, last_eval):
                    stopped = step
                    break
            if step >= total_steps:
                break
        if stopped is None and eval_fn is not None and params.evaluation_strategy == "epoch":
            last_eval, last_eval_step = eval_fn(), step
            reporter.metric(step=step, epoch=round(samples / len(examples), 4), eval_loss=round(last_eval, 5))
            reporter.log(f"epoch {epoch + 1} eval_loss {last_eval:.4f}")
            if stopper is not None and stopper.should_stop(step, last_eval) and step < total_steps:
                stopped = step
        if step >= total_steps or stopped is not None:
            break
    runtime = time.monotonic() - started
    final = last_eval if last_eval_step == step else None
    if stopper is not None and stopper.best_step is not None:
        if stopped is not None:
            reporter.log(f"early stopping at step {stopped}: eval_loss did not improve by more than "
                         f"{params.early_stopping_threshold:g} for {params.early_stopping_patience} evaluation(s)")
        if stopper.best_step != step:
            stopper.restore_best()
            final = stopper.best
            reporter.log(f"best checkpoint: step {stopper.best_step} (eval_loss {stopper.best:.4f}) restored")
    model.eval()
    return TrainResult(steps=step, epochs=round(samples / len(examples), 4),
                       train_loss=run_loss / max(run_count, 1), runtime=runtime, samples=samples,
                       final_eval_loss=final, stopped_early_at=stopped,
                       best_step=stopper.best_step if stopper else None,
                       best_eval_loss=stopper.best if stopper else None)


def convert(model: Any, tokenizer: Any, output: Path, metadata: dict[str, Any],
            pytorch_output: Path | None = None) -> None:
    """Merge LoRA weights into the base, save the Hugging Face model, write the MLflow folder."""
    merge = getattr(model, "merge_and_unload", None)
    merged = merge() if callable(merge) else model
    with tempfile.TemporaryDirectory(prefix="tuneflow-merged-") as tmp:
        hf_dir = Path(tmp)
        merged.save_pretrained(hf_dir, safe_serialization=True)
        tokenizer.save_pretrained(hf_dir)
        if pytorch_output is not None:
            pytorch_output.mkdir(parents=True, exist_ok=True)
            for item in hf_dir.iterdir():
                shutil.copy2(item, pytorch_output / item.name)
        mlflow_folder.write_mlflow_model(hf_dir, output, metadata)
