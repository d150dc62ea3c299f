"""Run notifications: each transition becomes a CloudEvent on an optional Event Grid topic.

Events go through an outbox (records under ``outbox/<run id>/``) so that a publishing failure is
retried later — by the next transition or the reconciler — in the order of the run's transitions,
and never breaks the flow that caused it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from shared.errors import TransientError
from shared.records import RecordStore
from shared.runs import Run, now_iso

if TYPE_CHECKING:
    import httpx
    from azure.core.credentials import TokenCredential

    from shared.settings import Settings

log = logging.getLogger(__name__)
EVENT_SOURCE = "/tuneflow/runs"


def event_type(state: str) -> str:
    return f"tuneflow.run.{state.lower()}"


class Notifier:
    PREFIX = "outbox/"

    def __init__(self, settings: Settings, records: RecordStore, publisher: Callable[[], Any] | None = None) -> None:
        """``publisher`` builds the topic client (a ``TopicPublisher``), on the first event."""
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
        payload = {"id": f"{run.run_id}-{index:04d}", "type": event_type(state), "subject": f"runs/{run.run_id}",
                   "time": run.history[index].at, "data": run.summary_dict()}
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

    def queued(self, run_id: str) -> set[int]:
        """The transitions of ``run_id`` whose events wait in the outbox (not yet accepted by the topic)."""
        return {int(key.rsplit("/", 1)[-1].split("-", 1)[0]) for key, _ in self._records.entries(
            f"{self.PREFIX}{run_id}/")}

    def announce(self, run: Run, kind: str, data: dict[str, Any]) -> None:
        """An event that is no transition (training progress): sent at once, best effort, not queued — the
        next one supersedes it."""
        if not self.enabled:
            return
        try:
            self._publish({"type": kind, "subject": f"runs/{run.run_id}", "time": now_iso(), "data": data})
        except Exception as exc:
            log.info("%s event for run %s not sent: %s", kind, run.run_id, type(exc).__name__)

    def _publish(self, payload: dict[str, Any]) -> None:
        assert self._publisher is not None  # enabled
        self._publisher().send([cloud_event(payload)])


def cloud_event(payload: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvents 1.0 event (structured JSON); its id is stable, so a re-sent event can be de-duplicated."""
    return {"specversion": "1.0", "id": str(payload.get("id") or uuid.uuid4()), "source": EVENT_SOURCE,
            "type": payload["type"], "subject": payload["subject"],
            "time": payload.get("time") or datetime.now(UTC).isoformat(), "datacontenttype": "application/json",
            "data": payload["data"]}


class TopicPublisher:
    """Publishes CloudEvents to an Event Grid custom topic over its REST API (one POST per batch).

    Not ``azure-eventgrid``: its client drops ``connection_verify`` for basic topics (4.22), so it could only
    trust the local emulator's CA through a process-wide environment variable; the HTTP call is a few lines.
    """

    SCOPE = "https://eventgrid.azure.net/.default"

    def __init__(self, endpoint: str, key: str | None, credential: Callable[[], TokenCredential],
                 http: Callable[[], httpx.Client]) -> None:
        self._endpoint = endpoint
        self._key = key
        self._credential = credential
        self._http = http

    def send(self, events: list[dict[str, Any]]) -> None:
        headers = {"Content-Type": "application/cloudevents-batch+json; charset=utf-8"}
        if self._key:
            headers["aeg-sas-key"] = self._key
        else:  # the app's identity, with the EventGrid Data Sender role on the topic
            headers["Authorization"] = f"Bearer {self._credential().get_token(self.SCOPE).token}"
        response = self._http().post(self._endpoint, content=orjson.dumps(events), headers=headers, timeout=10.0)
        if response.status_code >= 300:
            raise TransientError(f"Event Grid topic answered {response.status_code}", status=response.status_code)
