"""Ingest through real Azurite: drop → validate → REJECTED with report, or SUBMITTED with the job."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import uuid

import pytest
import responses

from shared.handlers import on_blob_created
from shared.runs import RunState
from shared.services import Services
from shared.settings import Settings
from tests.support.datasets import invalid_jsonl, valid_jsonl
from tests.support.events import blob_created, function_event
from tests.support.fake_arm import FakeArm
from tests.support.submission import fake_clients

pytestmark = pytest.mark.integration


@pytest.fixture
def env(azurite, reference_dir):
    suffix = uuid.uuid4().hex[:8]
    settings = Settings.from_env({
        "TUNEFLOW_STORAGE_CONNECTION": azurite.connection_string,
        "TUNEFLOW_DROP_CONTAINER": f"drop-{suffix}", "TUNEFLOW_OUTPUT_CONTAINER": f"out-{suffix}",
        "TUNEFLOW_SUBSCRIPTION_ID": "sub", "TUNEFLOW_RESOURCE_GROUP": "rg", "TUNEFLOW_WORKSPACE": "ws",
        "TUNEFLOW_BASE_MODEL": "Phi-3-mini-4k-instruct",  # the model the fake registry holds
        "TUNEFLOW_SETTLE_SECONDS": "0",  # folders are read at once (test_manifest_ingest covers the window)
    })
    arm = FakeArm()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(re.compile(r"http://127\.0\.0\.1.*"))  # Azurite is real
        arm.install(mock)
        svc = Services(settings, ml=fake_clients(reference_dir / "azureml" / "chat_completion_pipeline.spec.yaml"))
        drop = svc.container(settings.drop_container)
        output = svc.container(settings.output_container)
        yield svc, drop, output, arm


def drop_and_deliver(svc, drop, name: str, data: bytes, api: str = "PutBlob"):
    etag = drop.get_blob_client(name).upload_blob(data, overwrite=True)["etag"]
    return on_blob_created(function_event(blob_created(drop.container_name, name, api=api, etag=etag)), svc)


def test_valid_dataset_is_submitted_with_the_right_job_body(env):
    svc, drop, output, arm = env
    result = drop_and_deliver(svc, drop, "chat/good.jsonl", valid_jsonl(60))
    assert result.outcome == "submitted", result.reason
    run = svc.runs.get(result.run.run_id)
    assert run.state == RunState.SUBMITTED and run.job_name == f"tuneflow-{run.run_id}"
    assert [t.state for t in run.history] == ["RECEIVED", "VALIDATING", "SUBMITTED"]
    (body,) = arm.puts("/jobs/")
    inputs = body["properties"]["jobs"]["chat_completion_pipeline"]["inputs"]
    assert inputs["train_file_path"]["uri"] == f"azureml://datastores/tuneflow/paths/{run.train_path}"
    assert body["properties"]["tags"]["tuneflow.dataset"] == f"{drop.container_name}/chat/good.jsonl"
    # the prepared split is in the output container, every row accounted for, deterministic
    train = output.download_blob(run.train_path).readall().splitlines()
    test = output.download_blob(run.test_path).readall().splitlines()
    assert len(train) + len(test) == 60 and train and test
    report = json.loads(output.download_blob(run.report_path).readall())
    assert report["valid"] is True


def test_invalid_dataset_is_rejected_with_a_report_and_nothing_submitted(env):
    svc, drop, output, arm = env
    result = drop_and_deliver(svc, drop, "bad.jsonl", invalid_jsonl(40))
    assert result.outcome == "rejected"
    run = svc.runs.get(result.run.run_id)
    assert run.state == RunState.REJECTED and run.job_name is None
    report = json.loads(output.download_blob(run.report_path).readall())
    assert report["valid"] is False
    text = json.dumps(report)
    assert "invalid_json" in text and '"line": 6' in text
    assert not arm.jobs
    assert not list(output.list_blobs(name_starts_with="prepared/"))  # nothing committed


def test_same_event_twice_and_concurrently_yields_one_run_and_one_job(env):
    svc, drop, output, arm = env
    data = valid_jsonl(30)
    etag = drop.get_blob_client("twice.jsonl").upload_blob(data)["etag"]
    event = function_event(blob_created(drop.container_name, "twice.jsonl", etag=etag))
    results = []
    threads = [threading.Thread(target=lambda: results.append(on_blob_created(event, svc))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3  # no delivery raised
    results.append(on_blob_created(event, svc))
    assert len({r.run.run_id for r in results}) == 1
    assert len(arm.jobs) == 1
    assert [r.outcome for r in results].count("submitted") >= 1
    # losers cleaned up their prepared copies: exactly one train + one test remain
    assert len(list(output.list_blobs(name_starts_with="prepared/"))) == 2


def test_reupload_of_the_same_bytes_converges_on_the_same_run(env):
    svc, drop, _, arm = env
    first = drop_and_deliver(svc, drop, "a.jsonl", valid_jsonl(30))
    second = drop_and_deliver(svc, drop, "copy-of-a.jsonl", valid_jsonl(30), api="CopyBlob")
    assert first.run.run_id == second.run.run_id and second.outcome == "duplicate"
    assert len(arm.jobs) == 1


def test_folder_dataset_waits_for_both_files(env):
    svc, drop, _, arm = env
    assert drop_and_deliver(svc, drop, "exp1/train.jsonl", valid_jsonl(40)).outcome == "waiting"
    result = drop_and_deliver(svc, drop, "exp1/test.jsonl", valid_jsonl(10, start=100))
    assert result.outcome == "submitted"
    assert result.run.sources == ["exp1/train.jsonl", "exp1/test.jsonl"]
    assert len(arm.jobs) == 1


@pytest.mark.parametrize(("event_change", "reason"), [
    ({"api": "PutBlockList", "container": "elsewhere"}, "not the drop container"),
    ({"api": "SetBlobMetadata"}, "does not create blob content"),
    ({"name": "notes.txt"}, "not a dataset file"),
])
def test_events_that_are_not_for_ingest_are_ignored(env, event_change, reason):
    svc, drop, _, _arm = env
    raw = blob_created(event_change.get("container", drop.container_name), event_change.get("name", "x.jsonl"),
                       api=event_change.get("api", "PutBlob"))
    result = on_blob_created(function_event(raw), svc)
    assert result.outcome == "ignored" and reason in result.reason


def test_malformed_event_and_deleted_blob_are_acknowledged(env):
    svc, drop, _, _ = env
    raw = blob_created(drop.container_name, "x.jsonl")
    del raw["data"]["api"]
    assert "data.api is missing" in on_blob_created(function_event(raw), svc).reason
    gone = on_blob_created(function_event(blob_created(drop.container_name, "never-uploaded.jsonl")), svc)
    assert gone.outcome == "ignored" and "deleted before it could be read" in gone.reason


def test_azure_ml_refusal_fails_the_run_with_its_message(env):
    svc, drop, _, arm = env
    arm.compute_state = "Failed"
    result = drop_and_deliver(svc, drop, "refused.jsonl", valid_jsonl(30))
    assert result.outcome == "failed"
    run = svc.runs.get(result.run.run_id)
    assert run.state == RunState.FAILED and "is in a failed state" in run.last_error


def test_transient_azure_ml_errors_raise_for_redelivery_then_resume(env):
    svc, drop, _, arm = env
    arm.job_status = 503
    data = valid_jsonl(30)
    etag = drop.get_blob_client("flaky.jsonl").upload_blob(data)["etag"]
    event = function_event(blob_created(drop.container_name, "flaky.jsonl", etag=etag))
    with pytest.raises(Exception, match="503"):
        on_blob_created(event, svc)
    arm.job_status = None
    result = on_blob_created(event, svc)  # Event Grid's redelivery
    assert result.outcome == "submitted" and len(arm.jobs) == 1


def test_oversized_blob_is_rejected_without_being_downloaded(env):
    svc, drop, output, arm = env
    tight = Services(dataclasses.replace(svc.settings, max_file_mb=1), ml=svc.ml)
    data = valid_jsonl(12000)  # ~2 MiB
    assert len(data) > 1024 * 1024
    result = drop_and_deliver(tight, drop, "huge.jsonl", data)
    assert result.outcome == "rejected"
    report = json.loads(output.download_blob(result.run.report_path).readall())
    assert "file_too_large" in report["errors"]
    assert report["files"]["train"]["complete"] is False
    other = drop_and_deliver(tight, drop, "huge-too.jsonl", valid_jsonl(12001))
    assert other.outcome == "rejected" and other.run.run_id != result.run.run_id
    assert not arm.jobs


def test_parquet_datasets_stream_from_blob_storage(env):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.support.datasets import row

    svc, drop, output, _ = env
    rows = [row(i) for i in range(50)]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer, row_group_size=10)
    result = drop_and_deliver(svc, drop, "ultrachat.parquet", buffer.getvalue())
    assert result.outcome == "submitted", result.reason
    run = svc.runs.get(result.run.run_id)
    lines = output.download_blob(run.train_path).readall().splitlines()
    lines += output.download_blob(run.test_path).readall().splitlines()
    assert sorted(json.loads(line)["prompt_id"] for line in lines) == sorted(r["prompt_id"] for r in rows)



def test_a_drop_whose_event_was_lost_is_swept_exactly_once(env):
    svc, drop, _, arm = env
    eager = Services(dataclasses.replace(svc.settings, sweep_after_minutes=1e-6), ml=svc.ml)
    drop.get_blob_client("lost/data.jsonl").upload_blob(valid_jsonl(40, start=1000 * (3 + 1)), overwrite=True)  # no event
    delivered = drop_and_deliver(eager, drop, "seen.jsonl", valid_jsonl(40, start=1000 * (4 + 1)))
    assert delivered.outcome == "submitted"
    assert eager.ingestor.sweep() == 1  # only the blob no event brought
    (run,) = [r for r in eager.runs.list() if r.dataset.endswith("lost/data.jsonl")]
    assert run.state == RunState.SUBMITTED and len(arm.jobs) == 2
    assert eager.ingestor.sweep() == 0  # the ledger remembers it
    late = on_blob_created(function_event(blob_created(drop.container_name, "lost/data.jsonl",
                                                       etag=drop.get_blob_client("lost/data.jsonl")
                                                       .get_blob_properties().etag)), eager)
    assert late.outcome == "duplicate" and len(arm.jobs) == 2  # the late event converges on the same run
    drop.get_blob_client("lost/data.jsonl").upload_blob(valid_jsonl(41, start=1000 * (5 + 1)), overwrite=True)  # new bytes
    assert eager.ingestor.sweep() == 1 and len(arm.jobs) == 3


def test_the_sweep_waits_for_events_that_may_still_come_and_is_bounded(env):
    svc, drop, _, _ = env
    for i in range(3):
        drop.get_blob_client(f"recent-{i}.jsonl").upload_blob(valid_jsonl(20, start=1000 * (i + 1)), overwrite=True)
    assert svc.ingestor.sweep() == 0  # younger than TUNEFLOW_SWEEP_AFTER_MINUTES (5): their events may be late
    bounded = Services(dataclasses.replace(svc.settings, sweep_after_minutes=1e-6, sweep_max=2), ml=svc.ml)
    assert bounded.ingestor.sweep() == 2 and bounded.ingestor.sweep() == 1 and bounded.ingestor.sweep() == 0
    off = Services(dataclasses.replace(svc.settings, sweep_after_minutes=0), ml=svc.ml)
    drop.get_blob_client("later.jsonl").upload_blob(valid_jsonl(20, start=1000 * (9 + 1)), overwrite=True)
    assert off.ingestor.sweep() == 0


def test_one_ingest_is_one_trace_that_names_its_run(env):
    from tests.support.telemetry import exporter, spans

    exporter().clear()
    svc, drop, _, _ = env
    result = drop_and_deliver(svc, drop, "traced/good.jsonl", valid_jsonl(40))
    assert result.outcome == "submitted"
    (ingest,) = spans("tuneflow.ingest")
    (submit,) = spans("tuneflow.submit")
    assert ingest.attributes is not None and submit.attributes is not None
    assert ingest.attributes["tuneflow.run_id"] == submit.attributes["tuneflow.run_id"] == result.run.run_id
    assert submit.context.trace_id == ingest.context.trace_id and submit.parent is not None
    assert submit.parent.span_id == ingest.context.span_id  # the submission happens inside the ingest
    assert ingest.attributes["tuneflow.outcome"] == "submitted"


def test_a_run_canceled_before_its_submission_is_not_submitted(env):
    from shared.runs import Run

    svc, _, _, arm = env
    run = Run("c0ffee0000000000beef", RunState.CANCELED, "datasets/x.jsonl", ["x.jsonl"], "Phi-3-mini-4k-instruct",
              train_path="prepared/a/train.jsonl", test_path="prepared/a/test.jsonl")
    svc.runs.create(run)
    result = svc.ingestor.resume(run)  # what an ingest still validating does once it is done
    assert result.outcome == "duplicate" and "canceled" in result.reason
    assert not arm.jobs and svc.runs.get(run.run_id).state == RunState.CANCELED
