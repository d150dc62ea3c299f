"""Blue/green deployment of a registered model onto the stable endpoint.

The new deployment is created with 0% traffic; once it is Succeeded a smoke test scores a sample of
the run's test split through it (``azureml-model-deployment``), traffic moves to it in one update,
and only then are the previous deployments deleted. A failure at any point deletes the new
deployment and leaves the previous one serving everything.

Every step is derived from Azure's live state, so ``progress`` can be called any number of times
(events, the reconciler) and long-running operations are started, waited on for a bounded time,
and otherwise left for the next call — a function never outlives its timeout.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import orjson

from shared.azureml.enums import text
from shared.azureml.errors import azure_errors
from shared.azureml.preflight import fetch_base_model, tag_list
from shared.errors import TuneflowError
from shared.lifecycle.context import LifecycleContext
from shared.lifecycle.names import deployment_name_for
from shared.runs import Run, RunState

log = logging.getLogger(__name__)
SUCCEEDED, FAILED = "succeeded", "failed"
MAX_STEPS = 8  # progress() keeps going while each step completes within the wait budget


def _state(resource: Any) -> str:
    return text(getattr(resource, "provisioning_state", None)).lower()


def start(ctx: LifecycleContext, run: Run) -> Run:
    """REGISTERED → DEPLOYING (after checking the instance type), then make what progress we can."""
    if run.state == RunState.REGISTERED and run.model:
        problem = instance_type_problem(ctx)
        if problem:
            ctx.runs.advance(run.run_id, RunState.DEPLOYING, endpoint=ctx.settings.endpoint)
            return ctx.runs.advance(run.run_id, RunState.DEPLOY_FAILED, note=problem, last_error=problem)
        name, version = run.model.rsplit(":", 1)
        run = ctx.runs.advance(run.run_id, RunState.DEPLOYING, endpoint=ctx.settings.endpoint,
                               deployment=deployment_name_for(name, version))
    if run.state == RunState.DEPLOYING:
        return progress(ctx, run)
    return run


def instance_type_problem(ctx: LifecycleContext) -> str | None:
    s = ctx.settings
    try:
        tags = fetch_base_model(ctx.ml.registry, s).tags or {}
    except TuneflowError as exc:  # the base model may be archived by now: deploying is still fine
        log.info("could not read %s's inference_compute_allow_list (%s); not checking", s.base_model, exc)
        return None
    allow = tag_list({str(k): str(v) for k, v in tags.items()}, "inference_compute_allow_list")
    if allow is not None and s.instance_type.lower() not in {a.lower() for a in allow}:
        return (f"TUNEFLOW_INSTANCE_TYPE {s.instance_type!r} is not in {s.base_model}'s "
                f"inference_compute_allow_list ({', '.join(allow)})")
    return None


def progress(ctx: LifecycleContext, run: Run) -> Run:
    for _ in range(MAX_STEPS):
        if run.state != RunState.DEPLOYING:
            return run
        advanced, run = _step(ctx, run)
        if not advanced:
            return run
    return run


def _step(ctx: LifecycleContext, run: Run) -> tuple[bool, Run]:
    """One step towards DEPLOYED; (True, run) when it is worth trying the next one right away."""
    ws, _s = ctx.ml.workspace, ctx.settings
    endpoint_name, deployment_name = str(run.endpoint), str(run.deployment)
    endpoint = _get(ws.online_endpoints, endpoint_name)
    if endpoint is None:
        return _wait(_create_endpoint(ctx, endpoint_name)), run
    if _state(endpoint) == FAILED:
        return False, _failed(ctx, run, f"endpoint {endpoint_name} is in a failed state", delete=False)
    if _state(endpoint) != SUCCEEDED:
        return False, run
    deployment = _get(ws.online_deployments, deployment_name, endpoint_name=endpoint_name)
    if deployment is None:
        return _wait(_create_deployment(ctx, run)), run
    if _state(deployment) == FAILED:
        return False, _failed(ctx, run, f"deployment {deployment_name} failed to provision")
    if _state(deployment) != SUCCEEDED:
        return False, run
    if (endpoint.traffic or {}).get(deployment_name, 0) != 100:
        reason = smoke_test(ctx, run)
        if reason:
            return False, _failed(ctx, run, f"smoke test failed: {reason}")
        endpoint.traffic = {deployment_name: 100}
        with azure_errors(f"switching traffic on {endpoint_name} to {deployment_name}"):
            poller = ws.online_endpoints.begin_create_or_update(endpoint)
        log.info("run %s: traffic on %s → %s", run.run_id, endpoint_name, deployment_name)
        return _wait(poller), run
    _retire_previous(ctx, run, endpoint_name, deployment_name)
    return False, ctx.runs.advance(run.run_id, RunState.DEPLOYED, note=f"{deployment_name} takes 100%")


def _get(operations: Any, name: str, **kwargs: Any) -> Any:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        with azure_errors(f"reading {name}"):
            return operations.get(name, **kwargs)
    except ResourceNotFoundError:
        return None


def _wait(poller: Any) -> bool:
    """Wait a bounded time for a long-running operation; True when it finished."""
    seconds = 30.0
    try:
        poller.wait(timeout=seconds)
    except Exception as exc:  # the outcome is read from live state on the next step
        log.info("long-running operation ended with %s", type(exc).__name__)
    return bool(poller.done())


def _create_endpoint(ctx: LifecycleContext, name: str) -> Any:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    endpoint = ManagedOnlineEndpoint(name=name, auth_mode="key", description="tuneflow chat endpoint",
                                     tags={"tuneflow": "true"})
    log.info("creating endpoint %s", name)
    with azure_errors(f"creating endpoint {name}"):
        return ctx.ml.workspace.online_endpoints.begin_create_or_update(endpoint)


def _create_deployment(ctx: LifecycleContext, run: Run) -> Any:
    from azure.ai.ml.entities import ManagedOnlineDeployment, OnlineRequestSettings, ProbeSettings

    s = ctx.settings
    name, version = str(run.model).rsplit(":", 1)
    deployment = ManagedOnlineDeployment(
        name=str(run.deployment),
        endpoint_name=str(run.endpoint),
        model=f"azureml:{name}:{version}",
        instance_type=s.instance_type,
        instance_count=s.instance_count,
        request_settings=OnlineRequestSettings(request_timeout_ms=s.request_timeout_ms),
        liveness_probe=ProbeSettings(initial_delay=s.liveness_initial_delay),
        readiness_probe=ProbeSettings(initial_delay=min(s.liveness_initial_delay, 60)),
        tags={"tuneflow.run_id": run.run_id, "tuneflow.model": str(run.model)},
    )
    log.info("run %s: creating deployment %s on %s (0%% traffic)", run.run_id, run.deployment, run.endpoint)
    with azure_errors(f"creating deployment {run.deployment}"):
        return ctx.ml.workspace.online_deployments.begin_create_or_update(deployment)


def smoke_request(sample: bytes | None) -> dict[str, Any]:
    """An Azure ML chat request from one test-split row: the conversation up to its last user turn."""
    messages = [{"role": "user", "content": "Say hello."}]
    try:
        row = orjson.loads(sample) if sample else {}
    except orjson.JSONDecodeError:  # a row longer than the sample read: use the default prompt
        row = {}
    if isinstance(row, dict):
        turns = [m for m in row.get("messages", []) if isinstance(m, dict)]
        while turns and turns[-1].get("role") == "assistant":
            turns.pop()
        if turns:
            messages = [{"role": m["role"], "content": m["content"]} for m in turns]
    return {"input_data": {"input_string": messages, "parameters": {"max_new_tokens": 32, "do_sample": False}}}


def smoke_test(ctx: LifecycleContext, run: Run) -> str | None:
    """Score one sample through the new deployment only; None when it answered with text."""
    body = smoke_request(ctx.read_test_sample(run.test_path) if run.test_path else None)
    with tempfile.TemporaryDirectory() as tmp:
        request = Path(tmp) / "request.json"
        request.write_bytes(orjson.dumps(body))
        try:
            with azure_errors(f"smoke-testing {run.deployment}"):
                answer = ctx.ml.workspace.online_endpoints.invoke(
                    endpoint_name=str(run.endpoint), deployment_name=str(run.deployment),
                    request_file=str(request),
                )
        except Exception as exc:  # whatever went wrong, the deployment did not answer
            return str(exc)[:300]
    text = answer if isinstance(answer, str) else str(answer)
    if not text.strip() or text.strip() in ("[]", "{}", '""'):
        return "the deployment returned an empty answer"
    return None


def _failed(ctx: LifecycleContext, run: Run, reason: str, delete: bool = True) -> Run:
    """Roll back: the broken deployment goes, the previous one keeps all traffic."""
    if delete:
        try:
            with azure_errors(f"deleting deployment {run.deployment}"):
                ctx.ml.workspace.online_deployments.begin_delete(name=str(run.deployment),
                                                                 endpoint_name=str(run.endpoint))
        except Exception as exc:  # best effort: the deployment takes no traffic either way
            log.warning("run %s: could not delete %s: %s", run.run_id, run.deployment, exc)
    log.error("run %s: deployment failed: %s", run.run_id, reason)
    return ctx.runs.advance(run.run_id, RunState.DEPLOY_FAILED, note=reason, last_error=reason)


def _retire_previous(ctx: LifecycleContext, run: Run, endpoint_name: str, keep: str) -> None:
    ws = ctx.ml.workspace
    with azure_errors(f"listing deployments of {endpoint_name}"):
        others = [d.name for d in ws.online_deployments.list(endpoint_name) if d.name != keep]
    for name in others:
        log.info("deleting previous deployment %s from %s", name, endpoint_name)
        with azure_errors(f"deleting deployment {name}"):
            ws.online_deployments.begin_delete(name=name, endpoint_name=endpoint_name)
    for other in ctx.runs.list([RunState.DEPLOYED]):
        if other.run_id != run.run_id and other.endpoint == endpoint_name and other.state == RunState.DEPLOYED:
            ctx.runs.advance(other.run_id, RunState.RETIRED, note=f"replaced by {keep}")
