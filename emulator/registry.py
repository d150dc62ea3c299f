"""The ``azureml`` registry: discovery, the catalog's models (``emulator.catalog``) and the
``chat_completion_pipeline`` component.

Registry assets are read-only here (they are "published by Microsoft"); their versions are listed,
ordered by creation time and filtered by ``listViewType`` like the registry data plane does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import arm, catalog, pipeline_component
from emulator.catalog import RegistryModel

if TYPE_CHECKING:
    from emulator.core import Emulator

# Still importable from here (tests/unit/test_infra.py); the tag values live in the catalog.
FINETUNE_COMPUTES = catalog.FINETUNE_COMPUTES
CREATED = catalog.CREATED


def _archived(emu: Emulator, model: RegistryModel) -> bool:
    return emu.faults.base_model_archived(model.name, emu.cfg.base_model_name)


def _model_version(emu: Emulator, model: RegistryModel) -> dict[str, Any]:
    archived = _archived(emu, model)
    asset_id = f"azureml://registries/{emu.cfg.registry_name}/models/{model.name}/versions/{model.version}"
    return {
        "id": asset_id,
        "name": model.version,
        "type": f"{arm.PROVIDER}/registries/models/versions",
        "systemData": arm.system_data(model.created, who="Microsoft"),
        "properties": {
            "description": f"{model.name}: a chat model (weights served by the tuneflow emulator).",
            "tags": dict(model.tags),
            "properties": dict(model.properties),
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


def _model_container(emu: Emulator, model: RegistryModel) -> dict[str, Any]:
    return {
        "id": f"azureml://registries/{emu.cfg.registry_name}/models/{model.name}",
        "name": model.name,
        "type": f"{arm.PROVIDER}/registries/models",
        "systemData": arm.system_data(model.created, who="Microsoft"),
        "properties": {
            "description": None,
            "tags": dict(model.tags),
            "properties": {},
            "isArchived": _archived(emu, model),
            "latestVersion": model.version,
            "nextVersion": str(int(model.version) + 1) if model.version.isdigit() else None,
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
    if plural == "models" and (model := catalog.find(emu.cfg, name)) is not None:
        return [_model_version(emu, model)]
    if plural == "components" and name == pipeline_component.NAME:
        return [_component_version(emu)]
    return []


def _containers(emu: Emulator, plural: str) -> list[dict[str, Any]]:
    if plural == "models":
        return [_model_container(emu, m) for m in catalog.models(emu.cfg)]
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
