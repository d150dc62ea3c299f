"""ModelRegistered → deploy, for the models tuneflow registered or that ask for it by tag."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from shared.azureml import tags
from shared.events import ModelRegistered
from shared.lifecycle import deployment
from shared.runs import Run, RunState, Transition

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)


def on_model_registered(ctx: Services, event: ModelRegistered) -> str:
    model = f"{event.model_name}:{event.model_version}"
    run_id = event.model_tags.get(tags.RUN_ID)
    run: Run | None
    if run_id:
        run = ctx.runs.get(run_id)
        if run is None:
            log.debug("lifecycle: model %s names unknown run %s; ignoring", model, run_id)
            return "ignored"
        if run.model not in (None, model):
            log.warning("lifecycle: event %s: model %s claims run %s, which registered %s; ignoring",
                        event.event_id, model, run_id, run.model)
            return "ignored"
        if run.state == RunState.TRAINED:  # the event overtook our own bookkeeping
            if (problem := _undeployable(ctx, event)) is not None:
                log.warning("lifecycle: event %s: %s; ignoring", event.event_id, problem)
                return "ignored"
            run = ctx.runs.advance(run.run_id, RunState.REGISTERED, model=model)
    elif event.model_tags.get(tags.AUTO_DEPLOY, "").lower() == "true":
        # events are hints: a forged or stale one must create nothing, so the model is looked up first
        if (problem := _undeployable(ctx, event)) is not None:
            log.warning("lifecycle: event %s: %s; ignoring", event.event_id, problem)
            return "ignored"
        run = _external_run(ctx, event, model)
    else:
        log.debug("lifecycle: model %s was not registered by tuneflow and has no %s tag", model, tags.AUTO_DEPLOY)
        return "ignored"
    if run.state not in (RunState.REGISTERED, RunState.DEPLOYING):
        return "ignored"
    return deployment.start(ctx, run).state.value


def _undeployable(ctx: Services, event: ModelRegistered) -> str | None:
    """Why the event's model cannot be deployed (it does not exist, or is not an MLflow model), else None."""
    from azure.core.exceptions import ResourceNotFoundError

    from shared.azureml.sdk import azure_errors, text

    try:
        with azure_errors(f"reading model {event.model_name}:{event.model_version}"):
            found = ctx.ml.workspace.models.get(event.model_name, version=event.model_version)
    except ResourceNotFoundError:
        return f"model {event.model_name}:{event.model_version} does not exist in the workspace"
    kind = text(getattr(found, "type", None)).lower()
    if kind and kind not in ("mlflow_model", "mlflowmodel"):
        return f"model {event.model_name}:{event.model_version} is a {kind}, not an MLflow model tuneflow can deploy"
    return None


def _external_run(ctx: Services, event: ModelRegistered, model: str) -> Run:
    """A run record for a model registered outside tuneflow, so it is deployed and tracked alike."""
    run_id = hashlib.sha256(f"model:{model}".encode()).hexdigest()[:20]
    run = Run(run_id=run_id, state=RunState.REGISTERED, dataset="(registered outside tuneflow)", sources=[],
              base_model=ctx.settings.base_model, model=model)
    run.history.append(Transition(RunState.REGISTERED, run.created_at, f"{tags.AUTO_DEPLOY}=true"))
    stored, _ = ctx.runs.create(run)
    return stored
