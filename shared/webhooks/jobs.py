"""Scoring jobs with a callback: a JSON record per job and a storage queue that carries their ids.

The record (``score-jobs/<id>.json`` in the output container, through the same ETag-guarded
``RecordStore`` as runs) holds the request, the outcome and the delivery state; the queue message
holds only ``{"id", "attempt"}``, so a request of any accepted size fits in a 64 KiB message.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from shared.errors import ConflictError
from shared.queue import JsonQueue
from shared.records import RecordStore
from shared.runs import now_iso

PREFIX = "score-jobs/"
_ID = re.compile(r"[0-9a-f]{32}")  # fullmatch: `$` would allow a final newline
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
PENDING, DELIVERED, GAVE_UP = "pending", "delivered", "failed"


def is_job_id(value: str) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


@dataclass
class Delivery:
    state: str = PENDING
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: str | None = None
    next_attempt_at: str | None = None


@dataclass
class ScoreJob:
    id: str
    endpoint: str
    payload: str  # the Azure ML request body (JSON text)
    callback_url: str
    deployment: str | None = None
    status: str = QUEUED
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    delivery: Delivery = field(default_factory=Delivery)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    @classmethod
    def new(cls, endpoint: str, payload: bytes, callback_url: str, deployment: str | None) -> ScoreJob:
        return cls(uuid.uuid4().hex, endpoint, payload.decode(), callback_url, deployment)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> ScoreJob:
        raw = orjson.loads(data)
        known = {f.name for f in fields(cls)}
        raw = {k: v for k, v in raw.items() if k in known}
        raw["delivery"] = Delivery(**raw.get("delivery") or {})
        return cls(**raw)

    def public(self) -> dict[str, Any]:
        """What ``GET /api/score/{id}`` shows: no request body, and the callback without its query."""
        parts = urlsplit(self.callback_url)
        shown = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))
        return {"id": self.id, "status": self.status, "endpoint": self.endpoint, "deployment": self.deployment,
                "result": self.result, "error": self.error, "callback_url": shown,
                "delivery": asdict(self.delivery), "created_at": self.created_at, "updated_at": self.updated_at}


class JobStore:
    def __init__(self, records: RecordStore, retries: int = 20) -> None:
        self._records = records
        self._retries = retries

    @staticmethod
    def key(job_id: str) -> str:
        return f"{PREFIX}{job_id}.json"

    def create(self, job: ScoreJob) -> None:
        if self._records.create(self.key(job.id), job.to_json()) is None:
            raise ConflictError(f"score job {job.id} exists already")

    def get(self, job_id: str) -> ScoreJob | None:
        if not is_job_id(job_id):
            return None
        record = self._records.read(self.key(job_id))
        return ScoreJob.from_json(record.data) if record else None

    def update(self, job_id: str, change: Callable[[ScoreJob], bool]) -> ScoreJob | None:
        """Apply ``change`` (True when it changed the job) with compare-and-swap; None if the job is gone."""
        key = self.key(job_id)
        for _ in range(self._retries):
            record = self._records.read(key)
            if record is None:
                return None
            job = ScoreJob.from_json(record.data)
            if not change(job):
                return job
            job.updated_at = now_iso()
            if self._records.replace(key, job.to_json(), record.etag) is not None:
                return job
        raise ConflictError(f"score job {job_id}: gave up after {self._retries} concurrent updates")

    def delete(self, job_id: str) -> None:
        self._records.delete(self.key(job_id))


class ScoreQueue(JsonQueue):
    """Carries score-job ids (and the delivery attempt) to the queue-triggered worker."""

    def send(self, job_id: str, attempt: int = 1, delay_s: float = 0) -> None:
        self.send_json({"id": job_id, "attempt": attempt}, delay_s)
