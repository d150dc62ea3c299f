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
from shared.errors import ResourceNotFound
from shared.lifecycle import deployment, progress, registration
from shared.runs import ACTIVE, NEXT, Run, RunState, finished

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)
STALE_VALIDATING = timedelta(minutes=15)  # longer than an ingest invocation can run
MAX_STALLED_PASSES = 20  # ~20 timer ticks: a dependency down that long is an outage to report, not to hide
DEPLOY_STATES = frozenset({RunState.REGISTERED, RunState.DEPLOYING})


def reconcile_run(ctx: Services, run: Run, resubmit: Callable[[Run], object] | None = None) -> Run:
    state = run.state
    if state in (RunState.SUBMITTED, RunState.RUNNING):
        with azure_errors(f"reading job {run.job_name}"):
            status = text(ctx.ml.workspace.jobs.get(run.job_name).status)
        if status in registration.RUNNING_STATUSES:
            run = ctx.runs.advance(run.run_id, RunState.RUNNING, note=f"job {status} (reconciled)")
            progress.start(ctx, run)  # a lost poll chain starts again (a pending one is left alone)
            return run
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
        run = deployment.start(ctx, run, evaluate=True)
    return run


def reconcile(ctx: Services, resubmit: Callable[[Run], object] | None = None) -> Counter[str]:
    """One pass over all unfinished runs. A failure on one run, whatever its type, is logged, counted and
    recorded on that run; it never stops the pass (see ``_stalled``)."""
    outcome: Counter[str] = Counter()
    try:
        if written := ctx.runs.ensure_timeline():
            outcome["timeline_entries_written"] = written
    except Exception as exc:  # the listing's index; the runs themselves do not wait on it
        log.warning("reconcile: the runs timeline could not be checked: %s", type(exc).__name__)
    for run in list(ctx.runs.list(ACTIVE)):  # settled runs are not even read
        if finished(run):  # settled since the listing (or registered only, as its manifest asked)
            continue
        try:
            after = reconcile_run(ctx, run, resubmit)
        except Exception as exc:
            log.warning("reconcile: run %s (%s) not advanced: %s: %s", run.run_id, run.state, type(exc).__name__, exc)
            outcome["error"] += 1
            try:
                after = _stalled(ctx, run, exc)
            except Exception as again:  # the record itself is unreachable: the next pass tries again
                log.warning("reconcile: run %s: could not record the failure: %s", run.run_id, again)
                continue
        else:
            if after.stalled_passes:
                after = ctx.runs.update(run.run_id, _unstall)
        outcome[after.state.value if after.state != run.state else "unchanged"] += 1
    return outcome


def _gone(exc: Exception) -> bool:
    """Azure ML says the job, model, endpoint or deployment does not exist (SDK or REST)."""
    if isinstance(exc, ResourceNotFound):
        return True
    try:
        from azure.core.exceptions import ResourceNotFoundError
    except ImportError:  # pragma: no cover - azure-core is a dependency of every client we use
        return False
    return isinstance(exc, ResourceNotFoundError)


def _stalled(ctx: Services, run: Run, exc: Exception) -> Run:
    """Record a failed pass on ``run``. What no longer exists ends the run at once; anything else ends it
    after ``MAX_STALLED_PASSES`` failed passes in a row, with the last error — never retried forever."""
    message = f"{type(exc).__name__}: {str(exc)[:300]}"
    if _gone(exc):
        return _give_up(ctx, run, f"reconciler: a resource of this run no longer exists ({message})")
    current = ctx.runs.update(run.run_id, lambda r: _count(r, message))
    if current.stalled_passes >= MAX_STALLED_PASSES:
        return _give_up(ctx, current, f"reconciler gave up after {current.stalled_passes} failed passes; "
                                      f"last error: {message}")
    return current


def _give_up(ctx: Services, run: Run, reason: str) -> Run:
    log.error("reconcile: run %s (%s) ends: %s", run.run_id, run.state, reason)
    if run.state in DEPLOY_STATES:
        if run.state == RunState.REGISTERED:
            ctx.runs.advance(run.run_id, RunState.DEPLOYING, note=reason)
        return ctx.runs.advance(run.run_id, RunState.DEPLOY_FAILED, note=reason, last_error=reason)
    if RunState.FAILED in NEXT[run.state]:
        return ctx.runs.advance(run.run_id, RunState.FAILED, note=reason, last_error=reason)
    return ctx.runs.update(run.run_id, lambda r: _note(r, reason))  # RECEIVED: can only be re-ingested


def _count(run: Run, message: str) -> bool:
    run.stalled_passes += 1
    run.last_error = message
    return True


def _unstall(run: Run) -> bool:
    changed = run.stalled_passes != 0
    run.stalled_passes = 0
    return changed


def _note(run: Run, message: str) -> bool:
    run.last_error = message
    return True


def _older_than(run: Run, age: timedelta) -> bool:
    return datetime.now(UTC) - datetime.fromisoformat(run.updated_at) > age
