"""Live traffic per deployment: counted in memory, merged into one record by every instance, read by window."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from shared.endpoints.live import LiveStats, failed
from shared.records import MemoryRecordStore


def test_calls_are_counted_per_deployment_and_merged_across_instances():
    store = MemoryRecordStore()
    a, b = LiveStats(lambda: store), LiveStats(lambda: store)
    since = datetime.now(UTC) - timedelta(seconds=1)
    for ms in (30, 60, 90, 120):
        a.observe("ep", "green", 200, ms)
    a.observe("ep", "green", 500, 40)
    b.observe("ep", "green", 504, 30_000)
    b.observe("ep", "blue", 200, 10)
    b.observe("ep", None, 200, 10)  # no deployment named: nothing to attribute it to
    a.flush()
    b.flush()
    green = a.window("ep", "green", since)
    assert (green.requests, green.errors) == (6, 2) and round(green.error_rate, 3) == 0.333
    assert 27_000 <= green.p95_ms <= 33_000  # within the 10%-wide bucket of the 30 s call (interpolated)
    assert a.window("ep", "blue", since).requests == 1
    assert a.window("ep", "nobody", since).requests == 0 and a.window("ep", "nobody", since).p95_ms is None
    later = a.window("ep", "green", datetime.now(UTC) + timedelta(seconds=20))
    assert later.requests == 0


def test_p95_is_close_to_the_real_one_so_a_ratio_is_no_bucket_artefact():
    store = MemoryRecordStore()
    live = LiveStats(lambda: store)
    since = datetime.now(UTC) - timedelta(seconds=1)
    for i in range(100):
        live.observe("ep", "a", 200, 95.0 + i * 0.1)  # 95-105 ms: the real p95 is ~104.5 ms
        live.observe("ep", "b", 200, 101.0 + i * 0.1)
    live.flush()
    a, b = live.window("ep", "a", since).p95_ms, live.window("ep", "b", since).p95_ms
    assert abs(a - 104.5) / 104.5 < 0.1 and abs(b - 110.5) / 110.5 < 0.1
    assert b / a < 1.2  # two nearly equal deployments never look 2x apart


def test_what_counts_as_a_failure():
    assert failed(500) and failed(502) and failed(504) and failed(408)
    assert not failed(200) and not failed(400) and not failed(404) and not failed(429)


def test_observing_never_waits_for_storage_and_a_failed_flush_keeps_the_counts():
    class Down(MemoryRecordStore):
        broken = True

        def read(self, key):
            if self.broken:
                raise OSError("storage is down")
            return super().read(key)

    store = Down()
    live = LiveStats(lambda: store, flush_every=0)
    started = time.perf_counter()
    live.observe("ep", "green", 200, 50)  # its background flush fails, quietly
    assert time.perf_counter() - started < 0.5
    time.sleep(0.2)
    store.broken = False
    live.flush()
    assert live.window("ep", "green", datetime.now(UTC) - timedelta(seconds=30)).requests == 1
