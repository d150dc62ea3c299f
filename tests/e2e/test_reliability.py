"""Lost, duplicated, reordered and irrelevant events, and injected failures, through the real stack."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from cli.demo_dataset import generate
from devstack.stack import LocalStack, start_stack
from shared.records import BlobRecordStore
from shared.runs import SETTLED as SETTLED_STATES
from shared.runs import RunState, RunStore
from tests.e2e.conftest import FAST_FINETUNE, run_for, wait_for
from tests.support.events import load_event

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SETTLED = set(SETTLED_STATES)  # every state a run stops in: a wrong ending fails at once, with its error


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work: Path = tmp_path_factory.mktemp("faults")
    # Any candidate that answers is promoted: this module tests delivery and recovery, not the gate (test_gate.py)
    with start_stack(work, {"TUNEFLOW_FINETUNE_PARAMS": FAST_FINETUNE, "TUNEFLOW_GATE_MIN_DELTA": "-1"}) as s:
        yield s


@pytest.fixture(scope="module")
def runs(stack: LocalStack) -> RunStore:
    blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    return RunStore(BlobRecordStore(blobs.get_container_client("tuneflow")))


def upload(stack: LocalStack, name: str, seed: int, rows: int = 120) -> None:
    data = "".join(json.dumps(r) + "\n" for r in generate(rows, seed)).encode()
    BlobServiceClient.from_connection_string(stack.azurite.connection_string).get_blob_client(
        "datasets", name).upload_blob(data, overwrite=True)


def faults(stack: LocalStack, **knobs: object) -> None:
    stack.admin("DELETE", "/faults")
    if knobs:
        stack.admin("POST", "/faults", knobs)


def test_duplicated_and_reordered_events_make_one_job_model_and_deployment(stack, runs):
    faults(stack, event_duplicates=2, event_out_of_order=True)
    upload(stack, "dup.jsonl", seed=11)
    run = wait_for(run_for(runs, "datasets/dup.jsonl", SETTLED), 600, "the run to settle")
    faults(stack)
    assert run.state == RunState.DEPLOYED, run.last_error
    ml = stack.emulator.ml_client()
    assert [j.name for j in ml.jobs.list() if j.name.startswith("tuneflow-")] == [run.job_name]
    name, _ = run.model.rsplit(":", 1)
    assert len(list(ml.models.list(name=name))) == 1
    assert [d.name for d in ml.online_deployments.list("tuneflow-chat")] == [run.deployment]
    history = [t.state for t in run.history]
    assert len(history) == len(set(history))  # every state once


def test_a_forced_job_failure_ends_failed_with_its_message(stack, runs):
    faults(stack, fail_next_job="GPU node lost during finetune (injected)")
    upload(stack, "doomed.jsonl", seed=12)
    run = wait_for(run_for(runs, "datasets/doomed.jsonl", SETTLED), 300, "the run to fail")
    faults(stack)
    assert run.state == RunState.FAILED and "GPU node lost during finetune" in run.last_error


def test_a_forced_deployment_failure_keeps_the_previous_deployment_serving(stack, runs):
    previous = wait_for(run_for(runs, "datasets/dup.jsonl", {RunState.DEPLOYED}), 10, "the deployed run")
    faults(stack, fail_next_deployment="image pull failed (injected)")
    upload(stack, "broken-deploy.jsonl", seed=13)
    run = wait_for(run_for(runs, "datasets/broken-deploy.jsonl", SETTLED), 600, "the run to settle")
    faults(stack)
    assert run.state == RunState.DEPLOY_FAILED and run.last_error, [(t.state.value, t.note) for t in run.history]
    ml = stack.emulator.ml_client()
    endpoint = ml.online_endpoints.get("tuneflow-chat")
    # the SDK lists every deployment in `traffic`; the broken one never got any
    assert {name: share for name, share in endpoint.traffic.items() if share} == {previous.deployment: 100}
    deadline = time.monotonic() + 60  # the broken deployment's deletion is asynchronous
    while [d.name for d in ml.online_deployments.list("tuneflow-chat")] != [previous.deployment]:
        assert time.monotonic() < deadline, "the failed deployment was not deleted"
        time.sleep(1)
    assert runs.get(previous.run_id).state == RunState.DEPLOYED
    key = ml.online_endpoints.get_keys("tuneflow-chat").primary_key
    answer = httpx.post(endpoint.scoring_uri, headers={"Authorization": f"Bearer {key}"}, verify=stack.emulator.ca_bundle,
                        json={"input_data": {"input_string": [{"role": "user", "content": "Capital of Peru?"}]}})
    assert answer.status_code == 200


def test_child_other_experiment_and_unrelated_model_events_change_nothing(stack, runs):
    before = {r.run_id: (r.state, len(r.history)) for r in runs.list()}
    for name in ("run_completed_child_step", "run_completed_other_experiment", "model_registered_unrelated"):
        response = httpx.post(stack.devhost.eventgrid_url("lifecycle"), json=[load_event(name)],
                              headers={"aeg-event-type": "Notification"})
        assert response.status_code < 300, response.text
    after = {r.run_id: (r.state, len(r.history)) for r in runs.list()}
    assert after == before
    ml = stack.emulator.ml_client()
    assert len(list(ml.online_deployments.list("tuneflow-chat"))) == 1


def test_a_drop_made_while_the_host_is_down_is_ingested_exactly_once(stack, runs, tmp_path):
    """The host down 12 s (the outage that used to dead-letter the event after ~7.5 s): Event Grid's schedule
    (10 s, 30 s, 1 min, 5 min at the stack's time scale 0.05: 0.5, 1.5, 3, 15 s) delivers the event again once
    the host is back, and exactly one run comes of it."""
    from devhost.process import start_devhost

    port = int(stack.devhost.url.rsplit(":", 1)[1])
    keys = tmp_path / "keys.json"  # the host's keys outlive it, as in Azure: the subscription's URL carries one
    keys.write_bytes(stack.devhost.keys_path.read_bytes())
    stack.devhost.stop()
    upload(stack, "while-down.jsonl", seed=15)
    time.sleep(12)
    stack.devhost = start_devhost("function_app:app", port=port, settings=stack.settings, keys=keys, timeout=60)
    run = wait_for(run_for(runs, "datasets/while-down.jsonl", SETTLED), 600, "the run of the drop made while down")
    assert run.state == RunState.DEPLOYED, f"{run.state}: {run.last_error} {run.evaluation}"
    assert len([r for r in runs.list() if r.dataset.endswith("/while-down.jsonl")]) == 1
    log = stack.admin("GET", "/events/deliveries?subscription=tuneflow-ingest")["tuneflow-ingest"]
    mine = [d for d in log if str(d["subject"]).endswith("/while-down.jsonl")]
    assert len({d["id"] for d in mine}) == 1  # one event, delivered more than once
    assert not mine[0]["ok"] and mine[-1]["ok"] and len(mine) >= 3
    assert stack.admin("GET", "/events/dead-letters")["value"] == []


def test_cancel_stops_a_running_fine_tune_and_the_run_ends_canceled(stack, runs):
    upload(stack, "to-cancel.jsonl", seed=16)
    run = wait_for(run_for(runs, "datasets/to-cancel.jsonl", {RunState.SUBMITTED, RunState.RUNNING}), 120,
                   "the run to be submitted")
    response = httpx.post(f"{stack.api}/runs/{run.run_id}/cancel", headers={"x-functions-key": stack.devhost.master_key},
                          timeout=60)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "CANCELED" and response.json()["job_cancel_requested"] is True
    deadline = time.monotonic() + 120
    while (job := stack.admin("GET", f"/jobs/{run.job_name}"))["status"] not in ("Canceled", "Completed", "Failed"):
        assert time.monotonic() < deadline, job["status"]
        time.sleep(0.5)
    assert job["status"] == "Canceled"
    time.sleep(3)  # the job's Canceled event has been delivered by now (the stack's time scale)
    after = runs.get(run.run_id)
    assert after.state == RunState.CANCELED and after.model is None  # nothing registered, not FAILED either


def test_a_lost_run_completed_is_recovered_by_the_reconciler(stack, runs):
    stack.admin("DELETE", "/subscriptions/tuneflow-lifecycle")  # every Azure ML event is lost from now on
    upload(stack, "no-events.jsonl", seed=14)
    run = wait_for(run_for(runs, "datasets/no-events.jsonl", SETTLED), 600, "the reconciler to finish the run")
    assert run.state == RunState.DEPLOYED, run.last_error
    notes = [t.note or "" for t in run.history]
    assert any("reconciled" in note for note in notes) or run.history[-1].state == RunState.DEPLOYED
