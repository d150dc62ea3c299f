"""A run's effective configuration: the manifest merged over the app settings, carried on the run.

The run record keeps the values of ``RUN_FIELDS`` it was created with, so every later step (submit,
register, deploy, idle teardown) uses what the drop asked for even if the app settings change
meanwhile, and the run id folds them in: the same data with another manifest is another run.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

from shared.manifest.schema import Manifest
from shared.settings import Settings

# Settings a manifest may choose, and with them the ones that decide a run's outcome.
RUN_FIELDS = (
    "registry", "base_model", "base_model_version", "pipeline_component", "pipeline_version", "compute",
    "serverless_instance_type", "num_nodes", "finetune_params", "model_name", "endpoint", "instance_type",
    "instance_count", "idle_teardown_minutes", "test_fraction", "validation_policy",
    "eval_max_rows", "eval_compare_base", "gate_enabled", "gate_metric", "gate_min_delta", "gate_max_error_rate",
    "gate_min_score",
    "rollout_strategy", "rollout_steps", "rollout_bake_minutes", "rollout_max_error_rate", "rollout_max_p95_ratio",
    "rollout_min_requests", "rollout_mirror_percent",
)


def run_config(settings: Settings, manifest: Manifest | None = None) -> dict[str, Any]:
    """The run's settings: the app's, with what ``manifest`` sets (JSON-ready)."""
    m = manifest or Manifest()
    base_model = m.base_model or settings.base_model
    chosen: dict[str, Any] = {
        "registry": m.registry,
        "base_model": m.base_model,
        "base_model_version": m.base_model_version,
        "compute": m.compute,
        "serverless_instance_type": m.instance_type,
        "num_nodes": m.num_nodes,
        "endpoint": m.endpoint,
        "instance_type": m.deployment_instance_type,
        "instance_count": m.deployment_instance_count,
        "idle_teardown_minutes": m.idle_teardown_minutes,
        "eval_max_rows": m.eval_max_rows,
        "eval_compare_base": m.eval_compare_base,
        **{f"gate_{key}": value for key, value in m.gate.items()},
        **{f"rollout_{key}": value for key, value in m.rollout.items()},
    }
    config = {name: getattr(settings, name) for name in RUN_FIELDS}
    config.update({k: v for k, v in chosen.items() if v is not None})
    if m.base_model and not m.base_model_version:
        config["base_model_version"] = None  # another base model does not inherit the pin of the app's default
    config["finetune_params"] = dict(settings.finetune_params)  # the app's layer; the manifest's is "finetune"
    config["finetune"] = dict(m.finetune)
    if m.model_name:
        config["model_name"] = m.model_name
    elif m.suffix:
        config["model_name"] = f"{base_model.replace('/', '-')}-ft-{m.suffix}"
    else:
        config["model_name"] = dataclasses.replace(settings, base_model=base_model).registered_model_name
    return config


def settings_for(settings: Settings, config: Mapping[str, Any] | None) -> Settings:
    """The app settings as one run sees them (a run from before manifests has no config: the app's)."""
    if not config:
        return settings
    known = {k: v for k, v in config.items() if k in RUN_FIELDS}
    if "finetune_params" in known:
        known["finetune_params"] = types.MappingProxyType(dict(known["finetune_params"]))
    if "rollout_steps" in known:
        known["rollout_steps"] = tuple(known["rollout_steps"])
    return dataclasses.replace(settings, **known)
