"""Run records in real Blob Storage (Azurite): metadata written with each version, listings that
read no record."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from shared.records import BlobRecordStore, Record
from shared.runs import Run, RunState, RunStore

pytestmark = pytest.mark.integration


class CountingReads(BlobRecordStore):
    def __init__(self, container: Any) -> None:
        super().__init__(container)
        self.reads = 0

    def read(self, key: str) -> Record | None:
        self.reads += 1
        return super().read(key)


@pytest.fixture
def box(azurite: Any) -> Any:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container(f"runs-{uuid.uuid4().hex[:8]}")
    yield container
    container.delete_container()


def test_state_and_update_time_travel_with_each_version(box: Any) -> None:
    records = CountingReads(box)
    store = RunStore(records)
    for i in range(12):
        store.create(Run(run_id=f"r{i:02d}", state=RunState.RECEIVED, dataset="d", sources=[], base_model="m"))
        if i % 3 == 0:
            store.advance(f"r{i:02d}", RunState.VALIDATING)
            store.advance(f"r{i:02d}", RunState.REJECTED, note="bad rows")
    props = box.get_blob_client("runs/r03.json").get_blob_properties()
    assert props.metadata["state"] == "REJECTED" and props.metadata["updated"] == store.get("r03").updated_at
    records.reads = 0
    rejected = store.index(["REJECTED"])
    assert [e.run_id for e in rejected] == ["r09", "r06", "r03", "r00"] and records.reads == 0
    assert len(store.index()) == 12 and records.reads == 0
    assert [r.run_id for r in store.list(["REJECTED"], limit=2)] == ["r09", "r06"] and records.reads == 2


def test_a_refused_conditional_write_leaves_the_metadata_alone(box: Any) -> None:
    records = BlobRecordStore(box)
    etag = records.create("runs/x.json", b"{}", {"state": "RECEIVED", "updated": "1"})
    assert etag is not None
    assert records.replace("runs/x.json", b"{}", '"stale"', {"state": "FAILED", "updated": "2"}) is None
    assert dict(records.entries("runs/")) == {"runs/x.json": {"state": "RECEIVED", "updated": "1"}}
    assert records.replace("runs/x.json", b"{}", etag, {"state": "FAILED", "updated": "2"}) is not None
    record = records.read("runs/x.json")
    assert record is not None and record.meta == {"state": "FAILED", "updated": "2"}


def test_the_timeline_pages_through_real_continuation_tokens(box: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from shared.errors import InputError

    records = CountingReads(box)
    store = RunStore(records)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    names = ["datasets/équipe/数据 <b>x</b>.jsonl", "datasets/plain.jsonl", "datasets/ with spaces .jsonl "]
    for i in range(25):
        store.create(Run(f"t{i:02d}", RunState.RECEIVED if i % 4 else RunState.REJECTED, names[i % 3], [], "m",
                         created_at=(start + timedelta(minutes=i)).isoformat(timespec="milliseconds")))
    records.reads = 0
    seen, cursor = [], None
    while True:
        entries, cursor = store.timeline(10, cursor)
        seen += entries
        if cursor is None:
            break
    assert [e.run_id for e in seen] == [f"t{i:02d}" for i in range(24, -1, -1)] and records.reads == 0
    assert {e.dataset for e in seen} == set(names)  # percent-encoded in metadata, whole again here
    rejected, cursor = store.timeline(3, None, lambda e: e.state == RunState.REJECTED)
    more, _ = store.timeline(10, cursor, lambda e: e.state == RunState.REJECTED)
    assert [e.run_id for e in rejected + more] == ["t24", "t20", "t16", "t12", "t08", "t04", "t00"]
    # a made-up marker: Azurite lists from it, Azure may refuse it — then the caller hears why, never a 500
    try:
        made_up, _ = store.timeline(5, "WyJydW5zLWJ5LXRpbWUvOSIsMF0")  # ["runs-by-time/9", 0]
        assert all(e.run_id.startswith("t") for e in made_up)
    except InputError:
        pass
