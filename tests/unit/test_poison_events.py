"""Events that can never be processed are refused by the typed models (``EventError``) and acknowledged by
their handler with one warning line naming the event; they never raise to the host, so Event Grid does not
retry a poison event for a day. Each case below answered 500 before."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from devhost.bindings import event_grid_value
from shared.errors import EventError
from shared.events import Envelope, parse_blob_created, parse_model_registered, parse_run_event
from shared.handlers import on_blob_created, on_lifecycle_event
from shared.records import MemoryRecordStore
from shared.runs import RunStore
from shared.services import Services
from shared.settings import Settings
from tests.support.events import load_event
from tests.support.indexed import function_specs

SETTINGS = {"TUNEFLOW_STORAGE_CONNECTION": "UseDevelopmentStorage=true", "TUNEFLOW_EMULATOR_CONNECTION": "/nowhere"}


def services() -> Services:
    """Nothing behind it but an empty run store: a poison event must not need (or touch) anything else."""
    return Services(Settings.from_env(SETTINGS), runs=RunStore(MemoryRecordStore()))


def as_delivered(function: str, event: dict[str, Any]) -> Any:
    """What the worker hands ``function`` for ``event``: the converters devhost shares with the worker."""
    return event_grid_value(function_specs()[function], event)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def blob_event(**envelope: Any) -> dict[str, Any]:
    event = load_event("blob_created_putblob")
    event.update(envelope)
    return event


# ------------------------------------------------------------------------------------------ envelopes


@pytest.mark.parametrize("subject", [5, ["/blobServices/default/containers/datasets/blobs/a.jsonl"], {"a": 1}])
def test_a_subject_that_is_not_a_string_is_acknowledged(subject: Any, caplog: pytest.LogCaptureFixture) -> None:
    event = blob_event(id="evt-subject", subject=subject)
    with caplog.at_level(logging.WARNING):
        result = on_blob_created(as_delivered("ingest", event), services())
    assert result.outcome == "ignored" and "subject must be a string" in result.reason
    assert len(warnings(caplog)) == 1 and "'evt-subject'" in warnings(caplog)[0]


@pytest.mark.parametrize("when", ["not a time", "2024-13-45T00:00:00Z", "2024-01-01T00:00:00", 1718000000, ["x"],
                                  "２０２４-01-01T00:00:00Z"])
@pytest.mark.parametrize("function", ["ingest", "lifecycle"])
def test_an_event_time_that_is_not_a_time_is_acknowledged(function: str, when: Any,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    event = blob_event(id="evt-time", eventTime=when) if function == "ingest" else {
        **load_event("run_status_running_camel"), "id": "evt-time", "eventTime": when}
    delivered = as_delivered(function, event)  # the worker's EventGridEvent converter raised here
    with caplog.at_level(logging.WARNING):
        if function == "ingest":
            assert on_blob_created(delivered, services()).outcome == "ignored"
        else:
            assert on_lifecycle_event(delivered, services()) == "ignored"
    assert len(warnings(caplog)) == 1
    assert "'evt-time'" in warnings(caplog)[0] and "eventTime is not an RFC 3339 time" in warnings(caplog)[0]


def test_times_event_grid_sends_are_read() -> None:
    for when in ("2026-11-24T15:20:01.2345678Z", "2019-10-17T22:23:57.5350054+00:00", "2026-01-01T00:00:00Z"):
        assert Envelope.from_json(json.dumps(blob_event(eventTime=when))).id


def test_cloud_events_time_is_checked_too() -> None:
    raw = load_event("blob_created_putblob")
    cloud = {"specversion": "1.0", "id": "ce-1", "source": raw["topic"], "type": raw["eventType"],
             "subject": raw["subject"], "time": "yesterday", "data": raw["data"]}
    with pytest.raises(EventError, match="time is not an RFC 3339 time"):
        Envelope.from_json(json.dumps(cloud))
    cloud["time"] = "2026-11-24T15:20:01.2345678Z"
    assert parse_blob_created(Envelope.from_json(json.dumps(cloud))).blob_name == "chat/ultrachat_small.jsonl"


@pytest.mark.parametrize(("raw", "why"), [
    (b"[1, 2", "not valid JSON"), (b"[]", "not a JSON object"), (b'{"eventType": "x", "data": {}}', "no id"),
    (b'{"id": 7, "eventType": "x", "data": {}}', "no id"), (b'{"id": "e", "eventType": ["x"], "data": {}}', "eventType"),
    (b'{"id": "e", "eventType": "x", "data": "text"}', "data is not a JSON object"),
    (b'{"id": "e", "eventType": "x", "topic": 3, "data": {}}', "topic/source must be a string"),
])
def test_malformed_envelopes_name_the_problem(raw: bytes, why: str) -> None:
    with pytest.raises(EventError, match=why):
        Envelope.from_json(raw)


def test_an_id_with_a_newline_cannot_forge_a_second_log_line(caplog: pytest.LogCaptureFixture) -> None:
    event = blob_event(id="evt\nWARNING forged line", subject=7)
    with caplog.at_level(logging.WARNING):
        on_blob_created(json.dumps(event), services())
    assert len(warnings(caplog)) == 1 and "\n" not in warnings(caplog)[0]


# ------------------------------------------------------------------------------------------ ML tags


@pytest.mark.parametrize("bad", ["../runs/x", "abc\n", "r\u00e9", "x" * 65, "", "a/b"])
def test_run_tags_naming_something_that_is_not_a_run_id_are_acknowledged(bad: str,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    event = load_event("run_status_failed_pascal")
    event["id"] = "evt-run-tag"
    event["data"]["RunTags"] = {"tuneflow.run_id": bad}
    svc = services()
    with caplog.at_level(logging.WARNING):
        assert on_lifecycle_event(json.dumps(event), svc) == "ignored"
    assert len(warnings(caplog)) == 1 and "'evt-run-tag'" in warnings(caplog)[0]
    assert "is not a run id" in warnings(caplog)[0]
    assert svc.runs.index() == []


@pytest.mark.parametrize("bad", ["../x", "abc\n", 1.5, ["3f2a9c0d1e5b7a8c6d4e"]])
def test_model_tags_naming_something_that_is_not_a_run_id_are_acknowledged(bad: Any,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    event = load_event("model_registered_camel")
    event["id"] = "evt-model-tag"
    event["data"]["modelTags"] = {"tuneflow.run_id": bad, "tuneflow.auto_deploy": "true"}
    svc = services()
    with caplog.at_level(logging.WARNING):
        assert on_lifecycle_event(json.dumps(event), svc) == "ignored"
    assert len(warnings(caplog)) == 1 and "'evt-model-tag'" in warnings(caplog)[0]
    assert svc.runs.index() == []


def test_tags_of_the_wrong_shape_are_refused() -> None:
    event = load_event("run_status_running_camel")
    event["data"]["runTags"] = ["tuneflow.run_id"]
    with pytest.raises(EventError, match="runTags must be an object"):
        parse_run_event(Envelope.from_dict(event))
    event["data"]["runTags"] = {"tuneflow.run_id": {"nested": True}}
    with pytest.raises(EventError, match="must be a string"):
        parse_run_event(Envelope.from_dict(event))


@pytest.mark.parametrize(("key", "value"), [("modelName", "../../datastores/x"), ("modelName", "m\n"),
                                            ("modelVersion", "1/2"), ("modelVersion", True), ("modelName", 5)])
def test_model_names_and_versions_become_path_segments_so_only_names_pass(key: str, value: Any) -> None:
    event = load_event("model_registered_camel")
    event["data"][key] = value
    with pytest.raises(EventError, match=key):
        parse_model_registered(Envelope.from_dict(event))


def test_run_ids_that_are_not_job_names_are_refused() -> None:
    event = load_event("run_completed_camel")
    event["data"]["runId"] = "tuneflow-abc/../other"
    with pytest.raises(EventError, match="runId"):
        parse_run_event(Envelope.from_dict(event))


def test_the_documented_payloads_still_parse() -> None:
    for name in ("run_status_running_camel", "run_status_failed_pascal", "run_completed_camel",
                 "run_completed_child_step", "run_completed_other_experiment"):
        assert parse_run_event(Envelope.from_json(json.dumps(load_event(name)))).run_id
    for name in ("model_registered_camel", "model_registered_pascal_int_version", "model_registered_unrelated"):
        assert parse_model_registered(Envelope.from_json(json.dumps(load_event(name)))).model_version


# ------------------------------------------------------------------------------------------ blob subjects


@pytest.mark.parametrize(("name", "why"), [
    ("../tuneflow/reports/x.json", "'.' or '..' segment"),
    ("chat/../../tuneflow/runs/r.json", "'.' or '..' segment"),
    ("./a.jsonl", "'.' or '..' segment"),
    ("chat/..", "'.' or '..' segment"),
    ("chat//a.jsonl", "empty segment"),
    ("/a.jsonl", "empty segment"),
    ("chat/", "empty segment"),
    ("chat\\..\\a.jsonl", "backslash"),
    ("a\n.jsonl", "control character"),
    ("a\x00.jsonl", "control character"),
    ("a\x85.jsonl", "control character"),
    ("x" * 1025, "longer than 1024"),
])
def test_blob_names_are_never_normalised_a_traversing_subject_is_refused(
        name: str, why: str, caplog: pytest.LogCaptureFixture) -> None:
    event = blob_event(id="evt-dots", subject=f"/blobServices/default/containers/datasets/blobs/{name}")
    with caplog.at_level(logging.WARNING):
        result = on_blob_created(as_delivered("ingest", event), services())
    assert result.outcome == "ignored" and why in result.reason and "not normalised" in result.reason
    assert len(warnings(caplog)) == 1 and "'evt-dots'" in warnings(caplog)[0]


@pytest.mark.parametrize("subject", [
    "/blobServices/default/containers/Data/blobs/a.jsonl",       # container names are lower case
    "/blobServices/default/containers/d/blobs/a.jsonl",          # 3-63 characters
    "/blobServices/default/containers/../blobs/a.jsonl",
    "/blobServices/default/containers/datasets/blobs/",
    "/elsewhere/containers/datasets/blobs/a.jsonl",
])
def test_subjects_that_do_not_name_a_container_and_blob_are_refused(subject: str) -> None:
    with pytest.raises(EventError, match="subject"):
        parse_blob_created(Envelope.from_dict(blob_event(subject=subject)))


def test_ordinary_blob_names_pass_as_they_are() -> None:
    for name in ("chat/ultrachat small (v2).jsonl", "a..b.jsonl", ".hidden/x.jsonl", "d\u00e9j\u00e0/vu.jsonl"):
        parsed = parse_blob_created(Envelope.from_dict(
            blob_event(subject=f"/blobServices/default/containers/datasets/blobs/{name}")))
        assert (parsed.container, parsed.blob_name) == ("datasets", name)


@pytest.mark.parametrize("length", ["\u00b2", "-1", True, [1], "1_0"])
def test_a_content_length_that_is_not_a_byte_count_is_refused(length: Any) -> None:
    event = blob_event()
    event["data"]["contentLength"] = length
    with pytest.raises(EventError, match="contentLength"):
        parse_blob_created(Envelope.from_dict(event))


def test_blob_fields_of_the_wrong_type_are_refused() -> None:
    for key, value in (("api", ["PutBlob"]), ("url", 5), ("eTag", {"a": 1})):
        event = blob_event()
        event["data"][key] = value
        with pytest.raises(EventError, match=key):
            parse_blob_created(Envelope.from_dict(event))
