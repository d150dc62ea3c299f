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
