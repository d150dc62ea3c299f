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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from shared.errors import CallbackRefused, ScoringError
from shared.webhooks import signing, ssrf
from shared.webhooks.jobs import (
    DELIVERED,
    FAILED,
    GAVE_UP,
    PENDING,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    ScoreJob,
    now_iso,
)

if TYPE_CHECKING:
    import httpx

    from shared.services import Services as Api
    from shared.settings import Settings

log = logging.getLogger(__name__)
BACKOFF_CAP_S = 3600.0
DELIVERY_TIMEOUT_S = 15.0
USER_AGENT = "tuneflow-webhooks/1"


def backoff(settings: Settings, attempts_made: int) -> float:
    return float(min(BACKOFF_CAP_S, settings.webhook_backoff_s * 2 ** max(0, attempts_made - 1)))


def event_body(job: ScoreJob) -> bytes:
    data: dict[str, Any] = {"id": job.id, "status": job.status}
    if job.status == SUCCEEDED:
        data.update(job.result or {})
    else:
        data["error"] = job.error
    kind = "score.succeeded" if job.status == SUCCEEDED else "score.failed"
    return orjson.dumps({"type": kind, "timestamp": job.updated_at, "data": data})


def new_webhook_client() -> httpx.AsyncClient:
    import httpx

    # No keep-alive: requests go to a pinned IP with the name only in SNI and Host, and a pooled
    # connection must never be reused for a different name. No proxies from the environment either.
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0, max_connections=64),
                             timeout=httpx.Timeout(DELIVERY_TIMEOUT_S, connect=5.0),
                             follow_redirects=False, trust_env=False)


class Deliverer:
    def __init__(self, settings: Settings, client: Callable[[], httpx.AsyncClient],
                 resolver: ssrf.Resolver = ssrf.system_resolver) -> None:
        self._settings = settings
        self._client = client
        self._resolver = resolver

    async def deliver(self, job: ScoreJob) -> tuple[bool, int | None, str | None]:
        """One attempt: (delivered, the receiver's status, what went wrong)."""
        import httpx

        s = self._settings
        try:
            # resolved and checked again now: the name may point somewhere else than at submission
            target, addresses = await asyncio.to_thread(
                ssrf.check, job.callback_url, allow_http=s.webhook_allow_http,
                allow_private=s.webhook_allow_private, resolver=self._resolver)
        except CallbackRefused as exc:
            return False, None, exc.message
        body = event_body(job)
        headers = {**signing.headers(str(s.webhook_secret), job.id, body), "Content-Type": "application/json",
                   "User-Agent": USER_AGENT, "Host": target.host_header}
        literal = ssrf._literal(target.host) is not None
        extensions = {"sni_hostname": target.host} if target.scheme == "https" and not literal else {}
        problem = "no address to call"
        for address in addresses[:3]:
            try:
                response = await self._client().post(target.pinned_url(address), content=body, headers=headers,
                                                      extensions=extensions)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__} calling the receiver"
                continue
            if 200 <= response.status_code < 300:
                return True, response.status_code, None
            return False, response.status_code, f"the receiver answered {response.status_code}"
        return False, None, problem


async def process_message(api: Api, text: str) -> str:
    """Handle one queue message; returns what happened (for the log and tests)."""
    try:
        message = orjson.loads(text)
        job_id = str(message["id"])
        attempt = int(message.get("attempt", 1))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("score job queue: malformed message ignored")
        return "ignored"
    job = await asyncio.to_thread(api.jobs.get, job_id)
    if job is None:
        log.warning("score job %s: no record; message dropped", job_id)
        return "missing"
    if job.status in (QUEUED, RUNNING):
        job = await _score(api, job)
    if job.delivery.state != PENDING:
        return job.delivery.state
    if attempt <= job.delivery.attempts:
        return "duplicate"
    ok, status, problem = await api.deliverer.deliver(job)
    settings = api.settings
    retry = not ok and attempt < settings.webhook_attempts
    delay = backoff(settings, attempt)
    if retry:  # queued before the record says so: a crash in between retries rather than stalls
        await asyncio.to_thread(api.queue.send, job.id, attempt + 1, delay)

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

    await asyncio.to_thread(api.jobs.update, job.id, record)
    if ok:
        log.info("score job %s: delivered (attempt %d, %s)", job.id, attempt, status)
        return DELIVERED
    log.warning("score job %s: delivery attempt %d failed: %s%s", job.id, attempt, problem,
                f"; next in {delay:g} s" if retry else "; giving up")
    return "retrying" if retry else GAVE_UP


async def _score(api: Api, job: ScoreJob) -> ScoreJob:
    def running(j: ScoreJob) -> bool:
        if j.status != QUEUED:
            return False
        j.status = RUNNING
        return True

    await asyncio.to_thread(api.jobs.update, job.id, running)
    outcome: dict[str, Any]
    try:
        result = await api.scorer.score(job.endpoint, job.payload.encode(), job.deployment)
        api.activity.touch(job.endpoint)
        outcome = {"status": SUCCEEDED, "result": result.to_dict(), "error": None}
    except ScoringError as exc:
        outcome = {"status": FAILED, "result": None,
                   "error": {"status": exc.status, "code": exc.code, "message": exc.message}}

    def finish(j: ScoreJob) -> bool:
        if j.status not in (QUEUED, RUNNING):
            return False  # another delivery of this message finished first
        j.status, j.result, j.error = outcome["status"], outcome["result"], outcome["error"]
        return True

    updated = await asyncio.to_thread(api.jobs.update, job.id, finish)
    log.info("score job %s: %s", job.id, outcome["status"])
    return updated or job
