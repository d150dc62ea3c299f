"""Job routes (ARM ``jobs``), the run-history routes ``jobs.stream`` polls, run logs and MLflow-ish metrics."""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from emulator import arm, pipeline_component
from emulator.jobs import TERMINAL
from emulator.routes_workspace import check_workspace, emu_of

if TYPE_CHECKING:
    from emulator.core import Emulator

JOB_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")
PARENT_INPUT = re.compile(r"^\$\{\{\s*parent\.inputs\.([A-Za-z0-9_]+)\s*\}\}$")
PARENT_OUTPUT = re.compile(r"^\$\{\{\s*parent\.outputs\.([A-Za-z0-9_]+)\s*\}\}$")
COMPONENT = re.compile(
    r"^azureml://registries/(?P<reg>[^/]+)/components/(?P<name>[^/]+)/(versions|labels)/(?P<ver>[^/]+)$"
)
FILE_INPUTS = {"train_file_path": "train", "validation_file_path": "validation", "test_file_path": "test"}


class PlanError(ValueError):
    pass


def _typed(name: str, value: Any) -> Any:
    type_ = pipeline_component.INPUTS[name][0]
    if value is None:
        return None
    try:
        if type_ == "integer":
            return int(str(value))
        if type_ == "number":
            return float(str(value))
    except ValueError:
        return value
    return str(value) if not isinstance(value, str) else value


def build_plan(emu: Emulator, name: str, props: dict[str, Any]) -> dict[str, Any]:
    """Check a submitted pipeline job and work out what to run; PlanError → 400."""
    if props.get("jobType") != "Pipeline":
        raise PlanError(
            f"jobType {props.get('jobType')!r} is not supported by the emulator: it runs Pipeline jobs built "
            f"on the registry component {pipeline_component.NAME}."
        )
    nodes = props.get("jobs") or {}
    if not isinstance(nodes, dict) or not nodes:
        raise PlanError("A pipeline job needs at least one node in 'jobs'.")
    matched: list[tuple[str, dict[str, Any]]] = []
    for node_name, node in nodes.items():
        if not isinstance(node, dict):
            raise PlanError(f"Pipeline node {node_name!r} must be an object.")
        component = str(node.get("componentId") or "")
        m = COMPONENT.match(component)
        if not m or m.group("name") != pipeline_component.NAME:
            raise PlanError(
                f"Pipeline node {node_name!r} uses component {component or '(none)'!r}; the emulator runs "
                f"only azureml://registries/{emu.cfg.registry_name}/components/{pipeline_component.NAME}."
            )
        if m.group("reg") != emu.cfg.registry_name:
            raise PlanError(f"Registry {m.group('reg')!r} not found.")
        if m.group(3) == "versions" and m.group("ver") != pipeline_component.VERSION:
            raise PlanError(
                f"Component {pipeline_component.NAME} version {m.group('ver')!r} was not found in registry "
                f"{emu.cfg.registry_name} (available: {pipeline_component.VERSION})."
            )
        matched.append((node_name, node))
    if len(matched) != 1:
        raise PlanError("The emulator runs pipelines with exactly one chat_completion_pipeline node.")
    node_name, node = matched[0]
    top_inputs = props.get("inputs") or {}

    def resolve(value: dict[str, Any], seen: int = 0) -> dict[str, Any]:
        raw = value.get("value")
        if isinstance(raw, str) and (m := PARENT_INPUT.match(raw)) and seen < 5:
            ref = top_inputs.get(m.group(1))
            if not isinstance(ref, dict):
                raise PlanError(f"Input binding {raw} refers to an undefined pipeline input.")
            return resolve(ref, seen + 1)
        return value

    literals: dict[str, Any] = {}
    uris: dict[str, tuple[str, str]] = {}
    unknown = [k for k in (node.get("inputs") or {}) if k not in pipeline_component.INPUTS]
    if unknown:
        raise PlanError(
            f"Unknown input(s) for component {pipeline_component.NAME}: {', '.join(sorted(unknown))}."
        )
    for key, raw in (node.get("inputs") or {}).items():
        if not isinstance(raw, dict):
            raise PlanError(f"Input {key!r} must be an object with job_input_type.")
        value = resolve(raw)
        kind = str(value.get("job_input_type") or value.get("jobInputType") or "literal").lower()
        if kind == "literal":
            literals[key] = value.get("value")
        else:
            uri = value.get("uri")
            if not isinstance(uri, str) or not uri:
                raise PlanError(f"Input {key!r} of type {kind} needs a 'uri'.")
            uris[key] = (kind, uri)
    problems = pipeline_component.validate_inputs(literals)
    if problems:
        raise PlanError("Invalid pipeline inputs: " + "; ".join(problems) + ".")
    for key, (kind, _uri) in uris.items():
        declared = pipeline_component.INPUTS[key][0]
        if declared in ("string", "integer", "number", "boolean"):
            raise PlanError(f"Input {key!r} is a {declared}: pass a literal value, not a {kind} asset.")
    files: dict[str, str] = {}
    for key, short in FILE_INPUTS.items():
        if key in uris:
            uri = uris[key][1]
            try:
                emu.check_readable_uri(uri)
            except (LookupError, ValueError) as exc:
                raise PlanError(f"Input {key!r}: {exc}") from None
            files[short] = uri
    for key in ("train_mltable_path", "validation_mltable_path", "test_mltable_path"):
        if key in uris:
            raise PlanError(f"Input {key!r}: the emulator reads uri_file (JSON Lines) inputs, not MLTable.")
    if "train" not in files:
        raise PlanError("train_file_path is required (a uri_file input).")
    if literals.get("huggingface_id"):
        raise PlanError("huggingface_id is not supported by the emulator (no network): use mlflow_model_path.")
    model = None
    for key in ("mlflow_model_path", "pytorch_model_path"):
        if key in uris:
            model = uris[key][1]
    if model is None:
        raise PlanError("mlflow_model_path (the base model's asset id) is required.")
    try:
        emu.check_model_uri(model)
    except LookupError as exc:
        raise PlanError(str(exc)) from None
    # The fine-tuned MLflow model: where the node's mlflow_model_folder output goes.
    binding = None
    out = (node.get("outputs") or {}).get("mlflow_model_folder")
    if isinstance(out, dict) and isinstance(out.get("value"), str):
        m = PARENT_OUTPUT.match(out["value"])
        if m:
            binding = m.group(1)
    top_outputs = props.get("outputs") or {}
    output_uri = None
    if binding and isinstance(top_outputs.get(binding), dict):
        output_uri = top_outputs[binding].get("uri")
    if not output_uri:
        output_uri = f"azureml://datastores/workspaceblobstore/paths/azureml/{name}/{binding or 'mlflow_model_folder'}/"
    try:
        emu.resolve_datastore_uri(output_uri)
    except (LookupError, ValueError) as exc:
        raise PlanError(f"Output {binding or 'mlflow_model_folder'}: {exc}") from None
    params = {
        k: _typed(k, v[1]) for k, v in pipeline_component.INPUTS.items() if v[1] is not None
    }
    params.update({k: _typed(k, v) for k, v in literals.items() if v is not None})
    return {
        "node": node_name,
        "literals": literals,
        "files": files,
        "model": model,
        "output_binding": binding,
        "output_uri": output_uri,
        "params": params,
    }


def _services(emu: Emulator, name: str) -> dict[str, Any]:
    return {
        "Tracking": {
            "jobServiceType": "Tracking",
            "endpoint": f"azureml://{emu.cfg.location}.api.azureml.ms/mlflow/v1.0{emu.ws_id}?",
            "status": None,
            "errorMessage": None,
            "properties": None,
            "port": None,
            "nodes": None,
        },
        "Studio": {
            "jobServiceType": "Studio",
            "endpoint": f"https://ml.azure.com/runs/{name}?wsid={emu.ws_id}",  # the SDK appends &tid= itself
            "status": None,
            "errorMessage": None,
            "properties": None,
            "port": None,
            "nodes": None,
        },
    }


def job_body(emu: Emulator, doc: dict[str, Any]) -> dict[str, Any]:
    name = doc["name"]
    if doc.get("kind") == "step":
        return step_body(emu, doc)
    props = copy.deepcopy(doc["properties"])
    plan = doc["plan"]
    props["status"] = doc["status"]
    props["experimentName"] = doc["experiment"]
    props["services"] = _services(emu, name)
    props.setdefault("displayName", name)
    props.setdefault("inputs", {})
    props.setdefault("tags", {})
    props["isArchived"] = False
    props.setdefault("computeId", None)
    props.setdefault("componentId", None)
    props.setdefault("sourceJobId", None)
    props.setdefault("notificationSetting", None)
    user_props = {k: str(v) for k, v in (props.get("properties") or {}).items()}
    metrics = doc.get("metrics") or {}
    system = {
        "azureml.runsource": "azureml.PipelineRun",
        "runSource": "MFE",
        "runType": "HTTP",
        "azureml.parameters": "{}",
        "azureml.continue_on_step_failure": str(
            bool((props.get("settings") or {}).get("continue_on_step_failure", False))
        ),
        "azureml.continue_on_failed_optional_input": "True",
        "azureml.enforceRerun": "True",
        "azureml.defaultDataStoreName": "workspaceblobstore",
        "azureml.pipelineComponent": "pipelinerun",
        "azureml.pipelines.stages": '{{"Initialization":null,"Execution":{{"Status":"{}"}}}}'.format(doc["status"]),
    }
    for key in ("train_loss", "eval_loss", "base_eval_loss"):
        if key in metrics:
            system[f"azureml.metrics.{key}"] = str(metrics[key])
    props["properties"] = {**system, **user_props}
    outputs = props.get("outputs") or {}
    binding = plan.get("output_binding")
    for out_name, out in outputs.items():
        if isinstance(out, dict):
            out.setdefault("mode", "ReadWriteMount")
            if out_name == binding:
                out["uri"] = plan["output_uri"]
    props["outputs"] = outputs
    if doc.get("error") and doc["status"] in TERMINAL:
        props["properties"]["azureml.error"] = doc["error"].get("message", "")
    return {
        "id": f"{emu.ws_id}/jobs/{name}",
        "name": name,
        "type": f"{arm.PROVIDER}/workspaces/jobs",
        "systemData": arm.system_data(doc["created"], doc.get("modified")),
        "properties": props,
    }


def step_body(emu: Emulator, doc: dict[str, Any]) -> dict[str, Any]:
    parent = emu.store["jobs"].get(doc["parent"]) or {}
    compute = (parent.get("plan") or {}).get("literals", {}).get("compute_finetune") or "serverless"
    return {
        "id": f"{emu.ws_id}/jobs/{doc['name']}",
        "name": doc["name"],
        "type": f"{arm.PROVIDER}/workspaces/jobs",
        "systemData": arm.system_data(doc["created"], doc.get("modified")),
        "properties": {
            "jobType": "Command",
            "displayName": doc["node"],
            "description": None,
            "tags": {"azureml.nodeid": doc["node"]},
            "properties": {
                "azureml.nodeid": doc["node"],
                "azureml.pipelinerunid": doc["parent"],
                "azureml.pipeline": doc["parent"],
                "azureml.runsource": "azureml.StepRun",
            },
            "experimentName": doc["experiment"],
            "status": doc["status"],
            "command": f"emulator step {doc['step']}",
            "environmentId": f"azureml://registries/{emu.cfg.registry_name}/environments/acft-hf-nlp-gpu/versions/1",
            "computeId": f"{emu.ws_id}/computes/{compute}" if compute != "serverless" else None,
            "inputs": {},
            "outputs": {},
            "services": _services(emu, doc["name"]),
            "isArchived": False,
        },
    }


async def put_job(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name = request.path_params["name"]
    if not JOB_NAME.match(name):
        return arm.bad_request(
            f"Job name {name!r} is invalid: use letters, digits, '-' and '_' (at most 255, starting with a "
            "letter or digit)."
        )
    body, err = await arm.read_json(request)
    if err is not None:
        return err
    assert body is not None
    if name in emu.store["jobs"]:
        return arm.conflict(
            f"A job with name '{name}' already exists in workspace {emu.cfg.workspace_name}. Job names are "
            "unique and cannot be reused."
        )
    props = body.get("properties")
    if not isinstance(props, dict):
        return arm.bad_request("The job body needs a 'properties' object.", target="properties")
    try:
        plan = build_plan(emu, name, props)
    except PlanError as exc:
        return arm.bad_request(str(exc), target="properties")
    doc = emu.jobs.submit(name, props, plan)
    return arm.json_response(job_body(emu, doc), 201)


def _get_doc(request: Request) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = emu_of(request).store["jobs"].get(request.path_params["name"])
    return doc


async def get_job(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    doc = _get_doc(request)
    if doc is None:
        return arm.not_found("Job", request.path_params["name"])
    return arm.json_response(job_body(emu_of(request), doc))


async def list_jobs(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    docs = [d for d in emu.store["jobs"].values() if d.get("kind") == "pipeline"]
    docs.sort(key=lambda d: d.get("created", ""), reverse=True)
    job_type = request.query_params.get("jobType")
    if job_type and job_type.lower() != "pipeline":
        docs = []
    tag = request.query_params.get("tag")
    if tag:
        docs = [d for d in docs if tag in ((d["properties"].get("tags")) or {})]
    return arm.page([job_body(emu, d) for d in docs])


async def cancel_job(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    name = request.path_params["name"]
    doc = emu.jobs.request_cancel(name)
    if doc is None:
        return arm.not_found("Job", name)
    op = emu.operations.start("job-cancel", name)
    return Response(status_code=202, headers=emu.operations.headers(op["id"], arm.api_version(request)))


# ------------------------------------------------------------------------------------------ run history


def _log_files(emu: Emulator, doc: dict[str, Any]) -> dict[str, str]:
    name = doc["name"]
    if doc.get("kind") == "step":
        path = emu.jobs.step_log_path(name)
        return {"user_logs/std_log.txt": f"{emu.base_url}/logs/{name}/std_log.txt"} if path.exists() else {}
    if emu.jobs.log_path(name).exists():
        return {"logs/azureml/executionlogs.txt": f"{emu.base_url}/logs/{name}/executionlogs.txt"}
    return {}


def run_body(emu: Emulator, doc: dict[str, Any], details: bool = False) -> dict[str, Any]:
    step = doc.get("kind") == "step"
    parent = doc.get("parent")
    props = {} if step else {k: str(v) for k, v in (doc["properties"].get("properties") or {}).items()}
    tags = {} if step else dict(doc["properties"].get("tags") or {})
    body: dict[str, Any] = {
        "runId": doc["name"],
        "runUuid": doc["name"] if step else None,
        "parentRunId": parent,
        "rootRunId": parent or doc["name"],
        "experimentId": doc.get("experiment_id"),
        "status": doc["status"],
        "createdUtc": doc["created"],
        "createdTimeUtc": doc["created"],
        "startTimeUtc": doc.get("start_time"),
        "endTimeUtc": doc.get("end_time"),
        "target": None,
        "displayName": doc.get("node") if step else doc["properties"].get("displayName", doc["name"]),
        "name": doc.get("node") if step else doc["name"],
        "runType": "azureml.StepRun" if step else "azureml.PipelineRun",
        "tags": tags,
        "properties": props,
        "error": {"error": doc["error"]} if doc.get("error") else None,
        "warnings": [],
        "hidden": False,
    }
    if details:
        body.update(
            {
                "parameters": {},
                "services": {},
                "inputDatasets": [],
                "outputDatasets": [],
                "runDefinition": {},
                "logFiles": _log_files(emu, doc),
                "revision": 1,
            }
        )
    return body


def _run_doc(request: Request) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = emu_of(request).store["jobs"].get(request.path_params["run_id"])
    return doc


async def run_details(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    doc = _run_doc(request)
    if doc is None:
        return arm.not_found("Run", request.path_params["run_id"])
    return arm.json_response(run_body(emu_of(request), doc, details=True))


async def run_get(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    doc = _run_doc(request)
    if doc is None:
        return arm.not_found("Run", request.path_params["run_id"])
    return arm.json_response(run_body(emu_of(request), doc))


async def run_children(request: Request) -> Response:
    if (bad := check_workspace(request)) is not None:
        return bad
    emu = emu_of(request)
    doc = _run_doc(request)
    if doc is None:
        return arm.not_found("Run", request.path_params["run_id"])
    children = [emu.store["jobs"].get(c["run_id"]) for c in doc.get("children", [])]
    return arm.json_response({"value": [run_body(emu, c) for c in children if c], "nextLink": None})


async def run_log(request: Request) -> Response:
    emu = emu_of(request)
    run_id, file = request.path_params["run_id"], request.path_params["file"]
    doc = emu.store["jobs"].get(run_id)
    if doc is None:
        return arm.not_found("Run", run_id)
    path = emu.jobs.step_log_path(run_id) if doc.get("kind") == "step" else emu.jobs.log_path(run_id)
    if file != path.name or not path.exists():
        return arm.error(404, "NotFound", f"Log {file} not found for run {run_id}.")
    return PlainTextResponse(path.read_text(encoding="utf-8", errors="replace"))


async def mlflow_run(request: Request) -> Response:
    """MLflow ``runs/get``: the run's latest metrics (train/eval loss) for the fine-tune run or pipeline."""
    emu = emu_of(request)
    run_id = request.query_params.get("run_id") or request.query_params.get("run_uuid") or ""
    doc = emu.store["jobs"].get(run_id)
    if doc is None:
        return arm.error(404, "RESOURCE_DOES_NOT_EXIST", f"Run '{run_id}' not found.")
    metrics = doc.get("metrics") or {}
    ts = int(arm.parse_iso(doc.get("modified") or doc["created"]).timestamp() * 1000)
    rows = [
        {"key": k, "value": v, "timestamp": ts, "step": 0}
        for k, v in metrics.items()
        if isinstance(v, int | float)
    ]
    status = {"Completed": "FINISHED", "Failed": "FAILED", "Canceled": "KILLED"}.get(doc["status"], "RUNNING")
    return arm.json_response(
        {
            "run": {
                "info": {
                    "run_id": run_id,
                    "run_uuid": run_id,
                    "experiment_id": doc.get("experiment_id"),
                    "status": status,
                    "start_time": ts,
                    "lifecycle_stage": "active",
                },
                "data": {"metrics": rows, "params": [], "tags": []},
            }
        }
    )


async def mlflow_metric_history(request: Request) -> Response:
    emu = emu_of(request)
    run_id = request.query_params.get("run_id") or request.query_params.get("run_uuid") or ""
    key = request.query_params.get("metric_key", "")
    doc = emu.store["jobs"].get(run_id)
    if doc is None:
        return arm.error(404, "RESOURCE_DOES_NOT_EXIST", f"Run '{run_id}' not found.")
    metrics = doc.get("metrics") or {}
    # Per-step series as the trainer logged them (train rows carry loss, learning rate and epoch; eval rows
    # eval loss and epoch), else a final value at step 0; MLflow's shape: key, value, timestamp (ms), step.
    series = [*metrics.get("train_loss_history", []), *metrics.get("eval_loss_history", [])]
    history = [{"key": key, "value": row[key], "timestamp": int(row.get("time", 0)), "step": int(row.get("step", i))}
               for i, row in enumerate(series) if isinstance(row.get(key), int | float)]
    if not history and isinstance(metrics.get(key), int | float):
        history = [{"key": key, "value": metrics[key], "timestamp": 0, "step": 0}]
    history.sort(key=lambda m: m["step"])
    return arm.json_response({"metrics": history})


def routes(ws: str) -> list[Route]:
    hist = "/history/v1.0" + ws
    mlflow = "/mlflow/v1.0" + ws + "/api/2.0/mlflow"
    return [
        Route(ws + "/jobs", list_jobs, methods=["GET"]),
        Route(ws + "/jobs/{name}", get_job, methods=["GET"]),
        Route(ws + "/jobs/{name}", put_job, methods=["PUT"]),
        Route(ws + "/jobs/{name}/cancel", cancel_job, methods=["POST"]),
        Route(hist + "/runs/{run_id}/details", run_details, methods=["GET"]),
        Route(hist + "/experiments/{exp}/runs/{run_id}/details", run_details, methods=["GET"]),
        Route(hist + "/experimentids/{exp}/runs/{run_id}/details", run_details, methods=["GET"]),
        Route(hist + "/runs/{run_id}", run_get, methods=["GET"]),
        Route(hist + "/experiments/{exp}/runs/{run_id}", run_get, methods=["GET"]),
        Route(hist + "/experimentids/{exp}/runs/{run_id}", run_get, methods=["GET"]),
        Route(hist + "/runs/{run_id}/children", run_children, methods=["GET"]),
        Route(hist + "/experiments/{exp}/runs/{run_id}/children", run_children, methods=["GET"]),
        Route(hist + "/experimentids/{exp}/runs/{run_id}/children", run_children, methods=["GET"]),
        Route(mlflow + "/runs/get", mlflow_run, methods=["GET"]),
        Route(mlflow + "/metrics/get-history", mlflow_metric_history, methods=["GET"]),
        Route("/logs/{run_id}/{file}", run_log, methods=["GET"]),
    ]
