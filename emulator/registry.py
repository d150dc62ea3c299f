"""The ``azureml`` registry: discovery, the base model and the ``chat_completion_pipeline`` component.

Registry assets are read-only here (they are "published by Microsoft"); their versions are listed,
ordered by creation time and filtered by ``listViewType`` like the registry data plane does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import arm, pipeline_component

if TYPE_CHECKING:
    from emulator.core import Emulator

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
    """Registry tags are strings; lists and dicts are Python literals (the notebook ``ast.literal_eval``s them).

    Phi-3 models carry their published deprecation dates (retired for fine-tuning since 2025-06-30);
    a newer model name (``--base-model-name Phi-4-mini-instruct``) is served without them."""
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


def _model_version(emu: Emulator) -> dict[str, Any]:
    cfg = emu.cfg
    archived = emu.faults.current.base_model_archived
    name, version = cfg.base_model_name, cfg.base_model_version
    asset_id = f"azureml://registries/{cfg.registry_name}/models/{name}/versions/{version}"
    return {
        "id": asset_id,
        "name": version,
        "type": f"{arm.PROVIDER}/registries/models/versions",
        "systemData": arm.system_data(CREATED, who="Microsoft"),
        "properties": {
            "description": f"{name}: a chat model (weights served by the tuneflow emulator).",
            "tags": base_model_tags(emu.cfg.base_model_name),
            "properties": {
                "finetuning-tasks": "chat-completion",
                "finetune-recommended-sku": ", ".join(FINETUNE_COMPUTES),
                "inference-recommended-sku": ", ".join(INFERENCE_COMPUTES),
                "languages": "en",
            },
            "isAnonymous": False,
            "isArchived": archived,
            "stage": "Archived" if archived else "Active",
            "modelType": "mlflow_model",
            "modelUri": f"{asset_id}/mlflow_model_folder",
            "flavors": {
                "python_function": {"data": {"loader_module": "mlflow.transformers", "python_version": "3.11"}},
                "transformers": {"data": {"task": "text-generation", "framework": "pt"}},
            },
            "jobName": None,
            "provisioningState": "Succeeded",
        },
    }


def _model_container(emu: Emulator) -> dict[str, Any]:
    cfg = emu.cfg
    archived = emu.faults.current.base_model_archived
    return {
        "id": f"azureml://registries/{cfg.registry_name}/models/{cfg.base_model_name}",
        "name": cfg.base_model_name,
        "type": f"{arm.PROVIDER}/registries/models",
        "systemData": arm.system_data(CREATED, who="Microsoft"),
        "properties": {
            "description": None,
            "tags": base_model_tags(emu.cfg.base_model_name),
            "properties": {},
            "isArchived": archived,
            "latestVersion": cfg.base_model_version,
            "nextVersion": str(int(cfg.base_model_version) + 1) if cfg.base_model_version.isdigit() else None,
            "provisioningState": "Succeeded",
        },
    }


def _component_version(emu: Emulator) -> dict[str, Any]:
    cfg = emu.cfg
    name, version = pipeline_component.NAME, pipeline_component.VERSION
    return {
        "id": f"azureml://registries/{cfg.registry_name}/components/{name}/versions/{version}",
        "name": version,
        "type": f"{arm.PROVIDER}/registries/components/versions",
        "systemData": arm.system_data(CREATED, who="Microsoft"),
        "properties": {
            "componentSpec": pipeline_component.component_spec(),
            "description": pipeline_component.component_spec()["description"],
            "tags": {"Preview": ""},
            "properties": {},
            "isAnonymous": False,
            "isArchived": False,
            "stage": None,
            "provisioningState": "Succeeded",
        },
    }


def _component_container(emu: Emulator) -> dict[str, Any]:
    cfg = emu.cfg
    return {
        "id": f"azureml://registries/{cfg.registry_name}/components/{pipeline_component.NAME}",
        "name": pipeline_component.NAME,
        "type": f"{arm.PROVIDER}/registries/components",
        "systemData": arm.system_data(CREATED, who="Microsoft"),
        "properties": {
            "description": None,
            "tags": {},
            "properties": {},
            "isArchived": False,
            "latestVersion": pipeline_component.VERSION,
            "nextVersion": None,
            "provisioningState": "Succeeded",
        },
    }


def _versions(emu: Emulator, plural: str, name: str) -> list[dict[str, Any]]:
    if plural == "models" and name == emu.cfg.base_model_name:
        return [_model_version(emu)]
    if plural == "components" and name == pipeline_component.NAME:
        return [_component_version(emu)]
    return []


def _containers(emu: Emulator, plural: str) -> list[dict[str, Any]]:
    if plural == "models":
        return [_model_container(emu)]
    if plural == "components":
        return [_component_container(emu)]
    return []


def _check(request: Request) -> Response | None:
    emu: Emulator = request.app.state.emu
    if request.path_params["reg"] != emu.cfg.registry_name:
        return arm.error(
            404, "UserError", f"Registry '{request.path_params['reg']}' not found.", inner="NotFoundError"
        )
    if request.path_params["plural"] not in {"models", "components", "environments", "data", "codes"}:
        return arm.error(404, "UserError", "Unknown registry asset type.", inner="NotFoundError")
    return None


def _filter_view(items: list[dict[str, Any]], view: str | None) -> list[dict[str, Any]]:
    view = (view or "ActiveOnly").lower()
    if view == "all":
        return items
    want_archived = view == "archivedonly"
    return [i for i in items if bool(i["properties"].get("isArchived")) == want_archived]


async def list_versions(request: Request) -> Response:
    if (bad := _check(request)) is not None:
        return bad
    emu: Emulator = request.app.state.emu
    items = _filter_view(
        _versions(emu, request.path_params["plural"], request.path_params["name"]),
        request.query_params.get("listViewType"),
    )
    order = (request.query_params.get("$orderBy") or "").lower()
    items.sort(key=lambda i: i["systemData"]["createdAt"], reverse=not order.endswith(" asc"))
    top = request.query_params.get("$top")
    if top and top.isdigit():
        items = items[: int(top)]
    return arm.page(items)


async def get_version(request: Request) -> Response:
    if (bad := _check(request)) is not None:
        return bad
    emu: Emulator = request.app.state.emu
    plural, name, version = (request.path_params[k] for k in ("plural", "name", "version"))
    for item in _versions(emu, plural, name):
        if item["name"] == version:
            return arm.json_response(item)
    return arm.error(
        404,
        "UserError",
        f"Could not find asset with ID: azureml://registries/{emu.cfg.registry_name}/{plural}/{name}"
        f"/versions/{version}",
        inner="NotFoundError",
    )


async def list_containers(request: Request) -> Response:
    if (bad := _check(request)) is not None:
        return bad
    emu: Emulator = request.app.state.emu
    return arm.page(_filter_view(_containers(emu, request.path_params["plural"]), None))


async def get_container(request: Request) -> Response:
    if (bad := _check(request)) is not None:
        return bad
    emu: Emulator = request.app.state.emu
    for item in _containers(emu, request.path_params["plural"]):
        if item["name"] == request.path_params["name"]:
            return arm.json_response(item)
    return arm.error(
        404, "UserError", f"Could not find asset {request.path_params['name']}.", inner="NotFoundError"
    )


async def discovery(request: Request) -> Response:
    emu: Emulator = request.app.state.emu
    cfg = emu.cfg
    name = request.path_params["reg"]
    if name != cfg.registry_name:
        return arm.error(404, "UserError", f"Registry '{name}' not found.", inner="NotFoundError")
    return arm.json_response(
        {
            "registryName": cfg.registry_name,
            "tenantId": emu.identity["tenant_id"],
            "primaryRegion": cfg.location,
            "regions": [cfg.location],
            "subscriptionId": cfg.subscription_id,
            "resourceGroup": cfg.registry_resource_group,
            "workspaceName": None,
            # The SDK appends "mferp/managementfrontend" to this for every registry call.
            "primaryRegionResourceProviderUri": emu.base_url + "/",
            "registryFqdns": {cfg.location: {"registry": emu.base_url}},
        }
    )


def routes() -> list[Route]:
    prefix = (
        "/mferp/managementfrontend/subscriptions/{sub}/resourceGroups/{rg}"
        f"/providers/{arm.PROVIDER}/registries/{{reg}}/{{plural}}"
    )
    return [
        Route("/registrymanagement/v1.0/registries/{reg}/discovery", discovery, methods=["GET"]),
        Route(prefix, list_containers, methods=["GET"]),
        Route(prefix + "/{name}", get_container, methods=["GET"]),
        Route(prefix + "/{name}/versions", list_versions, methods=["GET"]),
        Route(prefix + "/{name}/versions/{version}", get_version, methods=["GET"]),
    ]
