"""Run webhooks (a manifest's notify_url): one queued, signed delivery per transition, retried with back-off."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from shared.errors import SignatureError
from shared.records import MemoryRecordStore
from shared.runs import Run, RunState
from shared.services import Services
from shared.settings import Settings
from shared.webhooks import signing
from shared.webhooks.delivery import Deliverer
from shared.webhooks.runs import deliver
from tests.support.fake_queue import FakeQueue

SECRET = "whsec_dHVuZWZsb3ctdW5pdC10ZXN0cw=="
URL = "http://127.0.0.1:9/hooks"


def world(answers: list[int], **env: str) -> tuple[Services, FakeQueue, list[httpx.Request]]:
    settings = Settings.from_env({"TUNEFLOW_STORAGE_CONNECTION": "x", "TUNEFLOW_EMULATOR_CONNECTION": "/x",
                                  "TUNEFLOW_WEBHOOK_SECRET": SECRET, "TUNEFLOW_WEBHOOK_ALLOW_HTTP": "true",
                                  "TUNEFLOW_WEBHOOK_ALLOW_PRIVATE": "true", "TUNEFLOW_WEBHOOK_ATTEMPTS": "3",
                                  **env})
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answers.pop(0) if answers else 200)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    queue = FakeQueue()
    svc = Services(settings, records=MemoryRecordStore(), work=queue, deliverer=Deliverer(settings, lambda: client))
    return svc, queue, seen


def new_run(svc: Services, notify_url: str | None = URL) -> Run:
    run = Run("3f2a9c0d1e5b7a8c6d4e", RunState.RECEIVED, "datasets/team/", ["team/train.jsonl"], "Phi-4",
              notify_url=notify_url, tags={"team": "a"})
    svc.runs.create(run)
    svc.runs.advance(run.run_id, RunState.VALIDATING)
    return svc.runs.advance(run.run_id, RunState.SUBMITTED, job_name="tuneflow-x")


def test_each_transition_queues_one_webhook_and_each_is_delivered_signed():
    svc, queue, seen = world([])
    run = new_run(svc)
    messages = [m for m, _ in queue.sent]
    assert messages == [{"kind": "notify", "run": run.run_id, "index": i, "attempt": 1} for i in range(3)]
    for message in messages:
        assert asyncio.run(deliver(svc, message)) == "delivered"
    bodies = [orjson.loads(r.content) for r in seen]
    assert [b["type"] for b in bodies] == ["tuneflow.run.received", "tuneflow.run.validating",
                                           "tuneflow.run.submitted"]
    assert {b["subject"] for b in bodies} == {f"runs/{run.run_id}"} and bodies[2]["data"]["tags"] == {"team": "a"}
    for request in seen:
        headers = {k.lower(): v for k, v in request.headers.items()}
        signing.verify(SECRET, headers, request.content)
        assert headers["webhook-id"].startswith(run.run_id + "-")
    with pytest.raises(SignatureError):  # a tampered body does not verify
        signing.verify(SECRET, {k.lower(): v for k, v in seen[0].headers.items()}, seen[0].content + b" ")


def test_a_failed_delivery_is_retried_after_the_back_off_then_given_up():
    svc, queue, seen = world([500, 503, 502])
    run = new_run(svc)
    queue.sent.clear()
    first: dict[str, Any] = {"kind": "notify", "run": run.run_id, "index": 2, "attempt": 1}
    assert asyncio.run(deliver(svc, first)) == "retrying"
    (second, delay), = queue.sent
    assert second == {**first, "attempt": 2} and delay == 5.0
    assert asyncio.run(deliver(svc, second)) == "retrying"
    third, delay = queue.sent[-1]
    assert third["attempt"] == 3 and delay == 10.0
    assert asyncio.run(deliver(svc, third)) == "gave_up"
    assert len(queue.sent) == 2 and len(seen) == 3


def test_no_notify_url_or_no_secret_means_no_webhooks_and_a_queue_outage_never_breaks_the_run():
    svc, queue, _ = world([])
    new_run(svc, notify_url=None)
    assert queue.sent == []
    svc, queue, _ = world([], TUNEFLOW_WEBHOOK_SECRET="")
    new_run(svc)
    assert queue.sent == []
    svc, queue, _ = world([])
    queue.error = RuntimeError("queue down")
    assert new_run(svc).state == RunState.SUBMITTED  # recorded; the webhook is logged as not queued


@pytest.mark.parametrize("message", [
    {"kind": "notify", "run": "../x", "index": 0}, {"kind": "notify", "run": "3f2a9c0d1e5b7a8c6d4e", "index": "0"},
    {"kind": "notify", "run": "3f2a9c0d1e5b7a8c6d4e", "index": 99}, {"kind": "notify", "run": "nosuchrun", "index": 0},
])
def test_malformed_or_stale_messages_are_ignored(message):
    svc, _, seen = world([])
    new_run(svc)
    assert asyncio.run(deliver(svc, message)) == "ignored" and seen == []
