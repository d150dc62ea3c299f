"""Run notifications: each transition becomes a CloudEvent on an optional Event Grid topic.

Events go through an outbox (records under ``outbox/<run id>/``) so that a publishing failure is
retried later — by the next transition or the reconciler — in the order of the run's transitions,
and never breaks the flow that caused it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from shared.records import RecordStore
from shared.runs import Run

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)
EVENT_SOURCE = "/tuneflow/runs"


def event_type(state: str) -> str:
    return f"tuneflow.run.{state.lower()}"


class Notifier:
    PREFIX = "outbox/"

    def __init__(self, settings: Settings, records: RecordStore, publisher: Callable[[], Any] | None = None) -> None:
        """``publisher`` builds the topic client (an ``EventGridPublisherClient``), on the first event."""
        self._settings = settings
        self._records = records
        self._publisher = publisher
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._settings.eventgrid_topic_endpoint) and self._publisher is not None

    def on_transition(self, run: Run, index: int) -> None:
        """RunStore hook for ``run.history[index]``: queue its event, then deliver the run's queue."""
        if not self.enabled:
            return
        state = run.history[index].state.value
        key = f"{self.PREFIX}{run.run_id}/{index:04d}-{state}.json"
        payload = {"type": event_type(state), "subject": f"runs/{run.run_id}", "data": run.summary_dict()}
        self._records.create(key, orjson.dumps(payload))
        self.flush(run.run_id)

    def flush(self, run_id: str | None = None) -> int:
        """Publish queued events (one run's, or all), oldest first; stop a run's queue at a failure."""
        if not self.enabled:
            return 0
        sent = 0
        with self._lock:
            prefix = self.PREFIX + (f"{run_id}/" if run_id else "")
            blocked: set[str] = set()
            for key, _ in self._records.entries(prefix):
                owner = key[len(self.PREFIX):].split("/", 1)[0]
                if owner in blocked:
                    continue
                record = self._records.read(key)
                if record is None:
                    continue
                try:
                    self._publish(orjson.loads(record.data))
                except Exception as exc:  # any failure: keep it queued, keep the order
                    log.warning("notification %s not delivered, will retry: %s", key, type(exc).__name__)
                    blocked.add(owner)
                    continue
                self._records.delete(key)
                sent += 1
        return sent

    def _publish(self, payload: dict[str, Any]) -> None:
        from azure.core.messaging import CloudEvent

        event = CloudEvent(source=EVENT_SOURCE, type=payload["type"], subject=payload["subject"],
                           data=payload["data"])
        assert self._publisher is not None  # enabled
        self._publisher().send([event])
