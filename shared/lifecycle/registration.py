"""Run events → run state; a completed pipeline → its MLflow model registered, once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.azureml import tags
from shared.azureml.pipeline import TRAINED_MODEL_OUTPUT
from shared.azureml.sdk import azure_errors
from shared.events import RunEvent
from shared.lifecycle.names import model_version_for, run_id_from_job
from shared.manifest import settings_for
from shared.runs import Run, RunState

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)
RUNNING_STATUSES = frozenset({"Running", "Starting", "Preparing", "Queued", "Provisioning", "Finalizing"})
FAILED_STATUSES = frozenset({"Failed", "Canceled", "Cancelled", "NotResponding"})


def run_for_event(ctx: Services, event: RunEvent) -> Run | None:
    """The tuneflow run whose *parent pipeline* this event is about, else None (with a debug line)."""
    run_id = event.run_tags.get(tags.RUN_ID) or run_id_from_job(event.run_id)
    run = ctx.runs.get(run_id) if run_id else None
    if run is None or run.job_name != event.run_id:
        log.debug("lifecycle: ignoring run event for %s (%s): not a pipeline tuneflow submitted",
                  event.run_id, event.run_type or "unknown type")
        return None
    return run


def on_run_event(ctx: Services, event: RunEvent) -> str:
    run = run_for_event(ctx, event)
    if run is None:
        return "ignored"
    status = event.status or ""
    if status in RUNNING_STATUSES:
        from shared.lifecycle import progress

        progress.start(ctx, ctx.runs.advance(run.run_id, RunState.RUNNING, note=f"job {status}"))
        return "running"
    if status == "Completed":
        register(ctx, run)
        return "registered"
    if status in FAILED_STATUSES:
        fail(ctx, run, status)
        return "failed"
    return "ignored"


def fail(ctx: Services, run: Run, status: str) -> Run:
    message = f"pipeline job {run.job_name} ended {status}: {job_error(ctx, str(run.job_name))}"
    return ctx.runs.advance(run.run_id, RunState.FAILED, note=message, last_error=message)


def job_error(ctx: Services, job_name: str) -> str:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        with azure_errors(f"reading job {job_name}"):
            job = ctx.ml.workspace.jobs.get(job_name)
    except ResourceNotFoundError:
        return "the job no longer exists"
    error = getattr(job, "error", None) or (job.properties or {}).get("azureml.error")
    message = getattr(error, "message", None) or error
    return str(message) if message else "no error message was reported"


def job_metrics(job: Any) -> dict[str, str]:
    """Final metrics the pipeline reported as job properties (``azureml.metrics.<name>``, or
    ``metrics.<name>``), as ``metrics.<name>`` model tags."""
    props = getattr(job, "properties", None) or {}
    metrics = {}
    for key, value in props.items():
        name = str(key).removeprefix("azureml.")
        if name.startswith("metrics."):
            metrics[name] = str(value)
    return metrics


def register(ctx: Services, run: Run) -> Run:
    """Register ``trained_model`` of the run's job as an MLflow model; idempotent by version."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model
    from azure.core.exceptions import ResourceNotFoundError

    if run.state in (RunState.SUBMITTED, RunState.RUNNING):
        run = ctx.runs.advance(run.run_id, RunState.TRAINED, note="job Completed")
    if run.state != RunState.TRAINED:
        return run  # already registered (or further along, or failed): nothing to do
    s, workspace = settings_for(ctx.settings, run.config), ctx.ml.workspace
    name, version = s.registered_model_name, model_version_for(run.run_id)
    try:
        with azure_errors(f"reading model {name}:{version}"):
            workspace.models.get(name, version=version)
        log.info("run %s: model %s:%s already registered", run.run_id, name, version)
    except ResourceNotFoundError:
        with azure_errors(f"reading job {run.job_name}"):
            job = workspace.jobs.get(run.job_name)
        model = Model(
            name=name,
            version=version,
            type=AssetTypes.MLFLOW_MODEL,
            path=f"azureml://jobs/{run.job_name}/outputs/{TRAINED_MODEL_OUTPUT}",
            description=f"{run.base_model} fine-tuned by tuneflow on {run.dataset}",
            tags={
                **run.tags,
                tags.RUN_ID: run.run_id,
                tags.DATASET: run.dataset,
                tags.SHA256: run.sha256 or "",
                tags.JOB_NAME: str(run.job_name),
                tags.BASE_MODEL: run.base_model,
                **job_metrics(job),
            },
        )
        with azure_errors(f"registering model {name}:{version}"):
            workspace.models.create_or_update(model)
        log.info("run %s: registered model %s:%s", run.run_id, name, version)
    return ctx.runs.advance(run.run_id, RunState.REGISTERED, model=f"{name}:{version}")
