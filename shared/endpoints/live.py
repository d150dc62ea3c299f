"""Live traffic per deployment, as tuneflow's scoring proxy sees it: requests, errors, latency.

Every scoring call through the HTTP API is observed here, in memory (O(1) on the request path). At
most once per ``flush_every`` seconds the counts are merged into ``live/<endpoint>/<deployment>.json``
(10-second buckets: call and failure counts and a sparse latency histogram of 10%-wide buckets) with an
ETag compare-and-swap, on a background thread, so every app instance adds to the same record. A
progressive rollout reads them to compare its candidate with the deployment that serves (``window``).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.background import BackgroundFlush
from shared.errors import ConflictError
from shared.records import RecordStore

PREFIX = "live/"
BUCKET_S = 10
KEEP_S = 6 * 3600  # a bake longer than this judges on its last six hours
# Upper bounds (ms) of the latency histogram's buckets, 10% apart from 1 ms to ~5 min (the last is open-ended):
# fine enough that a p95 ratio of 1.5 is not an artefact of two neighbouring buckets.
EDGES_MS = tuple(round(1.1 ** i, 3) for i in range(133))


def failed(status: int) -> bool:
    """A call the deployment failed: a 5xx or a timeout (a 4xx is the caller's, a 429 its capacity)."""
    return status >= 500 or status in (408, 504)


@dataclass(frozen=True)
class Window:
    """A deployment's live traffic over a time window."""

    requests: int
    errors: int
    p95_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, float | int | None]:
        return {"requests": self.requests, "errors": self.errors, "error_rate": round(self.error_rate, 4),
                "p95_ms": self.p95_ms}


Row = dict[str, Any]  # one 10-s bucket: {"n": calls, "e": failures, "h": {latency bucket index: calls}}


def _p95(histogram: dict[str, int]) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen = 0.95 * total, 0
    for index in sorted(histogram, key=int):
        count, i = histogram[index], int(index)
        if count and seen + count >= rank:  # interpolated inside the bucket the rank falls in
            low = EDGES_MS[i - 1] if i else 0.0
            high = EDGES_MS[i] if i < len(EDGES_MS) else EDGES_MS[-1] * 1.1
            return round(low + (high - low) * (rank - seen) / count, 1)
        seen += count
    return None  # pragma: no cover - the loop always reaches the rank


def _empty() -> Row:
    return {"n": 0, "e": 0, "h": {}}


def _add(into: Row, row: Row) -> Row:
    """``into`` plus ``row`` (sparse histograms: only the latency buckets that saw calls are kept)."""
    histogram = dict(into["h"])
    for index, count in row["h"].items():
        histogram[str(index)] = histogram.get(str(index), 0) + count
    return {"n": into["n"] + row["n"], "e": into["e"] + row["e"], "h": histogram}


class LiveStats:
    def __init__(self, records: Callable[[], RecordStore], flush_every: float = 5.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._records, self._flush_every, self._clock = records, flush_every, clock
        self._pending: dict[tuple[str, str], dict[int, Row]] = {}
        self._lock = threading.Lock()
        self._flushed_at: datetime | None = None
        self._background = BackgroundFlush(self.flush, "live traffic")

    def observe(self, endpoint: str, deployment: str | None, status: int, latency_ms: float) -> None:
        """Count one scoring call (which deployment answered it, how, how fast)."""
        if not deployment:
            return
        now = self._clock()
        bucket = int(now.timestamp()) // BUCKET_S * BUCKET_S
        with self._lock:
            row = self._pending.setdefault((endpoint, deployment), {}).setdefault(bucket, _empty())
            row["n"] += 1
            row["e"] += failed(status)
            index = str(bisect.bisect_left(EDGES_MS, latency_ms))
            row["h"][index] = row["h"].get(index, 0) + 1
            due = self._flushed_at is None or (now - self._flushed_at).total_seconds() >= self._flush_every
        if due:
            self._background.schedule()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._flushed_at = self._clock()
        for (endpoint, deployment), buckets in pending.items():
            try:
                self._merge(endpoint, deployment, buckets)
            except Exception:
                with self._lock:  # keep them for the next flush
                    mine = self._pending.setdefault((endpoint, deployment), {})
                    for bucket, row in buckets.items():
                        mine[bucket] = _add(mine.get(bucket, _empty()), row)
                raise

    @staticmethod
    def _key(endpoint: str, deployment: str) -> str:
        return f"{PREFIX}{endpoint}/{deployment}.json"

    def _merge(self, endpoint: str, deployment: str, buckets: dict[int, Row]) -> None:
        store, key = self._records(), self._key(endpoint, deployment)
        oldest = int(self._clock().timestamp()) - KEEP_S
        for _ in range(20):
            current = store.read(key)
            stored: dict[str, Row] = orjson.loads(current.data)["buckets"] if current else {}
            for bucket, row in buckets.items():
                stored[str(bucket)] = _add(stored.get(str(bucket), _empty()), row)
            kept = {b: row for b, row in stored.items() if int(b) >= oldest}
            data = orjson.dumps({"endpoint": endpoint, "deployment": deployment, "bucket_s": BUCKET_S,
                                 "latency_edges_ms": EDGES_MS, "buckets": kept})
            done = store.replace(key, data, current.etag) if current else store.create(key, data)
            if done is not None:
                return
        raise ConflictError(f"live traffic of {endpoint}/{deployment}: too many concurrent updates")

    def window(self, endpoint: str, deployment: str, since: datetime) -> Window:
        """The deployment's traffic from ``since`` on, as flushed (from the start of the 10-s bucket ``since``
        falls in: up to ten seconds before it count too)."""
        current = self._records().read(self._key(endpoint, deployment))
        if current is None:
            return Window(0, 0, None)
        start = int(since.timestamp()) // BUCKET_S * BUCKET_S
        total = _empty()
        for bucket, row in orjson.loads(current.data)["buckets"].items():
            if int(bucket) >= start:
                total = _add(total, row)
        return Window(total["n"], total["e"], _p95(total["h"]))
