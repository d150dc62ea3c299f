"""``eval.compare_base``: the base model on a deployment of its own, for the length of an evaluation.

Its answers to the same prompts show what fine-tuning changed. It is created at 0% traffic beside the
candidate (the registry model itself, the candidate's instance type, one instance: in Azure a GPU instance
for as long as the evaluation runs, which is why it is off by default), evaluated with the candidate, and
deleted as soon as the evaluation is complete, whatever the verdict. If it cannot be provisioned the
evaluation goes on without it and says so; it never decides the gate.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.azureml.preflight import fetch_base_model
from shared.endpoints.control import DeploymentSpec, provisioning_state
from shared.errors import TuneflowError
from shared.runs import Run

if TYPE_CHECKING:
    from shared.services import Services
    from shared.settings import Settings

log = logging.getLogger(__name__)
WAITING = "waiting"  # still provisioning: look again later
BASE_OF = "tuneflow.base_of"  # its tag: the run it serves (not tuneflow.run_id: it is no run's model)


def name_for(run: Run) -> str:
    return f"base-{run.run_id[:16]}"


def ensure(ctx: Services, run: Run, s: Settings) -> str | None:
    """The base deployment's name once it serves, ``WAITING`` while it provisions, None if it cannot."""
    endpoint, name = str(run.endpoint), name_for(run)
    if (run.evaluation or {}).get("base_unavailable"):
        return None
    deployment = ctx.control.deployment(endpoint, name)
    if deployment is None:
        try:
            model = fetch_base_model(ctx.ml.registry_for(s.registry), s)
            spec = DeploymentSpec(endpoint=endpoint, name=name, model_id=str(model.id), instance_type=s.instance_type,
                                  instance_count=1, request_timeout_ms=s.request_timeout_ms,
                                  liveness_initial_delay_s=s.liveness_initial_delay, tags={BASE_OF: run.run_id})
            log.info("run %s: deploying the base model %s as %s for its evaluation", run.run_id, model.id, name)
            ctx.control.wait(ctx.control.create_deployment(spec), 30.0)
        except TuneflowError as exc:
            if exc.transient:
                raise
            _unavailable(ctx, run, f"the base model could not be deployed ({exc}): evaluated without it")
            return None
        deployment = ctx.control.deployment(endpoint, name)
    state = provisioning_state(deployment)
    if state == "succeeded":
        return name
    if state == "failed":
        drop(ctx, run)
        _unavailable(ctx, run, f"the base model's deployment {name} failed to provision: evaluated without it")
        return None
    return WAITING


def _unavailable(ctx: Services, run: Run, reason: str) -> None:
    log.warning("run %s: %s", run.run_id, reason)

    def note(r: Run) -> bool:
        r.evaluation = {**(r.evaluation or {}), "base_unavailable": reason}
        return True

    ctx.runs.update(run.run_id, note)


def drop(ctx: Services, run: Run) -> None:
    """Delete the base deployment (best effort: it takes no traffic, and teardown finds what is left)."""
    try:
        if ctx.control.deployment(str(run.endpoint), name_for(run)) is not None:
            ctx.control.delete_deployment(str(run.endpoint), name_for(run))
    except Exception as exc:
        log.warning("run %s: could not delete its base deployment: %s", run.run_id, exc)
