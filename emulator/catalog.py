"""The ``azureml`` registry's model catalog: which chat models the emulator publishes, with which tags,
and which stand-in weights (``emulator.basemodel``) each one is served with.

Two kinds of entry:

* the configured base model (``--base-model-name``, default ``Phi-3-mini-4k-instruct``, version
  ``cfg.base_model_version``), served as it always was, on the Phi-3 stand-in;
* the catalog's other fine-tunable chat models, each with its real registry name, version and tags
  and its own stand-in (today ``Phi-4``: another chat template, other weights). A catalog model whose
  name is the configured one is not added twice: the configured entry wins.

Tags are strings, as the registry publishes them; lists and dicts are Python literals (the notebook
``ast.literal_eval``s them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.config import EmulatorConfig

# --- Phi-3-mini-4k-instruct (the configured model's tags, as the emulator has always served them) ----------

FINETUNE_COMPUTES = [
    "Standard_NC24ads_A100_v4",
    "Standard_NC48ads_A100_v4",
    "Standard_NC96ads_A100_v4",
    "Standard_ND96asr_v4",
    "Standard_ND96amsr_A100_v4",
]
INFERENCE_COMPUTES = [
    "Standard_NC6s_v3",
    "Standard_NC12s_v3",
    "Standard_NC24s_v3",
    "Standard_ND40rs_v2",
    "Standard_NC24ads_A100_v4",
    "Standard_NC48ads_A100_v4",
    "Standard_ND96asr_v4",
    "Standard_ND96amsr_A100_v4",
    "Standard_NC96ads_A100_v4",
]
# Fine-tuning defaults the model carries (each one a pipeline input), as the catalog publishes them.
MODEL_SPECIFIC_DEFAULTS: dict[str, Any] = {
    "apply_deepspeed": "true",
    "deepspeed_stage": 2,
    "apply_lora": "true",
    "apply_ort": "false",
    "precision": 16,
    "ignore_mismatched_sizes": "false",
    "num_train_epochs": 1,
    "per_device_train_batch_size": 1,
    "per_device_eval_batch_size": 1,
    "gradient_accumulation_steps": 1,
    "learning_rate": 5e-6,
    "lr_scheduler_type": "cosine",
    "logging_strategy": "steps",
    "logging_steps": 10,
    "save_total_limit": 1,
}
CREATED = "2024-04-23T17:24:55.1234560Z"


def base_model_tags(name: str = "Phi-3-mini-4k-instruct") -> dict[str, str]:
    """The configured model's tags. Phi-3 models carry their published deprecation dates (retired for
    fine-tuning since 2025-06-30); a newer name (``--base-model-name Phi-4-mini-instruct``) is served
    without them."""
    tags = {
        "author": "Microsoft",
        "license": "mit",
        "task": "chat-completion",
        "displayName": name,
        "textContextWindow": "4096",
        "maxOutputTokens": "4096",
        "languages": "en",
        "inputModalities": "text",
        "outputModalities": "text",
        "inference_supported_envs": repr(["vllm"]),
        "finetune_compute_allow_list": repr(FINETUNE_COMPUTES),
        "inference_compute_allow_list": repr(INFERENCE_COMPUTES),
        "model_specific_defaults": repr(MODEL_SPECIFIC_DEFAULTS),
    }
    if name.lower().startswith("phi-3"):
        tags.update({"InferenceDeprecationDate": "2025-06-30", "FinetuneDeprecationDate": "2025-06-30"})
    return tags


def _configured_properties() -> dict[str, str]:
    return {
        "finetuning-tasks": "chat-completion",
        "finetune-recommended-sku": ", ".join(FINETUNE_COMPUTES),
        "inference-recommended-sku": ", ".join(INFERENCE_COMPUTES),
        "languages": "en",
    }


# --- Phi-4 ------------------------------------------------------------------------------------------------
# Source: Azure/azureml-assets, assets/models/system/Phi-4/spec.yaml (version 8) at commit
# 1aa6cc49af48e781a55e4bc5107a7134a50de4d4, the last before the tags moved to `system_metadata`
# (#5150); version 8 and model_specific_defaults are unchanged at 4b41f8cc (2026-07-23). Fine-tunable
# with chat_completion_pipeline (finetuning-tasks: chat-completion), no deprecation dates.

PHI4_FINETUNE_COMPUTES = [
    "Standard_NC24ads_A100_v4",
    "Standard_NC48ads_A100_v4",
    "Standard_NC96ads_A100_v4",
    "Standard_ND96asr_v4",
    "Standard_ND96amsr_A100_v4",
    "Standard_NC40ads_H100_v5",
    "Standard_NC80adis_H100_v5",
    "Standard_ND96isr_H100_v5",
]
PHI4_INFERENCE_COMPUTES = [
    "Standard_NC24ads_A100_v4",
    "Standard_NC48ads_A100_v4",
    "Standard_NC96ads_A100_v4",
    "Standard_ND96asr_v4",
    "Standard_ND96amsr_A100_v4",
    "Standard_ND96isr_H100_v5",
    "Standard_NC40ads_H100_v5",
    "Standard_NC80adis_H100_v5",
]
# the same as Phi-3's but for DeepSpeed stage 3 (a 14B model)
PHI4_MODEL_SPECIFIC_DEFAULTS: dict[str, Any] = {**MODEL_SPECIFIC_DEFAULTS, "deepspeed_stage": 3}
PHI4_TAGS: dict[str, str] = {
    "author": "Microsoft",
    "SharedComputeCapacityEnabled": "",
    "disable-batch": "true",
    "Preview": "",
    "Featured": "",
    "languages": "en,ar,bn,cs,da,de,el,es,fa,fi,fr,gu,ha,he,hi,hu,id,it,ja,jv,kn,ko,ml,mr,nl,no,or,pa,pl,ps,pt,"
                 "ro,ru,sv,sw,ta,te,th,tl,tr,uk,ur,vi,yo,zh",
    "keywords": "Reasoning,Understanding,Low latency",
    "freePlayground": "true",
    "playgroundRateLimitTier": "low",
    "inference_supported_envs": repr(["vllm"]),
    "license": "MIT",
    "task": "chat-completion",
    "displayName": "Phi-4",
    "summary": "Phi-4 14B, a highly capable model for low latency scenarios.",
    "textContextWindow": "16384",
    "maxOutputTokens": "16384",
    "inputModalities": "text",
    "outputModalities": "text",
    "trainingDataDate": "June 2024",
    "hiddenlayerscanned": "",
    "maas-inference": "true",
    "inference_compute_allow_list": repr(PHI4_INFERENCE_COMPUTES),
    "finetune_compute_allow_list": repr(PHI4_FINETUNE_COMPUTES),
    "model_specific_defaults": repr(PHI4_MODEL_SPECIFIC_DEFAULTS),
    "benchmark": "quality",
}
PHI4_PROPERTIES: dict[str, str] = {
    "inference-min-sku-spec": "24|1|220|64",
    "inference-recommended-sku": ", ".join(PHI4_INFERENCE_COMPUTES),
    "finetuning-tasks": "chat-completion",
    "finetune-min-sku-spec": "24|1|220|64",
    "finetune-recommended-sku": ", ".join(PHI4_FINETUNE_COMPUTES),
    "languages": "en",
    "SharedComputeCapacityEnabled": "True",
}


@dataclass(frozen=True)
class RegistryModel:
    name: str
    version: str
    tags: dict[str, str]
    properties: dict[str, str]
    standin: str  # the emulator.basemodel stand-in serving its weights ("phi3", "phi4")
    created: str = CREATED  # the emulator's own timestamp (the catalog's is not published)


# The catalog's models besides the configured one, in listing order.
EXTRA_MODELS: tuple[RegistryModel, ...] = (
    RegistryModel(name="Phi-4", version="8", tags=PHI4_TAGS, properties=PHI4_PROPERTIES, standin="phi4"),
)


def models(cfg: EmulatorConfig) -> list[RegistryModel]:
    """Every model the registry serves: the configured one first, then the catalog's others."""
    configured = RegistryModel(
        name=cfg.base_model_name, version=cfg.base_model_version, tags=base_model_tags(cfg.base_model_name),
        properties=_configured_properties(), standin="phi3",
    )
    others = [m for m in EXTRA_MODELS if m.name.lower() != configured.name.lower()]
    return [configured, *others]


def find(cfg: EmulatorConfig, name: str) -> RegistryModel | None:
    """The registry model of that name (names are case-sensitive in registry asset ids)."""
    return next((m for m in models(cfg) if m.name == name), None)
