"""When each endpoint last served a scoring call, for idle teardown — cheaply.

The scoring path only writes a timestamp into memory. At most once per ``flush_every`` seconds per
endpoint (and when the idle timer runs) the times are merged into a small record,
``activity/<endpoint>.json``, with an ETag compare-and-swap that keeps the latest time, so several
instances never move it backwards. The write runs on a background thread, never on the request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from shared.background import BackgroundFlush
from shared.errors import ConflictError
from shared.records import RecordStore

PREFIX = "activity/"


@dataclass(frozen=True)
class ActivityRecord:
    endpoint: str
    last_scored: datetime | None
    first_seen: datetime

    @property
    def last_active(self) -> datetime:
        return max(self.first_seen, self.last_scored) if self.last_scored else self.first_seen


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") if value else None


def _parse(data: bytes) -> ActivityRecord:
    raw = orjson.loads(data)
    last = raw.get("last_scored")
    return ActivityRecord(raw["endpoint"], datetime.fromisoformat(last) if last else None,
                          datetime.fromisoformat(raw["first_seen"]))


def _dump(record: ActivityRecord) -> bytes:
    return orjson.dumps({"endpoint": record.endpoint, "last_scored": _iso(record.last_scored),
                         "first_seen": _iso(record.first_seen)})


class Activity:
    def __init__(self, records: Callable[[], RecordStore], flush_every: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._records = records
        self._flush_every = flush_every
        self._clock = clock
        self._pending: dict[str, datetime] = {}
        self._flushed_at: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._background = BackgroundFlush(self.flush, "endpoint activity")

    def touch(self, endpoint: str) -> None:
        """Record a scoring call (O(1) on the request path)."""
        now = self._clock()
        with self._lock:
            self._pending[endpoint] = now
            last = self._flushed_at.get(endpoint)
            due = last is None or (now - last).total_seconds() >= self._flush_every
        if due:
            self._background.schedule()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            now = self._clock()
            for endpoint in pending:
                self._flushed_at[endpoint] = now
        for endpoint, when in pending.items():
            try:
                self._merge(endpoint, when)
            except Exception:
                with self._lock:  # keep it for the next flush
                    self._pending[endpoint] = max(when, self._pending.get(endpoint, when))
                raise

    def _merge(self, endpoint: str, when: datetime | None) -> ActivityRecord:
        store = self._records()
        key = f"{PREFIX}{endpoint}.json"
        for _ in range(20):
            current = store.read(key)
            if current is None:
                record = ActivityRecord(endpoint, when, when or self._clock())
                if store.create(key, _dump(record)) is not None:
                    return record
                continue
            old = _parse(current.data)
            if when is None or (old.last_scored and old.last_scored >= when):
                return old
            record = ActivityRecord(endpoint, when, old.first_seen)
            if store.replace(key, _dump(record), current.etag) is not None:
                return record
        raise ConflictError(f"activity record of {endpoint}: too many concurrent updates", endpoint=endpoint)

    def peek(self, endpoint: str) -> ActivityRecord | None:
        """The endpoint's activity as stored, without starting its idle clock (for listings)."""
        current = self._records().read(f"{PREFIX}{endpoint}.json")
        return _parse(current.data) if current is not None else None

    def get(self, endpoint: str) -> ActivityRecord:
        """The endpoint's activity; the first call for an endpoint starts its idle clock."""
        store = self._records()
        current = store.read(f"{PREFIX}{endpoint}.json")
        if current is not None:
            return _parse(current.data)
        return self._merge(endpoint, None)

    def forget(self, endpoint: str) -> None:
        """An endpoint was deleted: a new one of that name starts with a fresh idle clock."""
        with self._lock:
            self._pending.pop(endpoint, None)
            self._flushed_at.pop(endpoint, None)
        self._records().delete(f"{PREFIX}{endpoint}.json")
