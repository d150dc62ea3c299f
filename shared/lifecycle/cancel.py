"""Cancelling a run: one that has not finished training (RECEIVED, VALIDATING, SUBMITTED, RUNNING).

A submitted run's Azure ML job is asked to cancel (``POST …/jobs/{name}/cancel``, not waited on: Azure
finishes it and its RunStatusChanged "Canceled" then meets a run that is already CANCELED and changes
nothing). The run is CANCELED at once; a run already CANCELED answers the same (idempotent). A run past
training has a model: cancelling it is refused with what to do instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.errors import ApiError
from shared.runs import CANCELABLE, Run, RunState

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)


def cancel_run(ctx: Services, run_id: str) -> tuple[Run, bool]:
    """(the run, whether a job cancellation was requested); ApiError 404 / 409 when it cannot be."""
    run = ctx.runs.find(run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id!r}", code="run_not_found", param="id")
    if run.state == RunState.CANCELED:
        return run, False
    if run.state not in CANCELABLE:
        raise ApiError(409, f"run {run_id} is {run.state}: only a run that has not finished training can be "
                       "canceled; to stop serving its model, tear its endpoint or deployment down",
                       code="not_cancelable", param="id")
    requested = False
    if run.job_name and run.state in (RunState.SUBMITTED, RunState.RUNNING):
        requested = ctx.control.cancel_job(run.job_name) is not None
    note = f"canceled by request (POST /api/runs/{run_id}/cancel)"
    if run.job_name:
        note += f"; job {run.job_name} " + ("cancellation requested" if requested else "not found in Azure ML")
    after = ctx.runs.advance(run_id, RunState.CANCELED, note=note)
    if after.state != RunState.CANCELED:  # it finished training meanwhile: the job is done, nothing to cancel
        raise ApiError(409, f"run {run_id} became {after.state} while it was being canceled", code="not_cancelable",
                       param="id")
    log.info("run %s: canceled (%s)", run_id, note)
    return after, requested
