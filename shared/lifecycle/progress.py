"""Live training progress: the fine-tune step's metrics as Azure ML exposes them, summarised on the run.

Azure ML's trainer logs per-step metrics (train loss, learning rate, epoch; eval loss at each evaluation)
on the pipeline's fine-tune step run, read with the MLflow tracking API of the workspace
(``{history}/mlflow/v1.0{workspace}/api/2.0/mlflow/metrics/get-history``, the host from the workspace's
service discovery; the step's run id from run history's children of the job) — what azureml-mlflow's
client reads. While a run trains, a ``progress`` work message polls them every ``progress_seconds`` (one
chain per run, however many events start one), writes a summary on the run record (step, total steps,
epoch, latest losses, ETA) only when it changed, and announces it as a ``tuneflow.run.progress`` CloudEvent.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.connections import ML_SCOPE
from shared.runs import Run, RunState, now_iso

if TYPE_CHECKING:
    from shared.endpoints.control import ControlPlane
    from shared.services import Services

log = logging.getLogger(__name__)
KIND = "progress"  # the work queue's message kind
SERIES = ("train_loss", "eval_loss", "learning_rate", "epoch", "total_steps")
TRAINING = frozenset({RunState.SUBMITTED, RunState.RUNNING})
FINETUNE_STEP = "finetune"  # the step run whose name holds this logs the metrics (chat_completion_finetune)


# What does not change while a process lives: a workspace's history host, a job's fine-tune step run id
# (each poll would otherwise cost three more calls)
_HOSTS: dict[str, str] = {}
_STEPS: dict[str, str] = {}


def history_base(control: ControlPlane) -> str:
    """The workspace's run-history host, from its service discovery document."""
    workspace_path = control.workspace_path()
    if workspace_path not in _HOSTS:
        workspace = control.call("GET", control.url(""), what="reading the workspace").json()
        discovery = str((workspace.get("properties") or {}).get("discoveryUrl") or "")
        doc = control.call("GET", discovery, what="reading the workspace's service discovery", scope=ML_SCOPE).json()
        _HOSTS[workspace_path] = str(doc.get("history") or doc.get("api") or "").rstrip("/")
    return _HOSTS[workspace_path]


def finetune_run(control: ControlPlane, base: str, job_name: str) -> str | None:
    """The run id of the job's fine-tune step (run history's children of the pipeline run)."""
    if job_name in _STEPS:
        return _STEPS[job_name]
    children = control.call("GET", f"{base}/history/v1.0{control.workspace_path()}/runs/{job_name}/children",
                            what=f"listing the steps of {job_name}", scope=ML_SCOPE).json().get("value") or []
    for child in children:
        if FINETUNE_STEP in str(child.get("name") or child.get("displayName") or ""):
            _STEPS[job_name] = str(child.get("runId") or child.get("runUuid"))
            return _STEPS[job_name]
    return None  # not created yet: asked again next time


def series(control: ControlPlane, job_name: str) -> dict[str, list[dict[str, Any]]]:
    """Every metric's history, as MLflow returns it: ``{"train_loss": [{"step", "value", "timestamp"}], ...}``."""
    base = history_base(control)
    run_id = finetune_run(control, base, job_name) or job_name
    found: dict[str, list[dict[str, Any]]] = {}
    for key in SERIES:
        url = (f"{base}/mlflow/v1.0{control.workspace_path()}/api/2.0/mlflow/metrics/get-history"
               f"?run_id={run_id}&metric_key={key}")
        rows = control.call("GET", url, what=f"reading {key} of {job_name}", scope=ML_SCOPE).json().get("metrics")
        found[key] = [{"step": int(r.get("step", 0)), "value": float(r["value"]),
                       "timestamp": int(r.get("timestamp", 0))}
                      for r in rows or [] if isinstance(r.get("value"), int | float)]
    return found


def summary(found: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """Step, total steps, epoch, latest losses and an ETA from the step rate so far; None before step 1."""
    train = found.get("train_loss") or []
    if not train:
        return None
    last = train[-1]
    total = next((int(r["value"]) for r in found.get("total_steps") or []), None)
    epochs = found.get("epoch") or []
    evals = found.get("eval_loss") or []
    rates = found.get("learning_rate") or []
    eta = None
    first = train[0]
    if total and last["step"] > first["step"] and last["timestamp"] > first["timestamp"] > 0:
        per_step = (last["timestamp"] - first["timestamp"]) / 1000 / (last["step"] - first["step"])
        eta = max(0.0, round(per_step * (total - last["step"]), 1))
    return {"step": last["step"], "total_steps": total, "epoch": epochs[-1]["value"] if epochs else None,
            "train_loss": last["value"], "eval_loss": evals[-1]["value"] if evals else None,
            "learning_rate": rates[-1]["value"] if rates else None, "eta_s": eta}


def poll(ctx: Services, run_id: str) -> str:
    """One look at a training run's metrics; asks for the next one while it trains."""
    run = ctx.runs.get(run_id)
    if run is None or run.state not in TRAINING or not run.job_name:
        return "ignored"
    try:
        latest = summary(series(ctx.control, run.job_name))
    except Exception as exc:  # metrics are a view: a failed read is retried by the next poll
        log.info("run %s: training metrics not read: %s", run_id, exc)
        latest = None
    changed: list[bool] = []
    if latest is not None:
        run = ctx.runs.update(run_id, lambda r: _set(r, latest, changed))
    if changed:  # throttled by the poll: at most one event per progress_seconds, and none while nothing moves
        shown = {k: v for k, v in (run.progress or {}).items() if k != "next_poll"}
        ctx.notifier.announce(run, "tuneflow.run.progress", {"run_id": run_id, "state": run.state.value, **shown})
    schedule(ctx, run, ctx.settings.progress_seconds)
    return "polled"


def _set(run: Run, latest: dict[str, Any], changed: list[bool]) -> bool:
    current = {k: v for k, v in (run.progress or {}).items() if k not in ("updated_at", "next_poll")}
    if current == latest:
        return False
    run.progress = {**(run.progress or {}), **latest, "updated_at": now_iso()}
    changed.append(True)
    return True


def start(ctx: Services, run: Run) -> None:
    """A run started training (its job's Running event, or the reconciler saw it): poll its metrics. Best
    effort: progress is a view, and the reconciler starts it again if this fails."""
    try:
        schedule(ctx, run, 0)
    except Exception as exc:
        log.info("run %s: progress polling not started: %s: %s", run.run_id, type(exc).__name__, exc)


def schedule(ctx: Services, run: Run, delay_s: float) -> None:
    """Ask for a poll in ``delay_s`` unless one is due by then already (events and polls never multiply)."""
    if run.state not in TRAINING:
        return
    due = datetime.now(UTC) + timedelta(seconds=delay_s)
    stamp = due.isoformat(timespec="milliseconds")

    def change(r: Run) -> bool:
        pending = (r.progress or {}).get("next_poll")
        if pending and datetime.fromisoformat(pending) > datetime.now(UTC) + timedelta(seconds=0.5):
            return False
        r.progress = {**(r.progress or {}), "next_poll": stamp}
        return True

    after = ctx.runs.update(run.run_id, change)
    if (after.progress or {}).get("next_poll") == stamp:
        ctx.work.send_json({"kind": KIND, "run_id": run.run_id}, delay_s=math.ceil(delay_s))
