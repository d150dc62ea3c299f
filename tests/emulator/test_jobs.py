"""Pipeline jobs: one training at a time (others queue), cancel, stream, metrics, input validation at run time."""

from __future__ import annotations

import io
import time
import uuid
from contextlib import redirect_stdout
from typing import Any

import pytest

from tests.emulator import helpers
from tests.emulator.conftest import Admin

pytestmark = [pytest.mark.emulator, pytest.mark.integration]


@pytest.fixture
def slow(emulator_factory: Any) -> Any:
    """An emulator whose (fake) training takes ~1.2 s, so jobs can be seen queued and running."""
    handle = emulator_factory(env={"FAKE_TRAINER_SLEEP": "0.3", "FAKE_TRAINER_STEPS": "4"})
    emu = Admin(handle)
    yield emu
    emu.close()


def test_one_training_at_a_time_and_cancel(slow: Admin) -> None:
    ml = slow.handle.ml_client()
    first, _ = helpers.submit_job(slow)
    second, _ = helpers.submit_job(slow)
    third, _ = helpers.submit_job(slow)
    deadline = time.monotonic() + 10
    while slow.get(f"/jobs/{first}")["status"] != "Running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slow.get(f"/jobs/{second}")["status"] == "Queued"
    assert str(ml.jobs.get(third).status) in ("Queued", "JobStatus.QUEUED")
    # Cancel a queued job at once, and the running one (its process is stopped).
    ml.jobs.begin_cancel(third).result()
    assert slow.get(f"/jobs/{third}")["status"] == "Canceled"
    ml.jobs.begin_cancel(first).result()
    doc = slow.get(f"/jobs/{first}")
    assert doc["status"] == "Canceled"
    assert {c["status"] for c in doc["children"]} <= {"Completed", "Canceled"}
    assert slow.wait_job(second)["status"] == "Completed"
    names = [j.name for j in ml.jobs.list()]
    assert {first, second, third} <= set(names)


def test_stream_shows_logs_and_raises_on_failure(slow: Admin) -> None:
    from azure.ai.ml.exceptions import JobException

    ml = slow.handle.ml_client()
    job, _ = helpers.submit_job(slow)
    out = io.StringIO()
    with redirect_stdout(out):
        ml.jobs.stream(job)
    text = out.getvalue()
    assert "Streaming logs/azureml/executionlogs.txt" in text
    assert "[trainer] [finetune] step 4 train_loss" in text and f"Run {job} status: Completed" in text
    slow.faults(fail_next_job="loss is NaN (injected)")
    bad, _ = helpers.submit_job(slow)
    with pytest.raises(JobException, match="loss is NaN"), redirect_stdout(io.StringIO()):
        ml.jobs.stream(bad)


def test_metrics_on_job_and_mlflow_route(emu: Admin) -> None:
    job, _ = helpers.submit_job(emu)
    doc = emu.wait_job(job)
    assert doc["metrics"]["eval_loss"] == 0.9 and doc["metrics"]["base_eval_loss"] == 1.7
    assert [r["step"] for r in doc["metrics"]["train_loss_history"]] == [1, 2, 3]
    body = emu.http.get(emu.ws(f"/jobs/{job}"), params={"api-version": helpers.API}).json()
    assert body["properties"]["properties"]["azureml.metrics.eval_loss"] == "0.9"
    ws_path = emu.ws("").split(emu.conn["base_url"], 1)[1]
    run = emu.http.get(emu.url(f"/mlflow/v1.0{ws_path}/api/2.0/mlflow/runs/get"), params={"run_id": job}).json()["run"]
    assert run["info"]["status"] == "FINISHED"
    assert {m["key"] for m in run["data"]["metrics"]} >= {"train_loss", "eval_loss", "base_eval_loss"}
    history = emu.http.get(
        emu.url(f"/mlflow/v1.0{ws_path}/api/2.0/mlflow/metrics/get-history"), params={"run_id": job, "metric_key": "train_loss"}
    ).json()["metrics"]
    assert [h["value"] for h in history] == [2.0, 1.0, pytest.approx(2 / 3)]


def test_missing_input_file_fails_the_job(emu: Admin) -> None:
    job, r = helpers.submit_job(emu, data_uri=f"azureml://datastores/workspaceblobstore/paths/missing-{uuid.uuid4().hex}")
    assert r.status_code == 201
    doc = emu.wait_job(job)
    assert doc["status"] == "Failed" and "could not be read" in doc["error"]["message"]
    # Azure's validation step checks the data files; later steps never start.
    assert {c["step"]: c["status"] for c in doc["children"]} == {
        "validation": "Failed", "model_import": "Canceled", "preprocess": "Canceled", "finetune": "Canceled",
        "model_converter": "Canceled",
    }


def test_child_runs_via_run_history(emu: Admin) -> None:
    job, _ = helpers.submit_job(emu)
    emu.wait_job(job)
    ws_path = emu.ws("").split(emu.conn["base_url"], 1)[1]
    children = emu.http.get(emu.url(f"/history/v1.0{ws_path}/runs/{job}/children")).json()["value"]
    assert [c["name"] for c in children] == [
        "ft_nlp_common_validation", "chat_completion_model_import", "chat_completion_datapreprocess",
        "chat_completion_finetune", "ft_nlp_model_converter",
    ]
    assert all(c["status"] == "Completed" and c["parentRunId"] == job for c in children)
    details = emu.http.get(emu.url(f"/history/v1.0{ws_path}/runs/{children[3]['runId']}/details")).json()
    log_url = details["logFiles"]["user_logs/std_log.txt"]
    assert "step 3 train_loss" in emu.http.get(log_url).text


def test_the_studio_url_carries_the_tenant_once(emu: Admin, ml: Any) -> None:
    """The SDK appends ``&tid=`` from the caller's token to the job's Studio service endpoint, as Azure's
    endpoint has none of its own."""
    job, _ = helpers.submit_job(emu)
    url = ml.jobs.get(job).studio_url
    assert url.startswith(f"https://ml.azure.com/runs/{job}?wsid=") and url.count("tid=") == 1, url
