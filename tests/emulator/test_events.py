"""Event Grid delivery: handshake, one event per POST, retries, dead letters, duplicates, order, payloads."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import helpers
from tests.emulator.conftest import Admin
from tests.emulator.webhook import Policy, Webhook, start_webhook

pytestmark = [pytest.mark.emulator, pytest.mark.integration]

RUN_STATUS = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
BLOB_CREATED = "Microsoft.Storage.BlobCreated"


def _topic_client(emu: Admin, key: str | None = None) -> Any:
    from azure.core.credentials import AzureKeyCredential
    from azure.eventgrid import EventGridPublisherClient

    return EventGridPublisherClient(
        emu.conn["eventgrid_topic_endpoint"],
        AzureKeyCredential(key or emu.conn["eventgrid_topic_key"]),
        connection_verify=emu.conn["ca_bundle"],
    )


def _send_custom(emu: Admin, n: int, event_type: str = "tuneflow.test.ping") -> list[str]:
    from azure.core.messaging import CloudEvent

    ids = [str(uuid.uuid4()) for _ in range(n)]
    client = _topic_client(emu)
    for i, event_id in enumerate(ids):
        client.send([CloudEvent(source="/tuneflow/tests", type=event_type, data={"i": i}, id=event_id, subject=f"runs/{i}")])
    return ids


def test_handshake_then_one_event_per_post(emu: Admin, webhook: Webhook) -> None:
    emu.subscribe("hs", endpoint=webhook.url, included_event_types=["tuneflow.test.ping"])
    ids = _send_custom(emu, 2)
    events = webhook.wait_for(lambda ev: len(ev) >= 2)
    first = webhook.received[0]
    assert first.headers["aeg-event-type"] == "SubscriptionValidation"
    validation = first.body[0]
    assert validation["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert validation["data"]["validationCode"] and validation["data"]["validationUrl"]
    notes = webhook.notifications()
    assert all(isinstance(n.body, list) and len(n.body) == 1 for n in notes)
    assert all(n.headers["aeg-subscription-name"] == "HS" for n in notes)
    assert all(n.headers["content-type"].startswith("application/json") for n in notes)
    # A CloudEvent sent to the topic reaches an Event Grid schema subscriber converted to that schema.
    assert [e["id"] for e in events] == ids
    assert events[0]["eventType"] == "tuneflow.test.ping" and events[0]["data"] == {"i": 0}
    assert {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"} <= set(events[0])
    # Handshake happens once per subscription.
    assert sum(1 for r in webhook.received if r.headers.get("aeg-event-type") == "SubscriptionValidation") == 1
    recorded = [r["event"]["id"] for r in emu.get("/topic/events")["value"]]
    assert set(ids) <= set(recorded)


def test_failed_handshake_delivers_nothing_and_dead_letters(emu: Admin) -> None:
    hook = start_webhook(Policy(validate=False))
    try:
        emu.subscribe("nohs", endpoint=hook.url, included_event_types=["tuneflow.test.nohs"])
        (event_id,) = _send_custom(emu, 1, "tuneflow.test.nohs")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            dead = [d for d in emu.get("/events/dead-letters")["value"] if d["event"]["id"] == event_id]
            if dead:
                break
            time.sleep(0.1)
        assert dead and dead[0]["attempts"] == 4 and dead[0]["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
        assert hook.notifications(ok_only=False) == []
        assert all(r.headers["aeg-event-type"] == "SubscriptionValidation" for r in hook.received)
    finally:
        hook.stop()


def test_retries_with_backoff_until_2xx(emu: Admin) -> None:
    hook = start_webhook(Policy(fail_first=2))
    try:
        emu.subscribe("retry", endpoint=hook.url, included_event_types=["tuneflow.test.retry"])
        (event_id,) = _send_custom(emu, 1, "tuneflow.test.retry")
        hook.wait_for(lambda ev: any(e["id"] == event_id for e in ev))
        attempts = hook.notifications(ok_only=False)
        assert [a.headers["x-answered"] for a in attempts] == ["500", "500", "200"]
        assert [a.headers["aeg-delivery-count"] for a in attempts] == ["0", "1", "2"]
        gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.09 and gaps[1] >= 0.19  # back-off 0.1 s, then doubled
        log = emu.get("/events/deliveries", params={"subscription": "retry"})["retry"]
        assert [(r["attempt"], r["ok"]) for r in log] == [(1, False), (2, False), (3, True)]
    finally:
        hook.stop()


def test_dead_letter_after_bounded_attempts(emu: Admin) -> None:
    hook = start_webhook(Policy(always_fail=True))
    try:
        emu.subscribe("dead", endpoint=hook.url, included_event_types=["tuneflow.test.dead"])
        (event_id,) = _send_custom(emu, 1, "tuneflow.test.dead")
        deadline = time.monotonic() + 15
        dead: list[Any] = []
        while time.monotonic() < deadline and not dead:
            dead = [d for d in emu.get("/events/dead-letters")["value"] if d["event"]["id"] == event_id]
            time.sleep(0.1)
        assert dead and dead[0]["subscription"] == "dead" and dead[0]["lastStatus"] == 500
        assert len(hook.notifications(ok_only=False)) == 4
    finally:
        hook.stop()


def test_duplicate_delivery_fault(emu: Admin, webhook: Webhook) -> None:
    emu.faults(event_duplicates=1)
    emu.subscribe("dup", endpoint=webhook.url, included_event_types=["tuneflow.test.dup"])
    ids = _send_custom(emu, 2, "tuneflow.test.dup")
    events = webhook.wait_for(lambda ev: len(ev) >= 4)
    assert sorted(e["id"] for e in events) == sorted(ids * 2)


def test_out_of_order_delivery_fault(emu: Admin, webhook: Webhook) -> None:
    emu.faults(event_out_of_order=True, event_reorder_window_s=0.5)
    emu.subscribe("ooo", endpoint=webhook.url, included_event_types=["tuneflow.test.ooo"])
    ids = _send_custom(emu, 3, "tuneflow.test.ooo")
    events = webhook.wait_for(lambda ev: len(ev) >= 3)
    assert [e["id"] for e in events] == list(reversed(ids))


def test_cloudevents_subscriber_gets_options_handshake_and_cloudevents(emu: Admin, webhook: Webhook) -> None:
    emu.subscribe(
        "ce", endpoint=webhook.url, included_event_types=["tuneflow.test.ce"], event_delivery_schema="CloudEventSchemaV1_0"
    )
    (event_id,) = _send_custom(emu, 1, "tuneflow.test.ce")
    events = webhook.wait_for(lambda ev: len(ev) >= 1)
    assert webhook.received[0].method == "OPTIONS"
    note = webhook.notifications()[0]
    assert note.headers["content-type"].startswith("application/cloudevents+json")
    assert events[0]["id"] == event_id and events[0]["specversion"] == "1.0" and events[0]["type"] == "tuneflow.test.ce"


def test_topic_rejects_wrong_key_and_bad_events(emu: Admin) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.core.messaging import CloudEvent

    with pytest.raises(HttpResponseError) as info:
        _topic_client(emu, key="d3Jvbmc=").send([CloudEvent(source="/x", type="t", data={})])
    assert info.value.status_code == 401
    r = emu.http.post(
        emu.conn["eventgrid_topic_endpoint"],
        headers={"aeg-sas-key": emu.conn["eventgrid_topic_key"]},
        json=[{"id": "1", "subject": "s"}],
    )
    assert r.status_code == 400 and "missing required properties" in r.json()["error"]["message"]
    # Event Grid schema and a SAS token (generate_sas) are accepted too.
    import datetime as dt

    from azure.core.credentials import AzureSasCredential
    from azure.eventgrid import EventGridEvent, EventGridPublisherClient, generate_sas

    token = generate_sas(
        emu.conn["eventgrid_topic_endpoint"], emu.conn["eventgrid_topic_key"], dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    )
    client = EventGridPublisherClient(
        emu.conn["eventgrid_topic_endpoint"], AzureSasCredential(token), connection_verify=emu.conn["ca_bundle"]
    )
    client.send([EventGridEvent(subject="runs/1", event_type="tuneflow.test.eg", data={"ok": True}, data_version="1.0")])
    assert any(e["schema"] == "EventGridSchema" and e["event"]["eventType"] == "tuneflow.test.eg"
               for e in emu.get("/topic/events")["value"])


def test_run_events_for_pipeline_and_steps(emu: Admin, webhook: Webhook, reference_dir: Path) -> None:
    emu.subscribe("runs", endpoint=webhook.url, included_event_types=[RUN_STATUS, RUN_COMPLETED])
    job, r = helpers.submit_job(emu, tags={"tuneflow.run": "abc"})
    assert r.status_code == 201, r.text
    emu.wait_job(job)
    events = webhook.wait_for(
        lambda ev: any(e["eventType"] == RUN_COMPLETED and e["data"]["runId"] == job for e in ev)
    )
    mine = [e for e in events if e["data"]["experimentName"] == "tuneflow-tests"]
    parent = [e for e in mine if e["data"]["runId"] == job]
    assert [e["data"]["runStatus"] for e in parent if e["eventType"] == RUN_STATUS] == ["NotStarted", "Running", "Completed"]
    completed = [e for e in parent if e["eventType"] == RUN_COMPLETED]
    assert len(completed) == 1 and "runStatus" not in completed[0]["data"]
    reference = json.loads((reference_dir / "events" / "ml_RunStatusChanged_eventgrid.json").read_text())[0]
    assert set(parent[0]["data"]) == set(reference["data"])
    assert set(parent[0]) == set(reference)
    assert parent[0]["subject"] == f"experiments/{parent[0]['data']['experimentId']}/runs/{job}"
    assert parent[0]["topic"].endswith(f"/workspaces/{emu.conn['workspace_name']}")
    assert parent[0]["data"]["runTags"] == {"tuneflow.run": "abc"}
    steps = [e for e in mine if e["data"]["runId"] != job]
    assert {e["data"]["runProperties"]["azureml.nodeid"] for e in steps} == {
        "ft_nlp_common_validation", "chat_completion_model_import", "chat_completion_datapreprocess",
        "chat_completion_finetune", "ft_nlp_model_converter",
    }
    assert all(e["data"]["runType"] == "azureml.StepRun" for e in steps)
    assert all(e["data"]["runProperties"]["azureml.pipelinerunid"] == job for e in steps)
    assert sum(1 for e in steps if e["eventType"] == RUN_COMPLETED) == 5


def test_model_registered_event(emu: Admin, webhook: Webhook, reference_dir: Path) -> None:
    emu.subscribe("models", endpoint=webhook.url, included_event_types=[MODEL_REGISTERED])
    name, version = helpers.trained_model(emu, tags={"tuneflow.run": "r1"})
    events = webhook.wait_for(lambda ev: any(e["subject"] == f"models/{name}:{version}" for e in ev))
    event = next(e for e in events if e["subject"] == f"models/{name}:{version}")
    reference = json.loads((reference_dir / "events" / "ml_ModelRegistered_sdktest_eventgrid.json").read_text())[0]
    assert set(event["data"]) == set(reference["data"])
    assert event["data"] == {
        "modelName": name, "modelVersion": version, "modelTags": {"tuneflow.run": "r1"},
        "modelProperties": {"origin": "test"},
    }


def test_blob_created_for_single_and_block_uploads(emu: Admin, webhook: Webhook, reference_dir: Path) -> None:
    container = f"drop{uuid.uuid4().hex[:8]}"
    conn = emu.conn["storage_connection_string"]
    helpers.upload(conn, container, "seed.txt", b"x")  # exists before the subscription: never reported
    emu.subscribe(
        "blobs", endpoint=webhook.url, included_event_types=[BLOB_CREATED],
        subject_begins_with=f"/blobServices/default/containers/{container}/",
    )
    emu.post("/blobs/scan")  # baseline the container now (the watcher would within 0.2 s)
    helpers.upload(conn, container, "small.jsonl", b'{"a": 1}\n')
    big = b"x" * (300 * 1024)
    helpers.upload(conn, container, "dir/big.jsonl", big, max_single_put_size=64 * 1024, max_block_size=64 * 1024)
    events = webhook.wait_for(lambda ev: len(ev) >= 2)
    by_name = {e["subject"].rsplit("/blobs/", 1)[1]: e for e in events}
    assert set(by_name) == {"small.jsonl", "dir/big.jsonl"}
    small, large = by_name["small.jsonl"], by_name["dir/big.jsonl"]
    assert small["data"]["api"] == "PutBlob" and large["data"]["api"] == "PutBlockList"
    assert small["subject"] == f"/blobServices/default/containers/{container}/blobs/small.jsonl"
    assert small["topic"].endswith("/providers/Microsoft.Storage/storageAccounts/devstoreaccount1")
    assert small["data"]["url"].endswith(f"/devstoreaccount1/{container}/small.jsonl")
    assert small["data"]["contentLength"] == 9 and large["data"]["contentLength"] == len(big)
    assert small["data"]["blobType"] == "BlockBlob"
    # the current documentation's example: the same keys, accessTier included
    reference = json.loads((reference_dir / "events" / "storage_BlobCreated_current_eventgrid.json").read_text())[0]
    assert set(small["data"]) == set(reference["data"]) and small["data"]["accessTier"] == "Default"
    assert set(small) == set(reference)
    for key, value in reference["data"].items():
        assert type(small["data"][key]) is type(value), key
    seq = [int(e["data"]["sequencer"]) for e in events]
    assert len(set(seq)) == 2
    # Re-uploading the same name with new content is a new BlobCreated (new ETag).
    helpers.upload(conn, container, "small.jsonl", b'{"a": 2}\n')
    webhook.wait_for(lambda ev: len(ev) >= 3)


def test_events_config_file(emulator_factory: Any, tmp_path: Path, webhook: Webhook) -> None:
    from emulator.process import EmulatorStartError

    config = tmp_path / "events.json"
    config.write_text(json.dumps([
        {"name": "from-file", "endpoint": webhook.url, "included_event_types": ["tuneflow.test.file"]},
    ]))
    handle = emulator_factory(tmp_path / "with-config", events_config=config)
    emu = Admin(handle)
    try:
        assert [s["name"] for s in emu.get("/subscriptions")["value"]] == ["from-file"]
        (event_id,) = _send_custom(emu, 1, "tuneflow.test.file")
        assert webhook.wait_for(lambda ev: len(ev) == 1)[0]["id"] == event_id
    finally:
        emu.close()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "x", "endpoint": "ftp://nowhere"}]))
    with pytest.raises(EmulatorStartError, match="'endpoint' must be an http"):
        emulator_factory(tmp_path / "bad-config", events_config=bad)


# -- Azure's delivery rules (../shared/reference/events/DELIVERY.md), on the emulator's scaled clock ----------


def _dead_letter(emu: Admin, event_id: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [d for d in emu.get("/events/dead-letters")["value"] if d["event"]["id"] == event_id]
        if dead:
            return dead[0]
        time.sleep(0.05)
    raise AssertionError(f"{event_id} was not dead-lettered in {timeout} s")


def test_the_retry_schedule_is_azures_scaled(emulator_factory: Any, tmp_path: Path) -> None:
    # time scale 0.02: 10 s, 30 s, 1 min become 0.2 s, 0.6 s, 1.2 s
    emu = Admin(emulator_factory(tmp_path / "sched", extra_args=["--time-scale", "0.02", "--delivery-attempts", "30"]))
    hook = start_webhook(Policy(fail_first=3))
    try:
        emu.subscribe("sched", endpoint=hook.url, included_event_types=["tuneflow.test.sched"])
        (event_id,) = _send_custom(emu, 1, "tuneflow.test.sched")
        hook.wait_for(lambda ev: any(e["id"] == event_id for e in ev), timeout=20)
        attempts = hook.notifications(ok_only=False)
        gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
        assert len(gaps) == 3
        for gap, azure_s in zip(gaps, (10, 30, 60), strict=True):
            assert azure_s * 0.02 * 0.95 <= gap <= azure_s * 0.02 + 0.5, gaps
    finally:
        hook.stop()
        emu.close()


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_answers_event_grid_never_retries_dead_letter_at_once(emu: Admin, status: int) -> None:
    hook = start_webhook(Policy(always_fail=True, fail_status=status))
    try:
        emu.subscribe(f"never{status}", endpoint=hook.url, included_event_types=[f"tuneflow.test.never{status}"])
        (event_id,) = _send_custom(emu, 1, f"tuneflow.test.never{status}")
        dead = _dead_letter(emu, event_id)
        assert dead["attempts"] == 1 and dead["lastStatus"] == status
        assert dead["deadLetterReason"] == "UndeliverableDueToClientError"
        time.sleep(0.5)  # longer than the first retry (0.1 s): none came
        assert len(hook.notifications(ok_only=False)) == 1
    finally:
        hook.stop()


def test_other_failures_are_retried(emu: Admin) -> None:
    hook = start_webhook(Policy(fail_first=1, fail_status=404))  # 404 is not on the never-retried list
    try:
        emu.subscribe("r404", endpoint=hook.url, included_event_types=["tuneflow.test.r404"])
        (event_id,) = _send_custom(emu, 1, "tuneflow.test.r404")
        hook.wait_for(lambda ev: any(e["id"] == event_id for e in ev))
        assert [a.headers["x-answered"] for a in hook.notifications(ok_only=False)] == ["404", "200"]
    finally:
        hook.stop()


def test_an_event_past_its_time_to_live_is_dead_lettered(emu: Admin) -> None:
    # 1 minute of Azure's time at scale 0.01 is 0.6 s: the schedule (0.1, 0.3, 0.6 s…) outlives it before
    # the subscription's 30 attempts
    hook = start_webhook(Policy(always_fail=True))
    try:
        emu.subscribe("ttl", endpoint=hook.url, included_event_types=["tuneflow.test.ttl"],
                      max_delivery_attempts=30, event_time_to_live_minutes=1)
        (event_id,) = _send_custom(emu, 1, "tuneflow.test.ttl")
        dead = _dead_letter(emu, event_id)
        assert dead["deadLetterReason"] == "TimeToLiveExceeded" and 1 < dead["attempts"] < 30
    finally:
        hook.stop()


def test_no_answer_within_the_window_is_a_failure_and_the_event_comes_again(emulator_factory: Any,
                                                                             tmp_path: Path) -> None:
    emu = Admin(emulator_factory(tmp_path / "window", extra_args=["--delivery-timeout", "0.5"]))
    hook = start_webhook(Policy(delay_s=1.0))  # answers 200, but after the window closed
    try:
        emu.subscribe("slow", endpoint=hook.url, included_event_types=["tuneflow.test.slow"])
        (event_id,) = _send_custom(emu, 1, "tuneflow.test.slow")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(hook.notifications(ok_only=False)) < 2:
            time.sleep(0.05)
        first, second = hook.notifications(ok_only=False)[:2]
        assert first.body[0]["id"] == second.body[0]["id"] == event_id
        assert second.at - first.at < 1.0  # retried while the first attempt was still being answered
        log = emu.get("/events/deliveries", params={"subscription": "slow"})["slow"]
        assert log[0]["ok"] is False and "no answer within 0.5 s" in log[0]["detail"]
    finally:
        hook.stop()
        emu.close()


def test_dead_letters_are_written_where_azure_writes_them(emu: Admin, azurite: Any) -> None:
    from azure.storage.blob import BlobServiceClient

    hook = start_webhook(Policy(always_fail=True, fail_status=400))
    try:
        emu.subscribe("Lost-Events", endpoint=hook.url, included_event_types=["tuneflow.test.dl"],
                      dead_letter_container="deadletters")
        (event_id,) = _send_custom(emu, 1, "tuneflow.test.dl")
        _dead_letter(emu, event_id)
        container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
            "deadletters")
        deadline = time.monotonic() + 10
        names: list[str] = []
        while time.monotonic() < deadline and not names:
            names = [b.name for b in container.list_blobs()] if container.exists() else []
            time.sleep(0.05)
        (name,) = names
        now = time.gmtime()
        assert name.startswith(f"LOST-EVENTS/{now.tm_year}/{now.tm_mon}/{now.tm_mday}/")  # not zero-padded
        (letter,) = json.loads(container.download_blob(name).readall())
        assert letter["id"] == event_id and letter["deadLetterReason"] == "UndeliverableDueToClientError"
        assert letter["deliveryAttempts"] == 1 and letter["lastHttpStatusCode"] == 400
    finally:
        hook.stop()
