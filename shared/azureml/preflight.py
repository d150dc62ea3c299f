"""The reference notebook's pre-flight checks, as functions that raise actionable errors.

* the base model exists in the registry and is neither archived nor deprecated;
* the compute exists, is not failed, and its VM size may fine-tune the model
  (``finetune_compute_allow_list`` tag when present); GPUs per node from ``compute.list_sizes()``.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from shared.azureml.sdk import azure_errors, text
from shared.errors import ComputeError, ModelUnavailableError
from shared.settings import Settings

SERVERLESS = "serverless"
# Sizes the fine-tuning components are documented not to support (used when no allow list is tagged).
UNSUPPORTED_FINETUNE_SIZES = frozenset({"standard_nc6", "standard_nc12", "standard_nc24", "standard_nc24r"})


@dataclass(frozen=True)
class BaseModel:
    id: str
    name: str
    version: str
    tags: dict[str, str]


@dataclass(frozen=True)
class ComputeTarget:
    compute: str  # a cluster name or "serverless"
    instance_type: str
    gpus_per_node: int
    num_nodes: int


def tag_list(tags: dict[str, str], key: str) -> list[str] | None:
    """A list-valued registry tag (JSON or Python literal), or None when absent/unreadable."""
    raw = tags.get(key)
    if not raw:
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(raw)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, list):
            return [str(v) for v in value]
    return None


def tag_dict(tags: dict[str, str], key: str) -> dict[str, Any]:
    raw = tags.get(key)
    if not raw:
        return {}
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(raw)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return value
    return {}


_HINT = "set TUNEFLOW_BASE_MODEL (and TUNEFLOW_BASE_MODEL_VERSION) to a model that can be fine-tuned"
MANIFEST_HINT = "choose a base_model (and base_model_version) that can be fine-tuned"
# How a user sets each compute choice: app settings, or the manifest's keys (``MANIFEST_NAMES``)
SETTING_NAMES = {"compute": "TUNEFLOW_COMPUTE", "instance_type": "TUNEFLOW_SERVERLESS_INSTANCE_TYPE",
                 "num_nodes": "TUNEFLOW_NUM_NODES"}
MANIFEST_NAMES = {"compute": "compute", "instance_type": "instance_type", "num_nodes": "num_nodes"}


def _describe(settings: Settings) -> str:
    version = settings.base_model_version
    return (f"base model {settings.base_model!r}" + (f" version {version}" if version else "")
            + f" in registry {settings.registry!r}")


def fetch_base_model(registry: Any, settings: Settings, hint: str = _HINT) -> Any:
    """The registry's model entity for the configured base model (no fitness checks)."""
    from azure.core.exceptions import ResourceNotFoundError

    name, version, where = settings.base_model, settings.base_model_version, _describe(settings)
    try:
        with azure_errors(f"reading {where}", ModelUnavailableError):
            model = registry.models.get(name, version=version) if version else registry.models.get(
                name, label="latest"
            )
    except ResourceNotFoundError as exc:
        raise ModelUnavailableError(
            f"{where} was not found (it may be archived or retired): {hint}", model=name
        ) from exc
    return model


def get_base_model(registry: Any, settings: Settings, hint: str = _HINT) -> BaseModel:
    """The base model, refused with an actionable error when archived or deprecated."""
    model = fetch_base_model(registry, settings, hint)
    name, where = settings.base_model, _describe(settings)
    tags = {str(k): str(v) for k, v in (model.tags or {}).items()}
    properties = {str(k).lower(): str(v).lower() for k, v in (model.properties or {}).items()}
    archived = (model.stage or "").lower() == "archived" or properties.get("isarchived") == "true"
    retired = finetune_deprecations(tags, date.today())
    if archived or retired:
        state = "archived" if archived else f"deprecated for fine-tuning ({', '.join(retired)})"
        raise ModelUnavailableError(
            f"{where} is {state} and cannot be fine-tuned: {hint}", model=name, version=model.version
        )
    return BaseModel(str(model.id), str(model.name), str(model.version), tags)


def finetune_deprecations(tags: dict[str, str], today: date) -> list[str]:
    """The deprecation tags that stop fine-tuning today, as ``key=value``.

    Registry assets announce retirement with date tags (``FinetuneDeprecationDate``,
    ``InferenceDeprecationDate``). A fine-tuning or generic deprecation date on or before today
    retires the model for fine-tuning; an inference-only date does not; a deprecation tag whose value
    is not a date is taken at its word.
    """
    found = []
    for key, value in tags.items():
        lowered = key.lower()
        if ("deprecat" not in lowered and "retire" not in lowered) or "inference" in lowered:
            continue
        try:
            when = date.fromisoformat(value.strip()[:10])
        except ValueError:
            found.append(f"{key}={value}")
            continue
        if when <= today:
            found.append(f"{key}={value}")
    return found


def check_compute(workspace: Any, settings: Settings, model: BaseModel,
                  names: dict[str, str] = SETTING_NAMES) -> ComputeTarget:
    """``names``: how the user chose each value (app settings or manifest keys), for the messages."""
    allow = tag_list(model.tags, "finetune_compute_allow_list")
    if settings.compute == SERVERLESS:
        size = settings.serverless_instance_type
        _check_size(size, allow, model, names["instance_type"])
        gpus = settings.gpus_per_node or _gpus_for(workspace, size) or 1
        return ComputeTarget(SERVERLESS, size, gpus, settings.num_nodes)

    from azure.core.exceptions import ResourceNotFoundError

    try:
        with azure_errors(f"reading compute {settings.compute!r}", ComputeError):
            compute = workspace.compute.get(settings.compute)
    except ResourceNotFoundError as exc:
        raise ComputeError(
            f"compute {settings.compute!r} does not exist in the workspace: create it or change {names['compute']}",
            compute=settings.compute,
        ) from exc
    if text(getattr(compute, "provisioning_state", None)).lower() == "failed":
        raise ComputeError(
            f"compute {settings.compute!r} is in a failed state: repair or recreate it", compute=settings.compute
        )
    size = str(getattr(compute, "size", "") or "")
    _check_size(size, allow, model, names["compute"])
    gpus = _gpus_for(workspace, size)
    if not gpus:
        raise ComputeError(
            f"compute {settings.compute!r} (size {size}) has no GPUs: fine-tuning needs a GPU cluster",
            compute=settings.compute,
            size=size,
        )
    max_nodes = getattr(compute, "max_instances", None)
    if isinstance(max_nodes, int) and settings.num_nodes > max_nodes:
        raise ComputeError(
            f"{names['num_nodes']}={settings.num_nodes} exceeds compute {settings.compute!r}'s "
            f"maximum of {max_nodes} nodes",
            compute=settings.compute,
        )
    return ComputeTarget(settings.compute, size, gpus, settings.num_nodes)


def inference_size_problem(tags: dict[str, Any], size: str, model: str, setting: str = "") -> str | None:
    """Why ``size`` may not serve ``model`` (its ``inference_compute_allow_list``), or None."""
    allow = tag_list({str(k): str(v) for k, v in tags.items()}, "inference_compute_allow_list")
    if allow is not None and size.lower() not in {a.lower() for a in allow}:
        return f"{setting + ' ' if setting else ''}{size!r} is not in {model}'s inference_compute_allow_list " \
               f"({', '.join(allow)})"
    return None


def _check_size(size: str, allow: list[str] | None, model: BaseModel, setting: str) -> None:
    if allow is not None:
        if size.lower() not in {a.lower() for a in allow}:
            raise ComputeError(
                f"VM size {size!r} is not in {model.name}'s finetune_compute_allow_list "
                f"({', '.join(allow)}): change {setting}",
                size=size,
            )
    elif size.lower() in UNSUPPORTED_FINETUNE_SIZES:
        raise ComputeError(f"VM size {size!r} does not support fine-tuning: change {setting}", size=size)


def _gpus_for(workspace: Any, size: str) -> int:
    with azure_errors("listing VM sizes", ComputeError):
        sizes = workspace.compute.list_sizes()
    for vm in sizes:
        if str(vm.name).lower() == size.lower():
            return int(getattr(vm, "gpus", 0) or 0)
    return 0
