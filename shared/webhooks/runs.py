"""Run webhooks: each transition of a run whose manifest has a ``notify_url`` is POSTed there, signed.

The event is a CloudEvent-shaped JSON (the same ``type``/``subject``/``data`` as the run's Event Grid
notifications) signed as Standard Webhooks, with the SSRF guard and the retry schedule of scoring
callbacks: the transition queues a work message; one delivery attempt per message; a failed attempt
queues the next after the back-off, up to ``TUNEFLOW_WEBHOOK_ATTEMPTS``. Delivery is at least once:
the ``webhook-id`` (run id and transition number) is what a receiver deduplicates on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from shared.notify import EVENT_SOURCE, event_type
from shared.runs import Run, is_run_id
from shared.webhooks.delivery import backoff

if TYPE_CHECKING:
    from shared.queue import JsonQueue
    from shared.services import Services
    from shared.settings import Settings

log = logging.getLogger(__name__)
KIND = "notify"


def event_id(run: Run, index: int) -> str:
    return f"{run.run_id}-{index:04d}"


def event_body(run: Run, index: int) -> bytes:
    """The event of ``run.history[index]``: its data is the run as of that transition (its state and history up
    to it), so a retry sent after later transitions still says what this one said."""
    transition = run.history[index]
    data = run.summary_dict()
    data["state"], data["history"] = transition.state.value, data["history"][: index + 1]
    return orjson.dumps({"specversion": "1.0", "id": event_id(run, index), "source": EVENT_SOURCE,
                         "type": event_type(transition.state.value), "subject": f"runs/{run.run_id}",
                         "time": transition.at, "datacontenttype": "application/json", "data": data})


class RunWebhooks:
    def __init__(self, settings: Settings, work: Callable[[], JsonQueue]) -> None:
        self._settings = settings
        self._work = work

    def on_transition(self, run: Run, index: int) -> None:
        """RunStore hook: queue the transition's webhook. A queue failure is logged, never raised into the flow
        that made the transition (the run itself is already recorded)."""
        if not run.notify_url or not self._settings.webhook_secret:
            return
        try:
            self._work().send_json({"kind": KIND, "run": run.run_id, "index": index, "attempt": 1})
        except Exception as exc:
            log.warning("run %s: webhook of transition %d not queued: %s: %s", run.run_id, index,
                        type(exc).__name__, exc)


async def deliver(svc: Services, message: dict[str, Any]) -> str:
    """One attempt for a ``notify`` work message; queues the next attempt when it fails."""
    import asyncio

    run_id, index, attempt = message.get("run"), message.get("index"), message.get("attempt", 1)
    if not is_run_id(run_id) or not isinstance(index, int) or not isinstance(attempt, int) or attempt < 1:
        log.warning("run webhook: malformed work message ignored")
        return "ignored"
    run = await asyncio.to_thread(svc.runs.get, str(run_id))
    if run is None or not run.notify_url or not 0 <= index < len(run.history):
        return "ignored"
    ok, status, problem = await svc.deliverer.post(run.notify_url, event_id(run, index), event_body(run, index))
    if ok:
        log.info("run %s: webhook %d delivered (attempt %d, %s)", run.run_id, index, attempt, status)
        return "delivered"
    s = svc.settings
    if attempt >= s.webhook_attempts:
        log.warning("run %s: webhook %d given up after %d attempts: %s", run.run_id, index, attempt, problem)
        return "gave_up"
    delay = backoff(s, attempt)
    await asyncio.to_thread(svc.work.send_json, {**message, "attempt": attempt + 1}, delay)
    log.info("run %s: webhook %d attempt %d failed (%s); next in %g s", run.run_id, index, attempt, problem, delay)
    return "retrying"
