"""Event Grid-sourced blob trigger: BlobCreated for a real Azurite blob runs the function."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from devhost.process import Handle

from .conftest import Records

pytestmark = pytest.mark.integration


def _upload(azurite: Any, container: str, name: str, content: bytes) -> str:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    with contextlib.suppress(ResourceExistsError):
        service.create_container(container)
    client = service.get_blob_client(container, name)
    client.upload_blob(content, overwrite=True)
    return str(client.url)


def _blob_created(url: str) -> list[dict[str, Any]]:
    container = url.split("/")[4]
    blob = url.split("/", 5)[5]
    return [
        {
            "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
            "subject": f"/blobServices/default/containers/{container}/blobs/{blob}",
            "eventType": "Microsoft.Storage.BlobCreated",
            "id": str(uuid.uuid4()),
            "eventTime": "2026-01-01T00:00:00Z",
            "dataVersion": "",
            "metadataVersion": "1",
            "data": {
                "api": "PutBlob",
                "contentType": "text/plain",
                "contentLength": 5,
                "blobType": "BlockBlob",
                "url": url,
                "eTag": "0x8D00000000000",
                "sequencer": "0",
            },
        }
    ]


def test_handshake_and_key(client: httpx.Client, devhost: Handle) -> None:
    validation = [
        {
            "id": "v",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "data": {"validationCode": "abc"},
            "subject": "",
            "eventTime": "2026-01-01T00:00:00Z",
            "dataVersion": "2",
        }
    ]
    r = client.post(devhost.blobs_url("on_blob"), json=validation, headers={"aeg-event-type": "SubscriptionValidation"})
    assert r.json() == {"validationResponse": "abc"}
    unkeyed = f"{devhost.url}/runtime/webhooks/blobs?functionName=Host.Functions.on_blob"
    assert (
        client.post(unkeyed, json=validation, headers={"aeg-event-type": "SubscriptionValidation"}).status_code == 401
    )
    eg_key = f"{unkeyed}&code={devhost.system_key('eventgrid_extension')}"
    assert client.post(eg_key, json=validation, headers={"aeg-event-type": "SubscriptionValidation"}).status_code == 401


def test_blob_created_runs_the_function_with_the_blob(
    client: httpx.Client, devhost: Handle, azurite: Any, records: Records
) -> None:
    name = f"data/{uuid.uuid4().hex}.jsonl"
    url = _upload(azurite, "devhost-in", name, b"hello blob")
    r = client.post(devhost.blobs_url("on_blob"), json=_blob_created(url), headers={"aeg-event-type": "Notification"})
    assert r.status_code == 202  # the host queues blob events and answers at once
    rows = records.wait_for(lambda rs: any(x["name"] == f"devhost-in/{name}" for x in rs), "on_blob")
    row = next(x for x in rows if x["name"] == f"devhost-in/{name}")
    assert row["content"] == "hello blob"
    assert row["length"] == len(b"hello blob")
    assert row["uri"] == url


def test_blob_outside_the_path_pattern_is_skipped(
    client: httpx.Client, devhost: Handle, azurite: Any, records: Records
) -> None:
    name = f"{uuid.uuid4().hex}.txt"
    url = _upload(azurite, "other-container", name, b"not for us")
    r = client.post(devhost.blobs_url("on_blob"), json=_blob_created(url), headers={"aeg-event-type": "Notification"})
    assert r.status_code == 202
    deadline = time.monotonic() + 5
    while f"other-container/{name} does not match path" not in devhost.log_text():
        assert time.monotonic() < deadline, "devhost did not report the skipped blob"
        time.sleep(0.05)
    assert not any(x["name"] == f"other-container/{name}" for x in records.all("on_blob"))


def test_failing_blob_is_retried_then_poisoned(
    client: httpx.Client, devhost: Handle, azurite: Any, records: Records
) -> None:
    name = f"{uuid.uuid4().hex}.txt"
    url = _upload(azurite, "devhost-in", name, b"fail")
    r = client.post(devhost.blobs_url("on_blob"), json=_blob_created(url), headers={"aeg-event-type": "Notification"})
    assert r.status_code == 202
    records.wait_for(lambda rs: sum(x["name"] == f"devhost-in/{name}" for x in rs) >= 5, "on_blob")
    poison = QueueClient.from_connection_string(azurite.connection_string, "webjobs-blobtrigger-poison")
    deadline = time.monotonic() + 10
    while True:
        bodies = [json.loads(m.content) for m in poison.peek_messages(max_messages=32)]
        if any(b["BlobName"] == name for b in bodies):
            break
        assert time.monotonic() < deadline, f"no poison record for {name}: {bodies}"
        time.sleep(0.1)
    assert sum(x["name"] == f"devhost-in/{name}" for x in records.all("on_blob")) == 5
