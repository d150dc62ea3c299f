"""The runs listing's timeline: newest first, one listing page per unfiltered page, columns from metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import InputError
from shared.records import MemoryRecordStore, Meta, Record
from shared.runs import META_VERSION, Run, RunEntry, RunState, RunStore, _meta

START = datetime(2026, 1, 1, tzinfo=UTC)


class Counting(MemoryRecordStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = self.pages = self.writes = 0

    def read(self, key: str) -> Record | None:
        self.reads += 1
        return super().read(key)

    def page(self, prefix: str, size: int, token: str | None = None) -> tuple[list[tuple[str, Meta]], str | None]:
        self.pages += 1
        return super().page(prefix, size, token)

    def replace(self, key: str, data: bytes, etag: str, meta: Meta | None = None) -> str | None:
        self.writes += 1
        return super().replace(key, data, etag, meta)


def run(i: int, state: RunState = RunState.RECEIVED, dataset: str = "") -> Run:
    created = (START + timedelta(seconds=i)).isoformat(timespec="milliseconds")
    return Run(f"r{i:04d}", state, dataset or f"datasets/d{i}.jsonl", [], "Phi-4", created_at=created)


def everything(store: RunStore, limit: int, keep: Any = None) -> list[str]:
    seen, cursor = [], None
    for _ in range(1000):
        entries, cursor = store.timeline(limit, cursor, keep)
        seen += [e.run_id for e in entries]
        if cursor is None:
            return seen
    raise AssertionError("the cursor never ended")


def test_an_unfiltered_page_is_one_listing_page_and_no_read():
    records = Counting()
    store = RunStore(records)
    for i in range(30):
        store.create(run(i))
    records.reads = records.pages = 0
    entries, cursor = store.timeline(10)
    assert [e.run_id for e in entries] == [f"r{i:04d}" for i in range(29, 19, -1)]  # newest first
    assert records.pages == 1 and records.reads == 0 and cursor is not None
    assert everything(store, 7) == [f"r{i:04d}" for i in range(29, -1, -1)]


def test_a_filtered_page_goes_on_from_its_cursor_and_misses_nothing():
    store = RunStore(MemoryRecordStore())
    for i in range(50):
        store.create(run(i, RunState.REJECTED if i % 5 == 0 else RunState.RECEIVED,
                         dataset=f"datasets/{'Team-A' if i % 2 else 'b'}/x{i}.jsonl"))
    rejected = everything(store, 3, lambda e: e.state == RunState.REJECTED)
    assert rejected == [f"r{i:04d}" for i in range(45, -1, -5)]
    team = everything(store, 4, lambda e: "team-a" in e.dataset.casefold())
    assert team == [f"r{i:04d}" for i in range(49, 0, -2)]


def test_the_listed_columns_follow_each_change_but_progress_writes_no_entry():
    records = Counting()
    store = RunStore(records)
    store.create(run(1))
    store.advance("r0001", RunState.VALIDATING)
    store.advance("r0001", RunState.SUBMITTED, job_name="tuneflow-r0001")
    [entry], _ = store.timeline(5)
    assert entry.state == RunState.SUBMITTED and entry.job_name == "tuneflow-r0001"
    records.writes = 0
    def progress(r: Run) -> bool:
        r.progress = {"step": 3}
        return True

    store.update("r0001", progress)
    assert records.writes == 1  # the record only: no listed column changed


def test_an_older_write_never_overwrites_a_newer_entry():
    store = RunStore(MemoryRecordStore())
    store.create(run(1))
    newer = store.advance("r0001", RunState.VALIDATING)
    stale = Run.from_json(newer.to_json())
    stale.state, stale.updated_at = RunState.RECEIVED, "2000-01-01T00:00:00.000+00:00"
    store._list(stale, _meta(stale), None)  # a slow writer from before
    [entry], _ = store.timeline(5)
    assert entry.state == RunState.VALIDATING


def test_reindex_writes_the_entries_that_are_missing():
    records = MemoryRecordStore()
    store = RunStore(records)
    for i in range(5):
        store.create(run(i))
    for key, _ in list(records.entries(RunStore.TIMELINE))[:3]:
        records.delete(key)
    assert len(store.timeline(10)[0]) == 2
    assert store.reindex() == 3 and store.reindex() == 0
    assert [e.run_id for e in store.timeline(10)[0]] == [f"r{i:04d}" for i in range(4, -1, -1)]


@pytest.mark.parametrize("cursor", ["nonsense", "W10", "WyJ4IiwgLTFd", "bm90IGpzb24"])
def test_a_cursor_it_did_not_give_is_an_input_error(cursor: str):
    store = RunStore(MemoryRecordStore())
    store.create(run(1))
    with pytest.raises(InputError):
        store.timeline(5, cursor)


@settings(max_examples=200, deadline=None)
@given(dataset=st.text(max_size=300), error=st.none() | st.text(max_size=600), model=st.none() | st.text(max_size=80))
def test_any_text_survives_the_ascii_metadata(dataset: str, error: str | None, model: str | None):
    r = Run("r1", RunState.FAILED, dataset, [], "Phi-4", model=model, last_error=error)
    meta = _meta(r)
    assert meta["v"] == META_VERSION
    for value in meta.values():
        assert value.isascii() and value == value.strip() and "\n" not in value  # a legal header value
    entry = RunEntry.from_meta("r1", meta)
    assert entry is not None and entry.dataset == dataset and entry.model == (model or None)
    assert entry.last_error == ((error if len(error) <= 300 else error[:299] + "…") if error else None)


def test_a_record_from_before_the_timeline_is_read_by_the_index():
    records = MemoryRecordStore()
    old = run(1, RunState.DEPLOYED)
    records.create("runs/r0001.json", old.to_json(), {"state": "DEPLOYED", "updated": old.updated_at})
    store = RunStore(records)
    [entry] = store.index()
    assert entry.run_id == "r0001" and entry.dataset == old.dataset and entry.state == RunState.DEPLOYED


@settings(max_examples=60, deadline=None)
@given(states=st.lists(st.sampled_from([RunState.RECEIVED, RunState.REJECTED, RunState.DEPLOYED]), max_size=60),
       limit=st.integers(1, 25), wanted=st.sets(st.sampled_from([RunState.REJECTED, RunState.DEPLOYED])))
def test_paging_with_any_limit_and_filter_shows_each_run_once_newest_first(states, limit, wanted):
    store = RunStore(MemoryRecordStore())
    for i, state in enumerate(states):
        store.create(run(i, state))
    keep = (lambda e: e.state in wanted) if wanted else None
    expected = [f"r{i:04d}" for i in range(len(states) - 1, -1, -1) if not wanted or states[i] in wanted]
    assert everything(store, limit, keep) == expected


def test_ensure_timeline_reindexes_once_per_store_then_reads_nothing():
    records = Counting()
    old = run(3, RunState.DEPLOYED)
    records.create("runs/r0003.json", old.to_json(), {"state": "DEPLOYED", "updated": old.updated_at})
    store = RunStore(records)
    assert store.ensure_timeline() == 1 and [e.run_id for e in store.timeline(5)[0]] == ["r0003"]
    records.reads = 0
    assert store.ensure_timeline() == 0 and records.reads == 0  # this process knows
    assert RunStore(records).ensure_timeline() == 0 and records.reads == 1  # another one reads the marker
