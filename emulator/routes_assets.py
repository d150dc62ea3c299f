"""Workspace model assets: versions and containers, registration from job outputs or datastore paths."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import arm
from emulator.routes_workspace import check_workspace, emu_of

if TYPE_CHECKING:
    from emulator.core import Emulator

MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
JOB_OUTPUT = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<output>[^/]+)(?P<rest>/.*)?$")
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,254}$")


def version_body(emu: Emulator, doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{emu.ws_id}/models/{doc['name']}/versions/{doc['version']}",
        "name": doc["version"],
        "type": f"{arm.PROVIDER}/workspaces/models/versions",
        "systemData": arm.system_data(doc["created"], doc.get("modified")),
        "properties": doc["properties"],
    }


def container_body(emu: Emulator, name: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    latest = max(versions, key=lambda d: d["created"])
    numeric = [int(d["version"]) for d in versions if d["version"].isdigit()]
    props = latest["properties"]
    return {
        "id": f"{emu.ws_id}/models/{name}",
        "name": name,
        "type": f"{arm.PROVIDER}/workspaces/models",
        "systemData": arm.system_data(min(d["created"] for d in versions), latest.get("modified")),
        "properties": {
            "description": props.get("description"),
            "tags": props.get("tags") or {},
            "properties": {},
            "isArchived": all(d["properties"].get("isArchived") for d in versions),
            "latestVersion": latest["version"],
            "nextVersion": str(max(numeric) + 1) if numeric else "1",
            "provisioningState": "Succeeded",
        },
    }


def _versions(emu: Emulator, name: str) -> list[dict[str, Any]]:
    return [d for d in emu.store["models"].values() if d["name"] == name]


def _view(docs: list[dict[str, Any]], view: str | None) -> list[dict[str, Any]]:
    view = (view or "ActiveOnly").lower()
    if view == "all":
        return docs
    archived = view == "archivedonly"
    return [d for d in docs if bool(d["properties"].get("isArchived")) == archived]


async def list_versions(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    docs = _view(_versions(emu, request.path_params["name"]), request.query_params.get("listViewType"))
    order = (request.query_params.get("$orderBy") or "createdtime desc").lower()
    docs.sort(key=lambda d: d["created"], reverse=not order.endswith("asc"))
    if (v := request.query_params.get("version")) is not None:
        docs = [d for d in docs if d["version"] == v]
    tags = request.query_params.get("tags")
    if tags:
        wanted: dict[str, str | None] = {}
        for item in tags.split(","):
            key, sep, value = item.partition("=")
            wanted[key] = value if sep else None

        def has_tags(doc: dict[str, Any]) -> bool:
            have = doc["properties"].get("tags") or {}
            return all(k in have and (v is None or have[k] == v) for k, v in wanted.items())

        docs = [d for d in docs if has_tags(d)]
    top = request.query_params.get("$top")
    if top and top.isdigit():
        docs = docs[: int(top)]
    return arm.page([version_body(emu, d) for d in docs])


async def get_version(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name, version = request.path_params["name"], request.path_params["version"]
    doc = emu.store["models"].get(f"{name}/{version}")
    if doc is None:
        return arm.not_found("Model version", f"{name}:{version}")
    return arm.json_response(version_body(emu, doc))


async def get_container(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name = request.path_params["name"]
    versions = _versions(emu, name)
    if not versions:
        return arm.not_found("Model", name)
    return arm.json_response(container_body(emu, name, versions))


async def list_containers(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    names = sorted({d["name"] for d in emu.store["models"].values()})
    return arm.page([container_body(emu, n, _versions(emu, n)) for n in names])


def _resolve_model_uri(emu: Emulator, uri: str) -> tuple[str, str | None, str | None]:
    """(stored modelUri, local folder or None, job name or None); ValueError → 400."""
    m = JOB_OUTPUT.match(uri)
    if m:
        job_name, output = m.group("job"), m.group("output")
        job = emu.store["jobs"].get(job_name)
        if job is None or job.get("kind") != "pipeline":
            raise LookupError(f"Job '{job_name}' was not found in workspace {emu.cfg.workspace_name}.")
        plan = job["plan"]
        if output not in {plan.get("output_binding"), "mlflow_model_folder"}:
            raise ValueError(f"Job '{job_name}' has no output named '{output}'.")
        if job["status"] != "Completed":
            raise ValueError(
                f"Output '{output}' of job '{job_name}' is not available: the job is {job['status']}."
            )
        local = emu.jobs.output_dir(job_name)
        datastore_uri = plan["output_uri"]
        _container, path = emu.resolve_datastore_uri(datastore_uri)
        datastore = datastore_uri.split("datastores/", 1)[1].split("/", 1)[0]
        full = (
            f"azureml://subscriptions/{emu.cfg.subscription_id}/resourcegroups/{emu.cfg.resource_group}"
            f"/workspaces/{emu.cfg.workspace_name}/datastores/{datastore}/paths/{path}"
        )
        return full, str(local), job_name
    if "datastores/" in uri and "/paths/" in uri:
        container, path = emu.resolve_datastore_uri(uri)
        if not emu.blobs.exists(container, path) and not _has_prefix(emu, container, path):
            raise ValueError(f"Nothing was found at {uri}.")
        return uri, None, None
    raise ValueError(
        f"Model path {uri!r} is not supported by the emulator: use azureml://jobs/<job>/outputs/<output> or "
        "azureml://datastores/<datastore>/paths/<path>."
    )


def _has_prefix(emu: Emulator, container: str, path: str) -> bool:
    cc = emu.blobs.client.get_container_client(container)
    prefix = path.rstrip("/") + "/"
    return any(True for _ in cc.list_blobs(name_starts_with=prefix, results_per_page=1))


async def put_version(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name, version = request.path_params["name"], request.path_params["version"]
    if not NAME.match(name):
        return arm.bad_request(f"Model name {name!r} is invalid.")
    body, err = await arm.read_json(request)
    if err is not None:
        return err
    assert body is not None
    props = body.get("properties")
    if not isinstance(props, dict):
        return arm.bad_request("The model version body needs a 'properties' object.")
    key = f"{name}/{version}"
    existing = emu.store["models"].get(key)
    uri = props.get("modelUri")
    if existing is not None:
        if uri and uri not in (existing["properties"]["modelUri"], existing.get("submitted_uri")):
            return arm.error(
                409,
                "UserError",
                "The model version already exists with a different path; an asset's path cannot change.",
                inner="Conflict",
            )
        updated = {**existing["properties"]}
        for field in ("description", "tags", "properties", "isArchived", "stage"):
            if field in props:
                updated[field] = props[field]
        doc = {**existing, "properties": updated, "modified": arm.iso()}
        emu.store["models"].put(key, doc)
        return arm.json_response(version_body(emu, doc), 200)
    if not isinstance(uri, str) or not uri:
        return arm.bad_request("modelUri is required.", target="properties.modelUri")
    try:
        stored_uri, local, job_name = _resolve_model_uri(emu, uri)
    except LookupError as exc:
        return arm.error(404, "UserError", str(exc), inner="NotFoundError")
    except ValueError as exc:
        return arm.bad_request(str(exc), target="properties.modelUri")
    now = arm.iso()
    model_type = props.get("modelType") or "custom_model"
    flavors = props.get("flavors")
    if model_type == "mlflow_model" and not flavors:
        flavors = {"python_function": {"data": {"loader_module": "mlflow.transformers"}}}
    doc = {
        "name": name,
        "version": version,
        "created": now,
        "modified": now,
        "local_path": local,
        "submitted_uri": uri,
        "properties": {
            "description": props.get("description"),
            "tags": props.get("tags") or {},
            "properties": props.get("properties") or {},
            "isArchived": bool(props.get("isArchived", False)),
            "isAnonymous": bool(props.get("isAnonymous", False)),
            "modelType": model_type,
            "modelUri": stored_uri,
            "flavors": flavors,
            "jobName": job_name or props.get("jobName"),
            "stage": props.get("stage") or "Development",
            "provisioningState": "Succeeded",
            "intellectualProperty": None,
        },
    }
    emu.store["models"].put(key, doc)
    events = emu.events
    events.publish(
        events.system_event(
            emu.ws_id,
            MODEL_REGISTERED,
            f"models/{name}:{version}",
            {
                "modelName": name,
                "modelVersion": version,
                "modelTags": doc["properties"]["tags"],
                "modelProperties": doc["properties"]["properties"],
            },
        )
    )
    return arm.json_response(version_body(emu, doc), 201)


def routes(ws: str) -> list[Route]:
    return [
        Route(ws + "/models", list_containers, methods=["GET"]),
        Route(ws + "/models/{name}", get_container, methods=["GET"]),
        Route(ws + "/models/{name}/versions", list_versions, methods=["GET"]),
        Route(ws + "/models/{name}/versions/{version}", get_version, methods=["GET"]),
        Route(ws + "/models/{name}/versions/{version}", put_version, methods=["PUT"]),
    ]
