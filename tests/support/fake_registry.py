"""A stand-in for the registry MLClient's `models` and `components` (entities, not HTTP)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from azure.ai.ml import load_component
from azure.ai.ml.entities import Model
from azure.core.exceptions import ResourceNotFoundError

PHI3_TAGS = {
    "finetune_compute_allow_list": '["Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4", "Standard_ND96amsr_A100_v4"]',
    "inference_compute_allow_list": '["Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4"]',
    "model_specific_defaults": "{'apply_deepspeed': 'true', 'apply_lora': 'true', 'precision': '16'}",
}


def registry_component(spec: Path) -> Any:
    component = load_component(source=spec)
    # What registry.components.get returns: the same component, addressed by its registry id.
    component._id = f"azureml://registries/azureml/components/{component.name}/versions/{component.version}"
    return component


def fake_registry(spec: Path, *, model_tags: dict[str, str] | None = None, stage: str | None = None,
                  missing: bool = False) -> Any:
    model = Model(name="Phi-3-mini-4k-instruct", version="7", tags=PHI3_TAGS if model_tags is None else model_tags,
                  stage=stage)
    model._id = "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/7"

    def get_model(name: str, version: str | None = None, label: str | None = None) -> Model:
        if missing or name != model.name:
            raise ResourceNotFoundError(f"model {name} not found")
        return model

    return SimpleNamespace(models=SimpleNamespace(get=get_model),
                           # a fresh entity per call, as the real registry client returns
                           components=SimpleNamespace(get=lambda name, version=None, label=None: registry_component(spec)))
