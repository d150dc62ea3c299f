"""Workspace-level ARM routes: the workspace itself, its discovery document, computes, VM sizes, datastores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import arm, quota

if TYPE_CHECKING:
    from emulator.core import Emulator

# GPU SKUs the workspace's region offers (name, family, vCPUs, GPUs, memory GB).
VM_SIZES: list[tuple[str, str, int, int, float]] = [
    ("Standard_DS3_v2", "standardDSv2Family", 4, 0, 14.0),
    ("Standard_D12_v2", "standardDv2Family", 4, 0, 28.0),
    ("Standard_NC4as_T4_v3", "Standard NCASv3_T4 Family", 4, 1, 28.0),
    ("Standard_NC6s_v3", "standardNCSv3Family", 6, 1, 112.0),
    ("Standard_NC12s_v3", "standardNCSv3Family", 12, 2, 224.0),
    ("Standard_NC24s_v3", "standardNCSv3Family", 24, 4, 448.0),
    ("Standard_NC24rs_v3", "standardNCSv3Family", 24, 4, 448.0),
    ("Standard_ND40rs_v2", "standardNDSv2Family", 40, 8, 672.0),
    ("Standard_NC24ads_A100_v4", "StandardNCADSA100v4Family", 24, 1, 220.0),
    ("Standard_NC48ads_A100_v4", "StandardNCADSA100v4Family", 48, 2, 440.0),
    ("Standard_NC96ads_A100_v4", "StandardNCADSA100v4Family", 96, 4, 880.0),
    ("Standard_ND96asr_v4", "Standard NDASv4_A100 Family", 96, 8, 900.0),
    ("Standard_ND96amsr_A100_v4", "StandardNDAMSv4_A100Family", 96, 8, 1900.0),
]

DEFAULT_COMPUTE: dict[str, Any] = {"name": "gpu-cluster-big", "size": "Standard_NC24ads_A100_v4", "max_nodes": 2}


def emu_of(request: Request) -> Emulator:
    emu: Emulator = request.app.state.emu
    return emu


def check_workspace(request: Request) -> Response | None:
    """404 like ARM when the path names another subscription, resource group or workspace."""
    emu = emu_of(request)
    p = request.path_params
    cfg = emu.cfg
    if (
        p.get("sub", cfg.subscription_id).lower() != cfg.subscription_id.lower()
        or p.get("rg", cfg.resource_group).lower() != cfg.resource_group.lower()
        or p.get("ws", cfg.workspace_name).lower() != cfg.workspace_name.lower()
    ):
        return arm.error(
            404,
            "ResourceNotFound",
            f"The Resource '{arm.PROVIDER}/workspaces/{p.get('ws')}' under resource group "
            f"'{p.get('rg')}' was not found.",
        )
    return None


def workspace_body(emu: Emulator) -> dict[str, Any]:
    cfg = emu.cfg
    rg_id = f"/subscriptions/{cfg.subscription_id}/resourceGroups/{cfg.resource_group}"
    return {
        "id": emu.ws_id,
        "name": cfg.workspace_name,
        "type": f"{arm.PROVIDER}/workspaces",
        "location": cfg.location,
        "tags": {},
        "kind": "Default",
        "sku": {"name": "Basic", "tier": "Basic"},
        "identity": {
            "type": "SystemAssigned",
            "principalId": emu.identity["principal_id"],
            "tenantId": emu.identity["tenant_id"],
        },
        "systemData": arm.system_data(emu.identity["created"]),
        "properties": {
            "friendlyName": cfg.workspace_name,
            "description": "tuneflow local emulator workspace",
            "workspaceId": emu.identity["workspace_id"],
            "tenantId": emu.identity["tenant_id"],
            "storageAccount": f"{rg_id}/providers/Microsoft.Storage/storageAccounts/{emu.blobs.account_name}",
            "keyVault": f"{rg_id}/providers/Microsoft.KeyVault/vaults/kv-tuneflow-local",
            "applicationInsights": f"{rg_id}/providers/Microsoft.insights/components/ai-tuneflow-local",
            "containerRegistry": None,
            "discoveryUrl": f"{emu.base_url}/discovery/workspaces/{emu.identity['workspace_id']}",
            "mlFlowTrackingUri": (
                f"azureml://{cfg.location}.api.azureml.ms/mlflow/v1.0{emu.ws_id}"
            ),
            "provisioningState": "Succeeded",
            "hbiWorkspace": False,
            "publicNetworkAccess": "Enabled",
            "v1LegacyMode": False,
            "storageHnsEnabled": False,
            "enableDataIsolation": False,
            "privateLinkCount": 0,
            "systemDatastoresAuthMode": "accesskey",
            "serviceProvisionedResourceGroup": f"{cfg.workspace_name}-managed",
        },
    }


async def get_workspace(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    return arm.json_response(workspace_body(emu_of(request)))


async def discovery(request: Request) -> Response:
    emu = emu_of(request)
    base = emu.base_url
    return arm.json_response(
        {
            "api": base,
            "catalog": base,
            "experimentation": base,
            "gallery": base,
            "history": base,
            "hyperdrive": base,
            "labeling": base,
            "modelmanagement": base,
            "pipelines": base,
            "studio": "https://ml.azure.com",
        }
    )


# ---------------------------------------------------------------------------------------------- computes


def compute_body(emu: Emulator, doc: dict[str, Any]) -> dict[str, Any]:
    name = doc["name"]
    return {
        "id": f"{emu.ws_id}/computes/{name}",
        "name": name,
        "type": f"{arm.PROVIDER}/workspaces/computes",
        "location": emu.cfg.location,
        "tags": doc.get("tags") or {},
        "identity": None,
        "sku": None,
        "systemData": arm.system_data(doc["created"]),
        "properties": {
            "computeType": "AmlCompute",
            "computeLocation": emu.cfg.location,
            "provisioningState": "Succeeded",
            "description": doc.get("description"),
            "createdOn": doc["created"],
            "modifiedOn": doc["created"],
            "resourceId": None,
            "provisioningErrors": None,
            "isAttachedCompute": False,
            "disableLocalAuth": True,
            "properties": {
                "osType": "Linux",
                "vmSize": doc["size"],
                "vmPriority": doc.get("tier", "Dedicated"),
                "virtualMachineImage": None,
                "isolatedNetwork": False,
                "scaleSettings": {
                    "maxNodeCount": doc.get("max_nodes", 2),
                    "minNodeCount": doc.get("min_nodes", 0),
                    "nodeIdleTimeBeforeScaleDown": "PT2M",
                },
                "userAccountCredentials": None,
                "subnet": None,
                "remoteLoginPortPublicAccess": "Enabled",
                "allocationState": "Steady",
                "allocationStateTransitionTime": doc["created"],
                "errors": None,
                "currentNodeCount": 0,
                "targetNodeCount": 0,
                "nodeStateCounts": {
                    "idleNodeCount": 0,
                    "runningNodeCount": 0,
                    "preparingNodeCount": 0,
                    "unusableNodeCount": 0,
                    "leavingNodeCount": 0,
                    "preemptedNodeCount": 0,
                },
                "enableNodePublicIp": True,
                "propertyBag": None,
            },
        },
    }


async def get_compute(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name = request.path_params["name"]
    doc = emu.store["computes"].get(name)
    if doc is None:
        return arm.error(
            404, "ResourceNotFound", f"Compute '{name}' was not found in workspace.", inner="NotFoundError"
        )
    return arm.json_response(compute_body(emu, doc))


async def list_computes(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    return arm.page([compute_body(emu, d) for d in emu.store["computes"].values()])


async def put_compute(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    body, err = await arm.read_json(request)
    if err is not None:
        return err
    assert body is not None
    props = body.get("properties") or {}
    if props.get("computeType") != "AmlCompute":
        return arm.bad_request("Only AmlCompute clusters are supported by the emulator.")
    inner = props.get("properties") or {}
    size = inner.get("vmSize")
    if not size or size.lower() not in {s[0].lower() for s in VM_SIZES}:
        return arm.bad_request(f"VM size {size!r} is not available in region {emu.cfg.location}.")
    name = request.path_params["name"]
    scale = inner.get("scaleSettings") or {}
    doc = {
        "name": name,
        "size": size,
        "tier": inner.get("vmPriority", "Dedicated"),
        "max_nodes": scale.get("maxNodeCount", 1),
        "min_nodes": scale.get("minNodeCount", 0),
        "created": arm.iso(),
        "description": props.get("description"),
        "tags": body.get("tags") or {},
    }
    emu.store["computes"].put(name, doc)
    op = emu.operations.start("compute", name)
    emu.operations.finish(op["id"], "Succeeded")
    return arm.json_response(
        compute_body(emu, doc), 201, emu.operations.headers(op["id"], arm.api_version(request))
    )


async def list_vm_sizes(request: Request) -> Response:
    return arm.json_response(
        {
            "value": [
                {
                    "name": name,
                    "family": family,
                    "vCPUs": cpus,
                    "gpus": gpus,
                    "osVhdSizeMB": 1047552,
                    "maxResourceVolumeMB": 65536 * max(1, cpus // 8),
                    "memoryGB": mem,
                    "lowPriorityCapable": True,
                    "premiumIO": True,
                    "supportedComputeTypes": ["ComputeInstance", "AmlCompute"],
                    "estimatedVMPrices": None,
                }
                for name, family, cpus, gpus, mem in VM_SIZES
            ]
        }
    )


def _our_region(request: Request) -> bool:
    return str(request.path_params.get("loc", "")).lower() == emu_of(request).cfg.location.lower()


async def list_usages(request: Request) -> Response:
    # Another region holds none of the emulator's cores and no quota of it.
    return arm.page(quota.usages(emu_of(request)) if _our_region(request) else [])


async def list_quotas(request: Request) -> Response:
    return arm.page(quota.quotas(emu_of(request)) if _our_region(request) else [])


# -------------------------------------------------------------------------------------------- datastores


def datastore_body(emu: Emulator, doc: dict[str, Any]) -> dict[str, Any]:
    name = doc["name"]
    return {
        "id": f"{emu.ws_id}/datastores/{name}",
        "name": name,
        "type": f"{arm.PROVIDER}/workspaces/datastores",
        "systemData": arm.system_data(doc["created"], doc.get("modified")),
        "properties": {
            "datastoreType": "AzureBlob",
            "accountName": doc["account_name"],
            "containerName": doc["container"],
            "endpoint": doc.get("endpoint", "core.windows.net"),
            "protocol": doc.get("protocol", "https"),
            "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
            "credentials": {"credentialsType": doc.get("credentials_type", "AccountKey")},
            "description": doc.get("description"),
            "properties": {},
            "tags": doc.get("tags") or {},
            "isDefault": bool(doc.get("is_default")),
            "subscriptionId": emu.cfg.subscription_id,
            "resourceGroup": emu.cfg.resource_group,
        },
    }


async def get_datastore(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name = request.path_params["name"]
    doc = emu.store["datastores"].get(name)
    if doc is None:
        return arm.not_found("Datastore", name)
    return arm.json_response(datastore_body(emu, doc))


async def list_datastores(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    docs = emu.store["datastores"].values()
    is_default = request.query_params.get("isDefault")
    if is_default is not None:
        want = is_default.lower() == "true"
        docs = [d for d in docs if bool(d.get("is_default")) == want]
    names = request.query_params.getlist("names")
    if names:
        docs = [d for d in docs if d["name"] in names]
    return arm.page([datastore_body(emu, d) for d in sorted(docs, key=lambda d: d["name"])])


async def put_datastore(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    body, err = await arm.read_json(request)
    if err is not None:
        return err
    assert body is not None
    props = body.get("properties") or {}
    name = request.path_params["name"]
    if props.get("datastoreType") != "AzureBlob":
        return arm.bad_request(
            f"Datastore type {props.get('datastoreType')!r} is not supported by the emulator (AzureBlob only)."
        )
    container = props.get("containerName")
    account = props.get("accountName")
    if not container or not account:
        return arm.bad_request("accountName and containerName are required for an AzureBlob datastore.")
    if account != emu.blobs.account_name:
        return arm.bad_request(
            f"Storage account {account!r} is not reachable from this workspace; the emulator's account is "
            f"{emu.blobs.account_name!r}."
        )
    existing = emu.store["datastores"].get(name)
    now = arm.iso()
    doc = {
        "name": name,
        "account_name": account,
        "container": container,
        "endpoint": props.get("endpoint") or "core.windows.net",
        "protocol": props.get("protocol") or "https",
        "credentials_type": (props.get("credentials") or {}).get("credentialsType", "AccountKey"),
        "description": props.get("description"),
        "tags": props.get("tags") or {},
        "is_default": bool(existing and existing.get("is_default")),
        "created": existing["created"] if existing else now,
        "modified": now,
    }
    emu.store["datastores"].put(name, doc)
    return arm.json_response(datastore_body(emu, doc), 200 if existing else 201)


async def delete_datastore(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name = request.path_params["name"]
    doc = emu.store["datastores"].get(name)
    if doc is None:
        return Response(status_code=204)
    if doc.get("is_default"):
        return arm.bad_request("The default datastore cannot be deleted.")
    emu.store["datastores"].delete(name)
    return Response(status_code=200)


async def list_datastore_secrets(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name = request.path_params["name"]
    if emu.store["datastores"].get(name) is None:
        return arm.not_found("Datastore", name)
    # A SAS (not the account key): it signs no host or path, so it stays valid through the
    # emulator's HTTPS storage proxy that the SDK's uploads go through.
    return arm.json_response({"secretsType": "Sas", "sasToken": emu.blobs.account_sas()})


def routes(ws: str) -> list[Route]:
    return [
        Route(ws, get_workspace, methods=["GET"]),
        Route(ws + "/computes", list_computes, methods=["GET"]),
        Route(ws + "/computes/{name}", get_compute, methods=["GET"]),
        Route(ws + "/computes/{name}", put_compute, methods=["PUT"]),
        Route(ws + "/datastores", list_datastores, methods=["GET"]),
        Route(ws + "/datastores/{name}", get_datastore, methods=["GET"]),
        Route(ws + "/datastores/{name}", put_datastore, methods=["PUT"]),
        Route(ws + "/datastores/{name}", delete_datastore, methods=["DELETE"]),
        Route(ws + "/datastores/{name}/listSecrets", list_datastore_secrets, methods=["POST"]),
    ]
