"""Manifests through real Azurite (and its real queue): folders settle, manifests shape the run or reject it."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid

import orjson
import pytest
import responses

from shared.handlers import on_blob_created, on_work
from shared.manifest import METADATA_KEY
from shared.runs import RunState
from shared.services import Services
from shared.settings import Settings
from tests.support.datasets import valid_jsonl
from tests.support.events import blob_created, function_event
from tests.support.fake_arm import FakeArm
from tests.support.submission import fake_clients

pytestmark = pytest.mark.integration


def make_env(azurite, reference_dir, **extra: str):
    suffix = uuid.uuid4().hex[:8]
    return Settings.from_env({
        "TUNEFLOW_STORAGE_CONNECTION": azurite.connection_string,
        "TUNEFLOW_DROP_CONTAINER": f"drop-{suffix}", "TUNEFLOW_OUTPUT_CONTAINER": f"out-{suffix}",
        "TUNEFLOW_WORK_QUEUE": f"work-{suffix}",
        "TUNEFLOW_SUBSCRIPTION_ID": "sub", "TUNEFLOW_RESOURCE_GROUP": "rg", "TUNEFLOW_WORKSPACE": "ws",
        "TUNEFLOW_BASE_MODEL": "Phi-3-mini-4k-instruct",  # the model the fake registry holds
        "TUNEFLOW_SETTLE_SECONDS": "0",
        "TUNEFLOW_ALLOWED_INSTANCE_TYPES": "Standard_NC24ads_A100_v4,Standard_NC48ads_A100_v4",
        **extra,
    })


@pytest.fixture
def world(azurite, reference_dir):
    def build(**extra: str):
        settings = make_env(azurite, reference_dir, **extra)
        svc = Services(settings, ml=fake_clients(reference_dir / "azureml" / "chat_completion_pipeline.spec.yaml"))
        return svc, svc.container(settings.drop_container)

    arm = FakeArm()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(re.compile(r"http://127\.0\.0\.1.*"))  # Azurite is real
        arm.install(mock)
        yield build, arm


def drop(svc, container, name: str, data: bytes, metadata: dict[str, str] | None = None):
    etag = container.get_blob_client(name).upload_blob(data, overwrite=True, metadata=metadata)["etag"]
    return on_blob_created(function_event(blob_created(container.container_name, name, etag=etag)), svc)


def job_inputs(body) -> dict:
    return body["properties"]["jobs"]["chat_completion_pipeline"]["inputs"]


def test_a_folder_manifest_shapes_the_job_the_model_and_the_run(world):
    build, arm = world
    svc, container = build()
    manifest = {"train": "chats.jsonl", "finetune": {"learning_rate": 3e-4, "num_train_epochs": 2},
                "suffix": "support", "endpoint": "support-chat", "deployment": {"instance_count": 2},
                "tags": {"team": "support"}, "idle_teardown_minutes": 15}
    assert drop(svc, container, "support/tuneflow.json", json.dumps(manifest).encode()).outcome == "waiting"
    result = drop(svc, container, "support/chats.jsonl", valid_jsonl(40))
    assert result.outcome == "submitted", result.reason
    run = svc.runs.get(result.run.run_id)
    assert run.manifest == f"{container.container_name}/support/tuneflow.json" and run.tags == {"team": "support"}
    assert run.config["endpoint"] == "support-chat" and run.config["instance_count"] == 2
    assert run.config["model_name"] == "Phi-3-mini-4k-instruct-ft-support"
    (body,) = arm.puts("/jobs/")
    inputs = job_inputs(body)
    assert inputs["learning_rate"]["value"] in (3e-4, "0.0003") and str(inputs["num_train_epochs"]["value"]) == "2"
    assert body["properties"]["tags"]["team"] == "support"
    assert body["properties"]["tags"]["tuneflow.run_id"] == run.run_id
    # the same data without the manifest is another run; the same manifest again is the same one
    plain = drop(svc, container, "plain.jsonl", valid_jsonl(40))
    assert plain.run.run_id != run.run_id
    again = drop(svc, container, "support/tuneflow.json", json.dumps(manifest).encode())
    assert again.outcome == "duplicate" and again.run.run_id == run.run_id
    assert len(arm.jobs) == 2


def test_a_bad_manifest_is_rejected_naming_every_key_and_nothing_is_read_or_submitted(world):
    build, arm = world
    svc, container = build()
    drop(svc, container, "bad/train.jsonl", valid_jsonl(40))
    manifest: dict[str, object] = {"compte": "serverless", "num_nodes": "two",
                "deployment": {"instance_type": "Standard_ND96asr_v4"}}
    result = drop(svc, container, "bad/tuneflow.json", json.dumps(manifest).encode())
    assert result.outcome == "rejected"
    run = svc.runs.get(result.run.run_id)
    assert run.state == RunState.REJECTED and run.job_name is None and run.train_path is None
    report = orjson.loads(svc.container(svc.settings.output_container).download_blob(run.report_path).readall())
    assert report["problems"] == ["compte: unknown key (did you mean 'compute'?)",
                                  'num_nodes: expected an integer, got "two"']
    # once the keys are right, the guardrail on the instance type is what is left
    manifest = {"compute": "serverless", "num_nodes": 1, "deployment": {"instance_type": "Standard_ND96asr_v4"}}
    result = drop(svc, container, "bad/tuneflow.json", json.dumps(manifest).encode())
    assert result.outcome == "rejected"
    assert result.run.last_error.endswith("deployment.instance_type: 'Standard_ND96asr_v4' is not allowed here "
                                          "(TUNEFLOW_ALLOWED_INSTANCE_TYPES: Standard_NC24ads_A100_v4, "
                                          "Standard_NC48ads_A100_v4)")
    assert not arm.jobs and not arm.puts("/jobs/")


def test_choices_azure_refuses_are_rejected_with_their_key_path_before_submission(world):
    build, arm = world
    svc, container = build()
    manifest = {"finetune": {"learning_rate": "fast", "lora_rank": 8}, "compute": "serverless",
                "instance_type": "Standard_NC48ads_A100_v4", "base_model": "Phi-3-mini-4k-instruct"}
    result = drop(svc, container, "live/tuneflow.json", json.dumps(manifest).encode())
    assert result.outcome == "waiting"  # no train file yet
    result = drop(svc, container, "live/train.jsonl", valid_jsonl(40))
    assert result.outcome == "rejected", result.reason
    text = result.run.last_error
    assert 'finetune.learning_rate: expected a number, got "fast"' in text
    assert "finetune.lora_rank: not an input of the pipeline component (did you mean 'lora_r'?)" in text
    missing = drop(svc, container, "other/tuneflow.json", json.dumps({"base_model": "Llama-9"}).encode())
    assert missing.outcome == "waiting"
    refused = drop(svc, container, "other/train.jsonl", valid_jsonl(40))
    assert "base_model: base model 'Llama-9' in registry 'azureml' was not found" in refused.run.last_error
    assert not arm.jobs


def test_a_single_file_carries_its_manifest_in_blob_metadata(world):
    build, _ = world
    svc, container = build()
    manifest = json.dumps({"endpoint": "meta-chat", "tags": {"source": "metadata"}, "deploy": "never"})
    result = drop(svc, container, "single.jsonl", valid_jsonl(40), {METADATA_KEY: manifest})
    assert result.outcome == "submitted", result.reason
    run = svc.runs.get(result.run.run_id)
    assert run.config["endpoint"] == "meta-chat" and run.deploy == "never" and run.tags == {"source": "metadata"}
    bad = drop(svc, container, "single-bad.jsonl", valid_jsonl(40), {METADATA_KEY: '{"deploy": "sometimes"'})
    assert bad.outcome == "rejected" and "malformed JSON at line 1" in bad.run.last_error


def work_messages(svc) -> list[str]:
    """What the work queue holds right now (received, then deleted: this test is its consumer)."""
    queue = svc.connections.queue(svc.settings.work_queue)
    found = []
    for message in queue.receive_messages(messages_per_page=32, visibility_timeout=30):
        found.append(message.content)
        queue.delete_message(message)
    return found


def test_a_manifest_uploaded_just_after_its_data_still_makes_exactly_one_run_with_it(world):
    build, arm = world
    svc, container = build(TUNEFLOW_SETTLE_SECONDS="2")
    started = time.monotonic()
    assert drop(svc, container, "late/train.jsonl", valid_jsonl(40)).outcome == "waiting"
    assert drop(svc, container, "late/test.jsonl", valid_jsonl(10, start=100)).outcome == "waiting"
    time.sleep(1.0)
    manifest = json.dumps({"finetune": {"learning_rate": 1e-4}, "tags": {"late": "yes"}}).encode()
    assert drop(svc, container, "late/tuneflow.json", manifest).outcome == "waiting"
    assert work_messages(svc) == []  # each settle message is delayed by the window
    outcomes: list[str] = []
    while time.monotonic() - started < 20 and not arm.jobs:
        for text in work_messages(svc):
            outcomes.append(asyncio.run(on_work(text, svc)))
        time.sleep(0.3)
    time.sleep(2.5)  # any message still in flight
    for text in work_messages(svc):
        outcomes.append(asyncio.run(on_work(text, svc)))
    assert outcomes.count("submitted") == 1, outcomes
    assert set(outcomes) <= {"submitted", "duplicate", "waiting"}
    (run,) = [r for r in svc.runs.list() if r.dataset.endswith("late/")]
    assert run.tags == {"late": "yes"} and run.config["finetune"] == {"learning_rate": 1e-4}
    assert len(arm.jobs) == 1


def test_malformed_work_messages_are_dropped_not_retried(world):
    build, _ = world
    svc, _ = build()
    for text in ("not json", '{"kind": "settle"}', '{"kind": "settle", "folder": "no-slash"}', '{"kind": 3}',
                 '{"kind": "notify", "run": "../x", "index": 0}', base64.b64encode(b"x").decode()):
        assert asyncio.run(on_work(text, svc)) == "ignored"


def test_a_lost_settle_message_is_recovered_by_the_sweep_exactly_once(world):
    build, arm = world
    svc, container = build(TUNEFLOW_SETTLE_SECONDS="1", TUNEFLOW_SWEEP_AFTER_MINUTES="0.01")
    assert drop(svc, container, "lost/train.jsonl", valid_jsonl(40)).outcome == "waiting"
    assert drop(svc, container, "lost/test.jsonl", valid_jsonl(10, start=100)).outcome == "waiting"
    time.sleep(1.5)
    assert len(work_messages(svc)) == 2  # received and deleted: as if the host had lost them
    assert svc.ingestor.sweep() == 2  # neither file was noted: both are scheduled again
    time.sleep(1.5)
    outcomes = [asyncio.run(on_work(text, svc)) for text in work_messages(svc)]
    assert sorted(outcomes) == ["duplicate", "submitted"] and len(arm.jobs) == 1
    assert svc.ingestor.sweep() == 0  # settled: every file of the folder is in the ledger now
