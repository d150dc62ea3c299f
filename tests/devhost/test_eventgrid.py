"""The Event Grid trigger webhook: handshake, keys, delivery, failure -> 500."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from devhost.process import Handle, start_devhost

from .conftest import APP, Records

pytestmark = pytest.mark.integration

NOTIFY = {"aeg-event-type": "Notification", "content-type": "application/json"}


def _event(**data: object) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
        "subject": "experiments/e/runs/r",
        "eventType": "Microsoft.MachineLearningServices.RunCompleted",
        "eventTime": "2026-01-02T03:04:05.1234567Z",
        "dataVersion": "2",
        "metadataVersion": "1",
        "data": data,
    }


def test_subscription_validation_handshake(client: httpx.Client, devhost: Handle) -> None:
    validation = [
        {
            "id": "v1",
            "topic": "t",
            "subject": "",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": "2026-01-01T00:00:00Z",
            "dataVersion": "2",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": "https://x"},
        }
    ]
    r = client.post(
        devhost.eventgrid_url("on_event"), json=validation, headers={"aeg-event-type": "SubscriptionValidation"}
    )
    assert r.status_code == 200
    assert r.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


def test_cloudevents_abuse_protection_handshake(client: httpx.Client, devhost: Handle) -> None:
    r = client.options(devhost.eventgrid_url("on_event"), headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert r.status_code == 200
    assert r.headers["webhook-allowed-origin"] == "eventgrid.azure.net"


def test_webhook_needs_the_system_key_or_master_key(client: httpx.Client, devhost: Handle) -> None:
    url = f"{devhost.url}/runtime/webhooks/EventGrid?functionName=on_event"
    body = json.dumps([_event(n=1)])
    assert client.post(url, content=body, headers=NOTIFY).status_code == 401
    assert client.post(url + "&code=nope", content=body, headers=NOTIFY).status_code == 401
    assert client.post(url + f"&code={devhost.function_key}", content=body, headers=NOTIFY).status_code == 401
    assert client.post(url + f"&code={devhost.master_key}", content=body, headers=NOTIFY).status_code == 202


def test_event_grid_schema_batch_is_delivered_event_by_event(
    client: httpx.Client, devhost: Handle, records: Records
) -> None:
    events = [_event(step="a"), _event(step="b")]
    r = client.post(devhost.eventgrid_url("on_event"), json=events, headers={"aeg-event-type": "Notification"})
    assert r.status_code == 202  # what the host's Event Grid extension answers on success
    ids = {e["id"] for e in events}
    rows = records.wait_for(lambda rs: ids <= {x["id"] for x in rs}, "on_event")
    got = {x["id"]: x for x in rows if x["id"] in ids}
    first = got[events[0]["id"]]
    assert first["cls"] == "EventGridEvent"
    assert first["topic"] == events[0]["topic"]
    assert first["subject"] == "experiments/e/runs/r"
    assert first["event_type"] == "Microsoft.MachineLearningServices.RunCompleted"
    assert first["data_version"] == "2"
    assert first["data"] == {"step": "a"}
    assert first["event_time"].startswith("2026-01-02 03:04:05.123456")
    assert got[events[1]["id"]]["data"] == {"step": "b"}


def test_cloudevents_schema_single_event(client: httpx.Client, devhost: Handle, records: Records) -> None:
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tuneflow",
        "type": "tuneflow.run.changed",
        "subject": "runs/1",
        "time": "2026-01-02T03:04:05Z",
        "data": {"state": "RUNNING"},
    }
    r = client.post(
        devhost.eventgrid_url("on_event"),
        json=event,
        headers={"aeg-event-type": "Notification", "content-type": "application/cloudevents+json"},
    )
    assert r.status_code == 202
    rows = records.wait_for(lambda rs: any(x["id"] == event["id"] for x in rs), "on_event")
    row = next(x for x in rows if x["id"] == event["id"])
    # azure-functions 1.26 (the worker's converter) turns a CloudEvents-schema event into func.CloudEvent
    assert row["cls"] == "CloudEvent"
    assert row["data"] == {"state": "RUNNING"}


def test_failing_handler_answers_500_so_event_grid_retries(client: httpx.Client, devhost: Handle) -> None:
    r = client.post(
        devhost.eventgrid_url("on_event"),
        json=[_event(fail=True), _event(ok=True)],
        headers={"aeg-event-type": "Notification"},
    )
    assert r.status_code == 500
    assert "event asked to fail" in r.text


def test_protocol_errors(client: httpx.Client, devhost: Handle) -> None:
    url = devhost.eventgrid_url("on_event")
    assert client.post(url, json=[_event()]).status_code == 400  # no aeg-event-type header
    assert client.post(url, content=b"{not json", headers=NOTIFY).status_code == 400
    r = client.post(devhost.eventgrid_url("nope"), json=[_event()], headers=NOTIFY)
    assert r.status_code == 404
    assert "cannot find function: 'nope'" in r.text
    assert client.post(devhost.eventgrid_url("echo"), json=[_event()], headers=NOTIFY).status_code == 404
    assert client.get(url).status_code == 405


def test_insecure_webhooks_flag_accepts_calls_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # also: explicit settings given to start_devhost beat a variable merely inherited from this process
    monkeypatch.setenv("TICK_SCHEDULE", "not a schedule")
    with start_devhost(APP, settings={"TICK_SCHEDULE": "0 0 0 1 1 *"}, insecure_webhooks=True) as dh:
        assert "tick: timerTrigger schedule=0 0 0 1 1 *" in dh.log_text()
        url = f"{dh.url}/runtime/webhooks/EventGrid?functionName=on_event"
        r = httpx.post(url, json=[_event(n=1)], headers={"aeg-event-type": "Notification"})
        assert r.status_code == 202
        # HTTP functions keep their auth level
        assert httpx.get(f"{dh.url}/api/secure/function").status_code == 401
