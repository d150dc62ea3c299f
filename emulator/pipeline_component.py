"""The project's own definition of the registry pipeline component ``chat_completion_pipeline``.

It declares the published interface (input and output names, types, defaults, enums, optionality,
minimums, modes) so the unmodified SDK can build and submit the notebook's ``@pipeline`` against the
emulator; a test holds it against the published spec. The descriptions are the emulator's own words.
The pipeline's steps are the five jobs of the published pipeline; the emulator runs them as one
local training process and reports them as child runs.
"""

from __future__ import annotations

from typing import Any

NAME = "chat_completion_pipeline"
VERSION = "0.0.82"

# Pipeline steps in execution order: (node name in the pipeline, short step name, component reference).
STEPS: list[tuple[str, str, str]] = [
    ("ft_nlp_common_validation", "validation", "azureml:ft_nlp_common_validation:0.0.80"),
    ("chat_completion_model_import", "model_import", "azureml:chat_completion_model_import:0.0.81"),
    ("chat_completion_datapreprocess", "preprocess", "azureml:chat_completion_datapreprocess:0.0.80"),
    ("chat_completion_finetune", "finetune", "azureml:chat_completion_finetune:0.0.81"),
    ("ft_nlp_model_converter", "model_converter", "azureml:ft_nlp_model_converter:0.0.80"),
]

_TF = ["true", "false"]

# name: (type, default, optional, enum, min, mode, description). None = not declared.
_Spec = tuple[str, Any, bool, list[str] | None, int | None, str | None, str]
INPUTS: dict[str, _Spec] = {
    # Compute
    "instance_type_model_import": ("string", "Standard_d12_v2", True, None, None, None,
                                   "VM size for model import on serverless compute."),
    "instance_type_preprocess": ("string", "Standard_d12_v2", True, None, None, None,
                                 "VM size for preprocessing on serverless compute."),
    "instance_type_finetune": ("string", "Standard_nc24rs_v3", True, None, None, None,
                               "VM size for fine-tuning on serverless compute."),
    "instance_type_model_evaluation": ("string", "Standard_nc24rs_v3", True, None, None, None,
                                       "VM size for evaluation on serverless compute."),
    "shm_size_finetune": ("string", "5g", True, None, None, None, "Shared memory of the fine-tune container."),
    "num_nodes_finetune": ("integer", 1, True, None, 1, None, "Nodes used for fine-tuning."),
    "number_of_gpu_to_use_finetuning": ("integer", 1, True, None, 1, None, "GPUs used per node."),
    # Model import
    "huggingface_id": ("string", None, True, None, None, None, "Hugging Face model id to import."),
    "pytorch_model_path": ("custom_model", None, True, None, None, "rw_mount", "A PyTorch model folder."),
    "mlflow_model_path": ("mlflow_model", None, True, None, None, "rw_mount", "An MLflow model (asset id)."),
    "finetune_config_path": ("uri_file", None, True, None, None, "ro_mount", "JSON of fine-tune settings."),
    "trust_remote_code": ("string", "false", True, _TF, None, None, "Allow model code from the hub."),
    # Data
    "task_name": ("string", "ChatCompletion", False, ["ChatCompletion"], None, None, "The task."),
    "batch_size": ("integer", 1000, True, None, 1, None, "Rows per preprocessing batch."),
    "pad_to_max_length": ("string", "false", True, _TF, None, None, "Pad every example to max length."),
    "max_seq_length": ("integer", -1, True, None, None, None, "Longest tokenized example (-1: model max)."),
    "train_file_path": ("uri_file", None, True, None, None, "rw_mount", "Training data (JSON Lines)."),
    "validation_file_path": ("uri_file", None, True, None, None, "rw_mount", "Validation data (JSON Lines)."),
    "test_file_path": ("uri_file", None, True, None, None, "rw_mount", "Test data (JSON Lines)."),
    "train_mltable_path": ("mltable", None, True, None, None, None, "Training data as an MLTable."),
    "validation_mltable_path": ("mltable", None, True, None, None, None, "Validation data as an MLTable."),
    "test_mltable_path": ("mltable", None, True, None, None, None, "Test data as an MLTable."),
    # LoRA
    "apply_lora": ("string", "false", True, _TF, None, None, "Train LoRA adapters."),
    "merge_lora_weights": ("string", "true", True, _TF, None, None, "Merge adapters into the weights."),
    "lora_alpha": ("integer", 128, True, None, None, None, "LoRA alpha."),
    "lora_r": ("integer", 8, True, None, None, None, "LoRA rank."),
    "lora_dropout": ("number", 0.0, True, None, None, None, "LoRA dropout."),
    # Training
    "num_train_epochs": ("integer", 1, True, None, 1, None, "Training epochs."),
    "max_steps": ("integer", -1, True, None, None, None, "Stop after this many steps (-1: epochs decide)."),
    "per_device_train_batch_size": ("integer", 1, True, None, 1, None, "Train batch size per device."),
    "per_device_eval_batch_size": ("integer", 1, True, None, 1, None, "Eval batch size per device."),
    "auto_find_batch_size": ("string", "false", True, _TF, None, None, "Shrink the batch on OOM."),
    "optim": ("string", "adamw_torch", True, ["adamw_torch", "adafactor"], None, None, "Optimizer."),
    "learning_rate": ("number", 2e-05, True, None, None, None, "Peak learning rate."),
    "warmup_steps": ("integer", 0, True, None, None, None, "Linear warm-up steps."),
    "weight_decay": ("number", 0.0, True, None, None, None, "Weight decay."),
    "adam_beta1": ("number", 0.9, True, None, None, None, "Adam beta1."),
    "adam_beta2": ("number", 0.999, True, None, None, None, "Adam beta2."),
    "adam_epsilon": ("number", "1e-8", True, None, None, None, "Adam epsilon."),
    "gradient_accumulation_steps": ("integer", 1, True, None, None, None, "Steps per optimizer update."),
    "eval_accumulation_steps": ("integer", -1, True, None, None, None, "Eval steps kept before moving."),
    "lr_scheduler_type": ("string", "linear", True,
                          ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                           "constant_with_warmup"], None, None, "Learning-rate schedule."),
    "precision": ("string", "32", True, ["32", "16"], None, None, "Training precision (bits)."),
    "seed": ("integer", 42, True, None, None, None, "Random seed."),
    "enable_full_determinism": ("string", "false", True, _TF, None, None, "Deterministic kernels."),
    "dataloader_num_workers": ("integer", 0, True, None, None, None, "Data loader workers."),
    "ignore_mismatched_sizes": ("string", "false", True, _TF, None, None, "Ignore head size mismatches."),
    "max_grad_norm": ("number", 1.0, True, None, None, None, "Gradient clipping norm."),
    "evaluation_strategy": ("string", "epoch", True, ["epoch", "steps", "disable"], None, None,
                            "When to evaluate."),
    "evaluation_steps_interval": ("number", 0.0, True, None, None, None, "Evaluate every fraction of epoch."),
    "eval_steps": ("integer", 500, True, None, None, None, "Steps between evaluations."),
    "logging_strategy": ("string", "steps", True, ["epoch", "steps"], None, None, "When to log."),
    "logging_steps": ("integer", 10, True, None, None, None, "Steps between logs."),
    "metric_for_best_model": ("string", "loss", True, ["loss", "f1", "exact"], None, None,
                              "Metric that picks the best checkpoint."),
    "resume_from_checkpoint": ("string", "false", True, _TF, None, None, "Resume from the last checkpoint."),
    "save_total_limit": ("integer", -1, True, None, None, None, "Checkpoints kept (-1: all)."),
    "apply_early_stopping": ("string", "false", True, _TF, None, None, "Stop when eval stops improving."),
    "early_stopping_patience": ("integer", 1, True, None, None, None, "Evaluations without improvement."),
    "early_stopping_threshold": ("number", 0.0, True, None, None, None, "Smallest improvement that counts."),
    "apply_deepspeed": ("string", "false", True, _TF, None, None, "Use DeepSpeed."),
    "deepspeed": ("uri_file", None, True, None, None, "rw_mount", "DeepSpeed config file."),
    "deepspeed_stage": ("string", "2", True, ["2", "3"], None, None, "DeepSpeed ZeRO stage."),
    "apply_ort": ("string", "false", True, _TF, None, None, "Use ONNX Runtime training."),
    # Evaluation
    "evaluation_config": ("uri_file", None, True, None, None, None, "Evaluation settings file."),
    "evaluation_config_params": ("string", None, True, None, None, None, "Evaluation settings as JSON."),
    "compute_model_import": ("string", "serverless", True, None, None, None, "Compute for model import."),
    "compute_preprocess": ("string", "serverless", True, None, None, None, "Compute for preprocessing."),
    "compute_finetune": ("string", "serverless", True, None, None, None, "Compute for fine-tuning."),
    "compute_model_evaluation": ("string", "serverless", True, None, None, None, "Compute for evaluation."),
}

OUTPUTS: dict[str, tuple[str, str, str]] = {
    "pytorch_model_folder": ("uri_folder", "rw_mount", "The best checkpoint as a PyTorch model folder."),
    "mlflow_model_folder": ("mlflow_model", "rw_mount", "The fine-tuned model as an MLflow model folder."),
}

# The inputs the emulator's trainer reads (everything else is accepted and recorded).
DATA_INPUTS = ("train_file_path", "validation_file_path", "test_file_path")
MODEL_INPUTS = ("mlflow_model_path", "pytorch_model_path", "huggingface_id")


def input_spec(name: str) -> dict[str, Any]:
    type_, default, optional, enum, minimum, mode, description = INPUTS[name]
    spec: dict[str, Any] = {"type": type_, "optional": optional, "description": description}
    if default is not None:
        spec["default"] = default
    if enum is not None:
        spec["enum"] = list(enum)
    if minimum is not None:
        spec["min"] = minimum
    if mode is not None:
        spec["mode"] = mode
    return spec


def component_spec() -> dict[str, Any]:
    """The component as the registry returns it in ``properties.componentSpec`` (YAML-shaped dict)."""
    return {
        "$schema": "https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json",
        "name": NAME,
        "version": VERSION,
        "type": "pipeline",
        "display_name": "Chat Completion Pipeline",
        "description": "Fine-tunes a chat model for chat completion (tuneflow emulator).",
        "is_deterministic": True,
        "inputs": {name: input_spec(name) for name in INPUTS},
        "outputs": {
            name: {"type": type_, "mode": mode, "description": description}
            for name, (type_, mode, description) in OUTPUTS.items()
        },
    }


def validate_inputs(values: dict[str, Any]) -> list[str]:
    """Problems with literal pipeline inputs: unknown names, enum values, types, minimums."""
    problems: list[str] = []
    for name, value in values.items():
        if name not in INPUTS:
            problems.append(f"unknown input '{name}'")
            continue
        type_, _, _, enum, minimum, _, _ = INPUTS[name]
        if value is None or (isinstance(value, str) and value.startswith("${{")):
            continue
        if enum is not None and str(value) not in enum:
            problems.append(f"input '{name}' must be one of {enum} (got {value!r})")
        if type_ == "integer":
            try:
                number = int(str(value))
            except ValueError:
                problems.append(f"input '{name}' must be an integer (got {value!r})")
                continue
            if minimum is not None and number < minimum:
                problems.append(f"input '{name}' must be >= {minimum} (got {number})")
        elif type_ == "number":
            try:
                float(str(value))
            except ValueError:
                problems.append(f"input '{name}' must be a number (got {value!r})")
    return problems
