"""Fine-tuning parameters: notebook defaults < the model's ``model_specific_defaults`` tag < settings < manifest.

Every value is checked against the pipeline component's own interface (name, type, enum) as the
registry serves it, so a typo fails before a GPU is booked. Boolean-like inputs are the strings
"true"/"false", as the component declares them.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from typing import Any

from shared.errors import FinetuneParameterError
from shared.integers import parse_int

# The reference notebook's training and optimisation parameters.
NOTEBOOK_DEFAULTS: Mapping[str, Any] = {
    "num_train_epochs": 3,
    "per_device_train_batch_size": 1,
    "per_device_eval_batch_size": 1,
    "learning_rate": 5e-6,
    "lr_scheduler_type": "cosine",
    "apply_lora": "true",
    "apply_deepspeed": "true",
    "deepspeed_stage": "2",
}
# With a test split, training stops once the eval loss stops improving and keeps the best checkpoint: GPU
# hours are the largest cost of a fine-tune. A layer under the user's, so either may turn it off.
EARLY_STOPPING: Mapping[str, Any] = {
    "apply_early_stopping": "true", "early_stopping_patience": 2, "early_stopping_threshold": 0.0,
    "metric_for_best_model": "loss",
}
USER_SETTING, MANIFEST_KEY = "TUNEFLOW_FINETUNE_PARAMS", "finetune"
# Inputs tuneflow sets itself from the run and the compute checks.
MANAGED = frozenset(
    {
        "mlflow_model_path", "pytorch_model_path", "huggingface_id", "train_file_path", "test_file_path",
        "validation_file_path", "train_mltable_path", "test_mltable_path", "validation_mltable_path",
        "compute_model_import", "compute_preprocess", "compute_finetune", "compute_model_evaluation",
        "instance_type_model_import", "instance_type_preprocess", "instance_type_finetune",
        "instance_type_model_evaluation", "number_of_gpu_to_use_finetuning", "num_nodes_finetune",
    }
)


def resolve(
    component_inputs: Mapping[str, Any],
    model_defaults: Mapping[str, Any],
    overrides: Mapping[str, Any],
    manifest: Mapping[str, Any] | None = None,
    test_split: bool = True,
) -> dict[str, Any]:
    """Merge the layers (the manifest's ``finetune`` last) and coerce each value to the component's type.

    Every problem names where the value came from as a key path: ``finetune.learning_rate: expected a
    number, got "fast"`` (the manifest) or ``TUNEFLOW_FINETUNE_PARAMS.lora_r: ...`` (the app setting).
    """
    problems: list[str] = []
    merged: dict[str, Any] = {}
    early = EARLY_STOPPING if test_split else {}
    layers = (("notebook default", NOTEBOOK_DEFAULTS), ("model_specific_defaults", model_defaults),
              ("early stopping default", early), (USER_SETTING, overrides), (MANIFEST_KEY, manifest or {}))
    for source, layer in layers:
        user = source in (USER_SETTING, MANIFEST_KEY)
        for name, value in layer.items():
            where = f"{source}.{name}"
            if name in MANAGED:
                if user:
                    problems.append(f"{where}: set by tuneflow from the run and compute settings")
                continue
            spec = component_inputs.get(name)
            if spec is None:
                if not user:
                    continue  # a tag written for a newer component version: not the user's mistake
                close = difflib.get_close_matches(name, list(component_inputs), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{where}: not an input of the pipeline component{hint}")
                continue
            try:
                merged[name] = coerce(value, spec)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
    if not problems:
        problems.extend(_early_stopping_problems(merged, test_split, _origin(layers)))
    if problems:
        raise FinetuneParameterError("fine-tune parameters rejected: " + "; ".join(problems), problems=problems)
    return merged


def _origin(layers: tuple[tuple[str, Mapping[str, Any]], ...]) -> Callable[[str], str]:
    """Where a merged input's value came from, as a key path (the last layer that set it)."""
    def where(name: str) -> str:
        source = next((s for s, layer in reversed(layers) if name in layer), MANIFEST_KEY)
        return f"{source}.{name}"

    return where


def _early_stopping_problems(merged: Mapping[str, Any], test_split: bool, where: Callable[[str], str]) -> list[str]:
    """The early-stopping inputs hold together: they need evaluations, and evaluations need a test split."""
    problems = []
    if merged.get("early_stopping_patience", 1) < 1:
        problems.append(f"{where('early_stopping_patience')}: expected at least 1, "
                        f"got {merged['early_stopping_patience']}")
    if merged.get("early_stopping_threshold", 0.0) < 0:
        problems.append(f"{where('early_stopping_threshold')}: expected zero or more, "
                        f"got {merged['early_stopping_threshold']:g}")
    limit = merged.get("save_total_limit", -1)
    if limit == 0 or limit < -1:
        problems.append(f"{where('save_total_limit')}: expected -1 (keep all) or a positive integer, got {limit}")
    if merged.get("apply_early_stopping") == "true":
        if not test_split:
            problems.append(f"{where('apply_early_stopping')}: early stopping needs a test split to evaluate on "
                            "(add a test file, or set TUNEFLOW_TEST_FRACTION above 0)")
        elif merged.get("evaluation_strategy") == "disable":
            problems.append(f"{where('apply_early_stopping')}: early stopping needs evaluations "
                            f"({where('evaluation_strategy')} is \"disable\")")
    return problems


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def coerce(value: Any, spec: Any) -> Any:
    """``value`` as the component input ``spec`` declares it; ValueError says what was expected."""
    kind = str(getattr(spec, "type", "string"))
    enum = getattr(spec, "enum", None)
    if kind == "integer":
        result: Any = _integer(value)
    elif kind == "number":
        try:
            if isinstance(value, bool):
                raise TypeError
            result = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {_show(value)}") from None
    elif kind == "string":
        result = ("true" if value else "false") if isinstance(value, bool) else str(value)
    else:
        raise ValueError(f"a {kind} input, which tuneflow does not take from settings or manifests")
    if enum and str(result) not in [str(e) for e in enum]:
        raise ValueError(f"expected one of {', '.join(map(str, enum))}, got {_show(value)}")
    minimum = getattr(spec, "min", None)
    if minimum is not None and isinstance(result, int | float) and result < minimum:
        raise ValueError(f"expected at least {minimum}, got {_show(value)}")
    maximum = getattr(spec, "max", None)
    if maximum is not None and isinstance(result, int | float) and result > maximum:
        raise ValueError(f"expected at most {maximum}, got {_show(value)}")
    return result


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return parse_int(value.strip() if isinstance(value, str) else "")
    except ValueError:
        raise ValueError(f"expected an integer, got {_show(value)}") from None
