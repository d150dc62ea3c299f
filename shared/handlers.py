"""The non-HTTP entry points (Event Grid, queue, timers): parse the trigger, call the library, and decide
between retry and acknowledge.

A malformed event or a permanent failure is logged and acknowledged (retrying cannot fix it; a
permanent failure is recorded on its run). A transient failure is re-raised so the host answers
with an error and Event Grid redelivers.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from functools import partial

import orjson

from shared.azureml import tags
from shared.errors import EventError, TuneflowError
from shared.events import (
    BLOB_CREATED,
    MODEL_REGISTERED,
    RUN_COMPLETED,
    RUN_STATUS_CHANGED,
    Envelope,
    TriggerEvent,
    parse_blob_created,
    parse_model_registered,
    parse_run_event,
)
from shared.ingest import IngestResult
from shared.runs import Run, is_run_id
from shared.services import Services, services
from shared.telemetry import annotate, span

log = logging.getLogger(__name__)


def on_blob_created(event: TriggerEvent, svc: Services | None = None) -> IngestResult:
    try:
        envelope = Envelope.from_function_event(event)
        if envelope.event_type != BLOB_CREATED:
            log.info("ingest: ignoring %s event %s", envelope.event_type, envelope.id)
            return IngestResult("ignored", f"event type {envelope.event_type}")
        blob = parse_blob_created(envelope)
    except EventError as exc:
        log.warning("ingest: malformed event acknowledged without action: %s", exc)
        return IngestResult("ignored", str(exc))
    with span("ingest", event_id=envelope.id):
        result = (svc or services()).ingestor.handle(blob)
        annotate(run_id=result.run.run_id if result.run else None, outcome=result.outcome)
    log.info("ingest: %s/%s → %s (%s)", blob.container, blob.blob_name, result.outcome, result.reason)
    return result


def on_lifecycle_event(event: TriggerEvent, svc: Services | None = None) -> str:
    """Azure ML run and model events."""
    from shared.lifecycle.model_events import on_model_registered
    from shared.lifecycle.registration import on_run_event

    svc = svc or services()
    try:
        envelope = Envelope.from_function_event(event)
        if envelope.event_type in (RUN_STATUS_CHANGED, RUN_COMPLETED):
            run_event = parse_run_event(envelope)
            run_id = run_event.run_tags.get(tags.RUN_ID)
            action: Callable[[], str] = partial(on_run_event, svc, run_event)
        elif envelope.event_type == MODEL_REGISTERED:
            model_event = parse_model_registered(envelope)
            run_id = model_event.model_tags.get(tags.RUN_ID)
            action = partial(on_model_registered, svc, model_event)
        else:
            log.info("lifecycle: ignoring %s event %s", envelope.event_type, envelope.id)
            return "ignored"
    except EventError as exc:
        log.warning("lifecycle: malformed event acknowledged without action: %s", exc)
        return "ignored"
    kind = envelope.event_type.rsplit(".", 1)[-1]
    try:
        with span(f"lifecycle.{kind}", run_id=run_id, event_id=envelope.id):
            outcome = action()
            annotate(outcome=outcome)
    except TuneflowError as exc:
        if exc.transient:
            raise
        log.error("lifecycle: %s event %s failed permanently: %s", envelope.event_type, envelope.id, exc)
        message = str(exc)
        if run_id and svc.runs.get(run_id):
            svc.runs.update(run_id, lambda run: _set_error(run, message))
        return "error"
    log.info("lifecycle: %s %s → %s", kind, envelope.subject, outcome)
    return outcome


def on_reconcile_timer(svc: Services | None = None) -> Counter[str]:
    from shared.lifecycle.reconcile import reconcile

    svc = svc or services()
    outcome = reconcile(svc, resubmit=svc.ingestor.resume)
    try:
        swept = svc.ingestor.sweep()
    except Exception as exc:  # storage trouble: the next tick sweeps again; notifications still go out
        log.warning("reconcile: drop sweep failed: %s: %s", type(exc).__name__, exc)
        swept = 0
    if swept:
        outcome["swept"] = swept
    sent = svc.notifier.flush()
    log.info("reconcile: %s; %d queued notifications sent", dict(outcome) or "nothing to do", sent)
    return outcome


async def on_score_job(text: str, svc: Services | None = None) -> str:
    """A message of the score-job queue. Raises on storage trouble, so the host retries the message."""
    from shared.webhooks.worker import process_message

    return await process_message(svc or services(), text)


async def on_work(text: str, svc: Services | None = None) -> str:
    """A message of the work queue: a folder to read once settled, a source to prepare, a run webhook, a
    deploying run to move on (its next evaluation chunk, its canary's next look), a training run's progress.
    A malformed message is logged and dropped; storage trouble raises, so the host retries the message."""
    import asyncio

    from shared.lifecycle import progress
    from shared.lifecycle.rollout import DEPLOY
    from shared.webhooks.runs import KIND as NOTIFY
    from shared.webhooks.runs import deliver

    svc = svc or services()
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        message = None
    kind = message.get("kind") if isinstance(message, dict) else None
    folder = message.get("folder") if isinstance(message, dict) else None
    if kind == NOTIFY and isinstance(message, dict):
        return await deliver(svc, message)
    run_id = message.get("run_id") if isinstance(message, dict) else None
    if kind == DEPLOY and is_run_id(run_id):
        return await asyncio.to_thread(_deploy, svc, str(run_id))
    if kind == progress.KIND and is_run_id(run_id):
        return await asyncio.to_thread(progress.poll, svc, str(run_id))
    if kind in ("settle", "source") and isinstance(folder, str) and folder.endswith("/") and len(folder) <= 1024:
        with span(f"ingest.{kind}", folder=folder):
            ingestor = svc.ingestor
            action = ingestor.settle if kind == "settle" else ingestor.prepare_source
            result = await asyncio.to_thread(action, folder)
            annotate(run_id=result.run.run_id if result.run else None, outcome=result.outcome)
        log.info("work: %s %s → %s (%s)", kind, folder, result.outcome, result.reason)
        return result.outcome
    log.warning("work queue: malformed message dropped: %.200s", text)
    return "ignored"


def _deploy(svc: Services, run_id: str) -> str:
    """Move a deploying run on (evaluation chunks included); a message for a run that is gone or has
    moved on is acknowledged: the record is the truth."""
    from shared.lifecycle import deployment
    from shared.runs import RunState

    run = svc.runs.get(run_id)
    if run is None or run.state not in (RunState.REGISTERED, RunState.DEPLOYING):
        return "ignored"
    with span("lifecycle.deploy", run_id=run_id):
        after = deployment.start(svc, run, evaluate=True)
        annotate(outcome=after.state.value)
    return after.state.value


def on_idle_timer(svc: Services | None = None) -> list[str]:
    from shared.endpoints.idle import idle_teardown

    svc = svc or services()
    torn = idle_teardown(svc.settings, svc.activity, svc.teardown, lambda: svc.runs)
    log.info("idle teardown: %s", ", ".join(torn) if torn else "nothing idle")
    return torn


def _set_error(run: Run, message: str) -> bool:
    run.last_error = message
    return True
