"""The reconciler: converge every unfinished run from Azure ML's live state.

Events are hints; this timer makes the system converge when one is lost, late, duplicated or out of
order: submitted/running runs are checked against their job, trained runs are registered,
registered runs deployed, deploying runs moved on, and queued notifications re-sent.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from shared.azureml.sdk import azure_errors, text
from shared.errors import TuneflowError
from shared.lifecycle import deployment, registration
from shared.runs import ACTIVE, SETTLED, Run, RunState

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)
STALE_VALIDATING = timedelta(minutes=15)  # longer than an ingest invocation can run


def reconcile_run(ctx: Services, run: Run, resubmit: Callable[[Run], object] | None = None) -> Run:
    state = run.state
    if state in (RunState.SUBMITTED, RunState.RUNNING):
        with azure_errors(f"reading job {run.job_name}"):
            status = text(ctx.ml.workspace.jobs.get(run.job_name).status)
        if status in registration.RUNNING_STATUSES:
            return ctx.runs.advance(run.run_id, RunState.RUNNING, note=f"job {status} (reconciled)")
        if status in registration.FAILED_STATUSES:
            return registration.fail(ctx, run, status)
        if status == "Completed":
            run = registration.register(ctx, run)
    if run.state == RunState.VALIDATING and resubmit and run.train_path and _older_than(run, STALE_VALIDATING):
        resubmit(run)  # an ingest that died between accepting the data and submitting
        return ctx.runs.get(run.run_id) or run
    if run.state == RunState.TRAINED:
        run = registration.register(ctx, run)
    if run.state in (RunState.REGISTERED, RunState.DEPLOYING):
        run = deployment.start(ctx, run)
    return run


def reconcile(ctx: Services, resubmit: Callable[[Run], object] | None = None) -> Counter[str]:
    """One pass over all runs; a failure on one run is logged and does not stop the others."""
    outcome: Counter[str] = Counter()
    for run in list(ctx.runs.list(ACTIVE)):  # settled runs are not even read
        if run.state in SETTLED:  # settled since the listing
            continue
        try:
            after = reconcile_run(ctx, run, resubmit)
        except TuneflowError as exc:
            log.warning("reconcile: run %s (%s) not advanced: %s", run.run_id, run.state, exc)
            outcome["error"] += 1
            continue
        outcome[after.state.value if after.state != run.state else "unchanged"] += 1
    return outcome



def _older_than(run: Run, age: timedelta) -> bool:
    return datetime.now(UTC) - datetime.fromisoformat(run.updated_at) > age
