"""Online endpoint and deployment routes (ARM), as long-running operations."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import arm
from emulator.deployments import CREATING, DELETING, SUCCEEDED, UPDATING, new_key
from emulator.routes_workspace import check_workspace, emu_of

if TYPE_CHECKING:
    from emulator.core import Emulator

NAME = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")


def _valid_name(name: str) -> bool:
    return 3 <= len(name) <= 32 and bool(NAME.match(name))


def endpoint_body(emu: Emulator, doc: dict[str, Any]) -> dict[str, Any]:
    name = doc["name"]
    props = dict(doc["properties"])
    props["scoringUri"] = f"{emu.scoring_base}/endpoints/{name}/score"
    props["swaggerUri"] = f"{emu.scoring_base}/endpoints/{name}/swagger.json"
    props.setdefault("traffic", {})
    props.setdefault("mirrorTraffic", {})
    return {
        "id": f"{emu.ws_id}/onlineEndpoints/{name}",
        "name": name,
        "type": f"{arm.PROVIDER}/workspaces/onlineEndpoints",
        "location": emu.cfg.location,
        "tags": doc.get("tags") or {},
        "kind": "Managed",
        "identity": {
            "type": "SystemAssigned",
            "principalId": doc["principal_id"],
            "tenantId": emu.identity["tenant_id"],
        },
        "systemData": arm.system_data(doc["created"], doc.get("modified")),
        "properties": props,
    }


def deployment_body(emu: Emulator, doc: dict[str, Any]) -> dict[str, Any]:
    props = dict(doc["properties"])
    return {
        "id": f"{emu.ws_id}/onlineEndpoints/{doc['endpoint']}/deployments/{doc['name']}",
        "name": doc["name"],
        "type": f"{arm.PROVIDER}/workspaces/onlineEndpoints/deployments",
        "location": emu.cfg.location,
        "tags": doc.get("tags") or {},
        "kind": "Managed",
        "sku": doc.get("sku") or {"name": "Default", "tier": "Standard", "capacity": 1},
        "systemData": arm.system_data(doc["created"], doc.get("modified")),
        "properties": props,
    }


def _check_traffic(emu: Emulator, endpoint: str, traffic: Any) -> str | None:
    if traffic in (None, {}):
        return None
    if not isinstance(traffic, dict):
        return "traffic must be an object of deployment name → percentage."
    total = 0
    for dep, weight in traffic.items():
        if not isinstance(weight, int) or not 0 <= weight <= 100:
            return f"Traffic for deployment '{dep}' must be an integer between 0 and 100."
        doc = emu.deployments.deps.get(f"{endpoint}/{dep}")
        if doc is None:
            return f"Deployment '{dep}' does not exist in endpoint '{endpoint}'; traffic cannot be routed to it."
        if weight and doc["properties"].get("provisioningState") != SUCCEEDED:
            return f"Deployment '{dep}' is {doc['properties'].get('provisioningState')}; it cannot take traffic."
        total += weight
    if total not in (0, 100):
        return f"Traffic values must sum to 100 (or 0); they sum to {total}."
    return None


def _check_mirror(emu: Emulator, endpoint: str, mirror: Any, live: dict[str, Any]) -> str | None:
    """Azure's rules: at most 50% in all, to existing deployments that take no live traffic."""
    if mirror in (None, {}):
        return None
    if not isinstance(mirror, dict):
        return "mirrorTraffic must be an object of deployment name → percentage."
    for dep, share in mirror.items():
        if not isinstance(share, int) or not 0 <= share <= 50:
            return f"Mirror traffic for deployment '{dep}' must be an integer between 0 and 50."
        if f"{endpoint}/{dep}" not in emu.deployments.deps:
            return f"Deployment '{dep}' does not exist in endpoint '{endpoint}'; traffic cannot be mirrored to it."
        if share and int(live.get(dep, 0) or 0) > 0:
            return f"Deployment '{dep}' takes live traffic; a deployment gets live or mirrored traffic, not both."
    if sum(mirror.values()) > 50:
        return f"Mirror traffic values must sum to at most 50; they sum to {sum(mirror.values())}."
    return None


# --------------------------------------------------------------------------------------------- endpoints


async def put_endpoint(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name = request.path_params["name"]
    if not _valid_name(name):
        return arm.bad_request(
            f"Endpoint name {name!r} is invalid: 3-32 characters, a letter first, then letters, digits and '-', "
            "not ending with '-'."
        )
    body, err = await arm.read_json(request)
    if err is not None:
        return err
    assert body is not None
    props = body.get("properties")
    if not isinstance(props, dict):
        return arm.bad_request("The endpoint body needs a 'properties' object.")
    auth = str(props.get("authMode") or "Key")
    if auth.lower() not in ("key", "aadtoken", "amltoken"):
        return arm.bad_request(f"authMode {auth!r} is not supported.")
    existing = emu.deployments.endpoints.get(name)
    if existing and existing["properties"].get("provisioningState") == DELETING:
        return arm.conflict(f"Endpoint '{name}' is being deleted.")
    if (problem := _check_traffic(emu, name, props.get("traffic"))) is not None:
        return arm.bad_request(problem, target="properties.traffic")
    live = props.get("traffic") if "traffic" in props else (existing or {}).get("properties", {}).get("traffic")
    if (problem := _check_mirror(emu, name, props.get("mirrorTraffic"), live or {})) is not None:
        return arm.bad_request(problem, target="properties.mirrorTraffic")
    now = arm.iso()
    op = emu.operations.start("endpoint", name)
    new_props = {
        "authMode": "Key" if auth.lower() == "key" else auth,
        "description": props.get("description"),
        "properties": {
            **(props.get("properties") or {}),
            "azureml.onlineendpointid": f"{emu.ws_id}/onlineendpoints/{name}".lower(),
            "AzureAsyncOperationUri": emu.operations.headers(op["id"], arm.api_version(request))[
                "Azure-AsyncOperation"
            ],
        },
        # PUT replaces the resource, but an update that names no traffic keeps the current split.
        "traffic": (props.get("traffic") if "traffic" in props else (existing or {}).get("properties", {}).get(
            "traffic"
        )) or {},
        "mirrorTraffic": props.get("mirrorTraffic") or {},
        "publicNetworkAccess": props.get("publicNetworkAccess") or "Enabled",
        "provisioningState": UPDATING if existing else CREATING,
        "compute": None,
    }
    doc = {
        "name": name,
        "created": existing["created"] if existing else now,
        "modified": now,
        "tags": body.get("tags") or {},
        "principal_id": existing["principal_id"] if existing else str(uuid.uuid4()),
        "keys": existing["keys"] if existing else {"primaryKey": new_key(), "secondaryKey": new_key()},
        "properties": new_props,
        "op_id": op["id"],
    }
    emu.deployments.endpoints.put(name, doc)
    emu.deployments.rebuild_routes()
    emu.deployments.settle_endpoint(name, op["id"])
    headers = emu.operations.headers(op["id"], arm.api_version(request))
    return arm.json_response(endpoint_body(emu, doc), 200 if existing else 201, headers)


async def get_endpoint(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name = request.path_params["name"]
    doc = emu.deployments.endpoints.get(name)
    if doc is None:
        return arm.error(404, "UserError", f"Endpoint {name} does not exist.", inner="NotFoundError")
    return arm.json_response(endpoint_body(emu, doc))


async def list_endpoints(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    docs = sorted(emu.deployments.endpoints.values(), key=lambda d: d["created"])
    return arm.page([endpoint_body(emu, d) for d in docs])


async def delete_endpoint(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name = request.path_params["name"]
    doc = emu.deployments.endpoints.get(name)
    if doc is None:
        return Response(status_code=204)
    op = emu.operations.start("endpoint-delete", name)
    emu.deployments.delete_endpoint(name, op["id"])
    return Response(status_code=202, headers=emu.operations.headers(op["id"], arm.api_version(request)))


def _endpoint_or_404(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
    emu = emu_of(request)
    name = request.path_params["name"]
    doc = emu.deployments.endpoints.get(name)
    if doc is None:
        return None, arm.error(404, "UserError", f"Endpoint {name} does not exist.", inner="NotFoundError")
    return doc, None


async def list_keys(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    doc, err = _endpoint_or_404(request)
    if err is not None:
        return err
    assert doc is not None
    if doc["properties"].get("authMode", "Key").lower() != "key":
        return arm.bad_request("The endpoint does not use key authentication.")
    return arm.json_response(doc["keys"])


async def regenerate_keys(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    doc, err = _endpoint_or_404(request)
    if err is not None:
        return err
    assert doc is not None
    body, err = await arm.read_json(request)
    if err is not None:
        return err
    assert body is not None
    key_type = str(body.get("keyType") or "").lower()
    if key_type not in ("primary", "secondary"):
        return arm.bad_request("keyType must be 'Primary' or 'Secondary'.", target="keyType")
    value = body.get("keyValue") or new_key()
    keys = dict(doc["keys"])
    keys["primaryKey" if key_type == "primary" else "secondaryKey"] = value
    emu.deployments.endpoints.put(doc["name"], {**doc, "keys": keys, "modified": arm.iso()})
    emu.deployments.rebuild_routes()
    op = emu.operations.start("regenerate-keys", doc["name"])
    emu.operations.finish(op["id"], "Succeeded")
    return Response(status_code=202, headers=emu.operations.headers(op["id"], arm.api_version(request)))


async def get_token(request: Request) -> Response:
    return arm.bad_request("The emulator's endpoints use key authentication (authMode Key) only.")


# ------------------------------------------------------------------------------------------- deployments


async def put_deployment(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    endpoint, name = request.path_params["name"], request.path_params["dep"]
    ep, err = _endpoint_or_404(request)
    if err is not None:
        return err
    assert ep is not None
    if ep["properties"].get("provisioningState") == DELETING:
        return arm.conflict(f"Endpoint '{endpoint}' is being deleted.")
    if not _valid_name(name):
        return arm.bad_request(f"Deployment name {name!r} is invalid: 3-32 characters, a letter first.")
    body, err = await arm.read_json(request)
    if err is not None:
        return err
    assert body is not None
    props = body.get("properties")
    if not isinstance(props, dict):
        return arm.bad_request("The deployment body needs a 'properties' object.")
    model = props.get("model")
    if not isinstance(model, str) or not model:
        return arm.bad_request("properties.model is required (a registered model's id).", target="properties.model")
    try:  # a registry's model deploys as it is (Azure ML deploys registry models to workspace endpoints)
        from_registry = emu.registry_model(model) is not None
    except LookupError as exc:
        return arm.error(404, "UserError", str(exc), inner="NotFoundError")
    ref = emu.workspace_model_ref(model)
    if ref is None and not from_registry:
        return arm.bad_request(
            f"Model {model!r} is not supported: deploy a model registered in this workspace or a registry's.",
            target="properties.model",
        )
    if ref is not None and f"{ref[0]}/{ref[1]}" not in emu.store["models"]:
        return arm.error(404, "UserError", f"Model {ref[0]}:{ref[1]} was not found.", inner="NotFoundError")
    if str(props.get("endpointComputeType") or "Managed") not in ("Managed", "Kubernetes"):
        return arm.bad_request("endpointComputeType must be Managed.")
    key = emu.deployments.key(endpoint, name)
    existing = emu.deployments.deps.get(key)
    if existing and existing["properties"].get("provisioningState") in (CREATING, UPDATING, DELETING):
        return arm.conflict(
            f"Deployment '{name}' is {existing['properties']['provisioningState']}; wait for it to finish."
        )
    now = arm.iso()
    op = emu.operations.start("deployment", key)
    stored = {k: v for k, v in props.items() if k != "provisioningState"}
    stored["provisioningState"] = UPDATING if existing else CREATING
    stored.setdefault("endpointComputeType", "Managed")
    stored.setdefault("requestSettings", {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1})
    stored.setdefault("scaleSettings", {"scaleType": "Default"})  # Azure fills it in; the SDK reads it
    doc = {
        "name": name,
        "endpoint": endpoint,
        "created": existing["created"] if existing else now,
        "modified": now,
        "tags": body.get("tags") or {},
        "sku": body.get("sku"),
        "properties": stored,
        "op_id": op["id"],
        "error": None,
    }
    emu.deployments.deps.put(key, doc)
    emu.deployments.begin(key, op["id"])
    headers = emu.operations.headers(op["id"], arm.api_version(request))
    return arm.json_response(deployment_body(emu, doc), 200 if existing else 201, headers)


def _deployment_or_404(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
    emu = emu_of(request)
    endpoint, name = request.path_params["name"], request.path_params["dep"]
    doc = emu.deployments.deps.get(emu.deployments.key(endpoint, name))
    if doc is None:
        return None, arm.error(
            404, "UserError", f"Deployment {name} does not exist in endpoint {endpoint}.", inner="NotFoundError"
        )
    return doc, None


async def get_deployment(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    doc, err = _deployment_or_404(request)
    if err is not None:
        return err
    assert doc is not None
    return arm.json_response(deployment_body(emu_of(request), doc))


async def list_deployments(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    _, err = _endpoint_or_404(request)
    if err is not None:
        return err
    endpoint = request.path_params["name"]
    docs = sorted((d for d in emu.deployments.deps.values() if d["endpoint"] == endpoint), key=lambda d: d["created"])
    return arm.page([deployment_body(emu, d) for d in docs])


async def delete_deployment(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    endpoint, name = request.path_params["name"], request.path_params["dep"]
    key = emu.deployments.key(endpoint, name)
    doc = emu.deployments.deps.get(key)
    if doc is None:
        return Response(status_code=204)
    ep = emu.deployments.endpoints.get(endpoint) or {}
    weight = int(((ep.get("properties") or {}).get("traffic") or {}).get(name, 0))
    if weight > 0:
        return arm.bad_request(
            f"Deployment '{name}' receives {weight}% of the endpoint's traffic; set its traffic to 0 before "
            "deleting it."
        )
    op = emu.operations.start("deployment-delete", key)
    emu.deployments.delete_deployment(key, op["id"])
    return Response(status_code=202, headers=emu.operations.headers(op["id"], arm.api_version(request)))


async def get_logs(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    doc, err = _deployment_or_404(request)
    if err is not None:
        return err
    assert doc is not None
    body, err = await arm.read_json(request)
    tail = int((body or {}).get("tail") or 100)
    content = emu.deployments.tail_log(doc["endpoint"], doc["name"], tail)
    if doc.get("error"):
        content += f"\n{doc['error']['message']}\n"
    return arm.json_response({"content": content})


def routes(ws: str) -> list[Route]:
    ep = ws + "/onlineEndpoints"
    return [
        Route(ep, list_endpoints, methods=["GET"]),
        Route(ep + "/{name}", get_endpoint, methods=["GET"]),
        Route(ep + "/{name}", put_endpoint, methods=["PUT"]),
        Route(ep + "/{name}", delete_endpoint, methods=["DELETE"]),
        Route(ep + "/{name}/listKeys", list_keys, methods=["POST"]),
        Route(ep + "/{name}/regenerateKeys", regenerate_keys, methods=["POST"]),
        Route(ep + "/{name}/token", get_token, methods=["POST"]),
        Route(ep + "/{name}/deployments", list_deployments, methods=["GET"]),
        Route(ep + "/{name}/deployments/{dep}", get_deployment, methods=["GET"]),
        Route(ep + "/{name}/deployments/{dep}", put_deployment, methods=["PUT"]),
        Route(ep + "/{name}/deployments/{dep}", delete_deployment, methods=["DELETE"]),
        Route(ep + "/{name}/deployments/{dep}/getLogs", get_logs, methods=["POST"]),
    ]

