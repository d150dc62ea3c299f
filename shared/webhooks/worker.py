"""The queue-triggered side of webhook scoring: score the job, then deliver its outcome.

One delivery attempt per queue message. A failed attempt (network error, non-2xx, or an address
the SSRF guard now refuses) schedules the next one as a new message made visible after an
exponential back-off (``TUNEFLOW_WEBHOOK_BACKOFF_S`` doubled per attempt, capped at an hour), so
no function instance sleeps between attempts. Each message carries its attempt number; a message
for an attempt already made (a redelivery) does nothing, and the job's outcome is stored before the
first delivery, so a redelivered job is never scored twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from shared.errors import ScoringError
from shared.runs import now_iso
from shared.webhooks.delivery import backoff
from shared.webhooks.jobs import DELIVERED, FAILED, GAVE_UP, PENDING, QUEUED, RUNNING, SUCCEEDED, ScoreJob

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)


async def process_message(services: Services, text: str) -> str:
    """Handle one queue message; returns what happened (for the log and tests)."""
    try:
        message = orjson.loads(text)
        job_id = str(message["id"])
        attempt = int(message.get("attempt", 1))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("score job queue: malformed message ignored")
        return "ignored"
    job = await asyncio.to_thread(services.jobs.get, job_id)
    if job is None:
        log.warning("score job %s: no record; message dropped", job_id)
        return "missing"
    if job.status in (QUEUED, RUNNING):
        job = await _score(services, job)
    if job.delivery.state != PENDING:
        return job.delivery.state
    if attempt <= job.delivery.attempts:
        return "duplicate"
    ok, status, problem = await services.deliverer.deliver(job)
    settings = services.settings
    retry = not ok and attempt < settings.webhook_attempts
    delay = backoff(settings, attempt)
    if retry:  # queued before the record says so: a crash in between retries rather than stalls
        await asyncio.to_thread(services.queue.send, job.id, attempt + 1, delay)

    def record(j: ScoreJob) -> bool:
        if j.delivery.attempts >= attempt:
            return False
        d = j.delivery
        d.attempts, d.last_status, d.last_error = attempt, status, problem
        if ok:
            d.state, d.delivered_at, d.next_attempt_at = DELIVERED, now_iso(), None
        elif retry:
            d.next_attempt_at = (datetime.now(UTC) + timedelta(seconds=delay)).isoformat(timespec="seconds")
        else:
            d.state, d.next_attempt_at = GAVE_UP, None
        return True

    await asyncio.to_thread(services.jobs.update, job.id, record)
    if ok:
        log.info("score job %s: delivered (attempt %d, %s)", job.id, attempt, status)
        return DELIVERED
    log.warning("score job %s: delivery attempt %d failed: %s%s", job.id, attempt, problem,
                f"; next in {delay:g} s" if retry else "; giving up")
    return "retrying" if retry else GAVE_UP


async def _score(services: Services, job: ScoreJob) -> ScoreJob:
    def running(j: ScoreJob) -> bool:
        if j.status != QUEUED:
            return False
        j.status = RUNNING
        return True

    await asyncio.to_thread(services.jobs.update, job.id, running)
    outcome: dict[str, Any]
    try:
        result = await services.scorer.score(job.endpoint, job.payload.encode(), job.deployment)
        services.activity.touch(job.endpoint)
        outcome = {"status": SUCCEEDED, "result": result.to_dict(), "error": None}
    except ScoringError as exc:
        outcome = {"status": FAILED, "result": None,
                   "error": {"status": exc.status, "code": exc.code, "message": exc.message}}

    def finish(j: ScoreJob) -> bool:
        if j.status not in (QUEUED, RUNNING):
            return False  # another delivery of this message finished first
        j.status, j.result, j.error = outcome["status"], outcome["result"], outcome["error"]
        return True

    updated = await asyncio.to_thread(services.jobs.update, job.id, finish)
    log.info("score job %s: %s", job.id, outcome["status"])
    return updated or job
