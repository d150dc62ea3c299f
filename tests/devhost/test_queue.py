"""Queue trigger and queue output on a real Azurite."""

from __future__ import annotations

import base64
import contextlib
import time
import uuid
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devhost.process import Handle

from .conftest import Records

pytestmark = pytest.mark.integration


def _queue(azurite: Any, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(azurite.connection_string, name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def _wait_for_message(client: QueueClient, predicate: Any, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for m in client.peek_messages(max_messages=32):
            if predicate(m.content):
                return str(m.content)
        assert time.monotonic() < deadline, "expected message never arrived"
        time.sleep(0.1)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_base64_message_runs_the_function_and_writes_the_output(
    devhost: Handle, azurite: Any, records: Records
) -> None:
    token = f"job-{uuid.uuid4().hex[:8]}"
    work = _queue(azurite, "devhost-work")
    work.send_message(_b64(token))
    rows = records.wait_for(lambda rs: any(x["body"] == token for x in rs), "work")
    row = next(x for x in rows if x["body"] == token)
    assert row["dequeue_count"] == 1
    assert row["id"] and row["insertion_time"]
    done = _queue(azurite, "devhost-done")
    # the output binding writes base64, as the host does by default
    _wait_for_message(done, lambda c: c == _b64(token.upper()))
    deadline = time.monotonic() + 5
    while any(
        token in base64.b64decode(m.content).decode("utf-8", "replace") for m in work.peek_messages(max_messages=32)
    ):
        assert time.monotonic() < deadline, "the processed message was not deleted"
        time.sleep(0.1)


def test_plain_text_message_is_accepted(devhost: Handle, azurite: Any, records: Records) -> None:
    token = f"plain text {uuid.uuid4().hex[:8]}!"
    _queue(azurite, "devhost-work").send_message(token)
    records.wait_for(lambda rs: any(x["body"] == token for x in rs), "work")


def test_failing_message_is_retried_then_moved_to_poison(devhost: Handle, azurite: Any, records: Records) -> None:
    token = f"fail-{uuid.uuid4().hex[:8]}"
    _queue(azurite, "devhost-work").send_message(_b64(token))
    rows = records.wait_for(lambda rs: sum(x["body"] == token for x in rs) >= 5, "work", timeout=20)
    counts = sorted(x["dequeue_count"] for x in rows if x["body"] == token)
    assert counts == [1, 2, 3, 4, 5]
    poison = _queue(azurite, "devhost-work-poison")
    assert _wait_for_message(poison, lambda c: c == _b64(token)) == _b64(token)  # original text, unchanged
    time.sleep(1.0)  # no sixth attempt once it is poisoned
    assert sum(x["body"] == token for x in records.all("work")) == 5


def test_http_function_with_queue_output(client: httpx.Client, devhost: Handle, azurite: Any) -> None:
    token = f"from-http-{uuid.uuid4().hex[:8]}"
    r = client.post("/api/enqueue", content=token.encode())
    assert r.status_code == 202 and r.text == "queued"
    _wait_for_message(_queue(azurite, "devhost-done"), lambda c: c == _b64(token))


def test_admin_invoke_delivers_input_as_the_message_body(
    client: httpx.Client, devhost: Handle, records: Records
) -> None:
    token = f"manual-{uuid.uuid4().hex[:8]}"
    r = client.post("/admin/functions/work", json={"input": token}, headers={"x-functions-key": devhost.master_key})
    assert r.status_code == 202
    records.wait_for(lambda rs: any(x["body"] == token for x in rs), "work")
