"""Many fine-tunes side by side, end to end through Azurite + the emulator + devhost.

Two folders with different manifests (base models, endpoints, hyperparameters) are both DEPLOYED and each
answers by its model name; a bad manifest is REJECTED naming each key with nothing submitted; a manifest
uploaded after its data still makes exactly one run; a `source` manifest trains from a local hub mirror;
a notify_url receiver gets every transition signed; the quota knob gives the clear refusal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from azure.storage.blob import BlobServiceClient

from devstack.stack import LocalStack, start_stack
from shared.records import BlobRecordStore
from shared.runs import SETTLED, RunState, RunStore
from shared.webhooks import signing
from tests.e2e.conftest import FAST_FINETUNE, run_for, wait_for
from tests.support.datasets import valid_jsonl
from tests.support.hf_sources import HUB_ID, ultrachat, write_mirror
from tests.support.receiver import Receiver, start_receiver

pytestmark = pytest.mark.e2e
SECRET = "whsec_dHVuZWZsb3ctZTJlLW1hbmlmZXN0cw=="


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hook = start_receiver()
    yield hook
    hook.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work: Path = tmp_path_factory.mktemp("manifests")
    mirror = write_mirror(work / "hub", {"train_sft": ultrachat(60), "test_sft": ultrachat(20, start=500)}, "disk")
    settings = {"TUNEFLOW_FINETUNE_PARAMS": FAST_FINETUNE, "TUNEFLOW_TEST_FRACTION": "0.1",
                "TUNEFLOW_SETTLE_SECONDS": "2", "TUNEFLOW_HUB_MIRROR_DIR": str(mirror),
                "TUNEFLOW_WEBHOOK_SECRET": SECRET, "TUNEFLOW_WEBHOOK_ALLOW_HTTP": "true",
                "TUNEFLOW_WEBHOOK_ALLOW_PRIVATE": "true", "TUNEFLOW_WEBHOOK_BACKOFF_S": "1",
                "TUNEFLOW_ALLOWED_INSTANCE_TYPES": "Standard_NC24ads_A100_v4,Standard_NC48ads_A100_v4"}
    with start_stack(work / "stack", settings) as s:
        yield s
        print(s.devhost.log_text()[-6000:])


@pytest.fixture(scope="module")
def runs(stack: LocalStack) -> RunStore:
    blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    return RunStore(BlobRecordStore(blobs.get_container_client("tuneflow")))


def put(stack: LocalStack, name: str, data: bytes) -> None:
    blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    blobs.get_blob_client(stack.settings["TUNEFLOW_DROP_CONTAINER"], name).upload_blob(data, overwrite=True)


def api(stack: LocalStack, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{stack.api}{path}", headers={"x-functions-key": stack.devhost.function_key},
                         timeout=120, **kwargs)


def test_two_manifests_deploy_side_by_side_and_each_answers_by_its_name(stack, runs, receiver):
    alpha = {"train": "chats.jsonl", "endpoint": "alpha-chat", "suffix": "alpha", "tags": {"team": "alpha"},
             "finetune": {"learning_rate": 0.003}, "notify_url": receiver.url}
    beta = {"base_model": "Phi-4", "endpoint": "beta-chat", "finetune": {"max_steps": 10}, "tags": {"team": "beta"}}
    put(stack, "alpha/tuneflow.json", json.dumps(alpha).encode())  # the manifest first, as `upload` sends it
    put(stack, "alpha/chats.jsonl", valid_jsonl(60))
    put(stack, "beta/train.jsonl", valid_jsonl(50, start=1000))
    put(stack, "beta/test.jsonl", valid_jsonl(10, start=2000))
    time.sleep(0.5)
    put(stack, "beta/tuneflow.json", json.dumps(beta).encode())  # after its data: still one run, with it
    deployed = {RunState.DEPLOYED}
    a = wait_for(run_for(runs, "/alpha/", deployed | {RunState.FAILED, RunState.DEPLOY_FAILED}), 600, "alpha")
    b = wait_for(run_for(runs, "/beta/", deployed | {RunState.FAILED, RunState.DEPLOY_FAILED}), 600, "beta")
    assert (a.state, b.state) == (RunState.DEPLOYED, RunState.DEPLOYED), (a.last_error, b.last_error)
    assert (a.endpoint, b.endpoint, a.base_model, b.base_model) == ("alpha-chat", "beta-chat",
                                                                    "Phi-4-mini-instruct", "Phi-4")
    assert a.model.startswith("Phi-4-mini-instruct-ft-alpha:") and b.model.startswith("Phi-4-ft:")
    assert [r for r in runs.list() if r.dataset.endswith("/beta/")] == [b]  # exactly one run for beta
    assert b.tags == {"team": "beta"} and b.config["finetune"] == {"max_steps": 10}

    listed = api(stack, "GET", "/endpoints").json()["endpoints"]
    by_name = {e["endpoint"]: e for e in listed}
    assert by_name["alpha-chat"]["traffic"] == {a.deployment: 100}
    assert by_name["beta-chat"]["traffic"] == {b.deployment: 100}
    for run in (a, b):
        for model in (run.endpoint, run.model):
            answer = api(stack, "POST", "/v1/chat/completions",
                         json={"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8})
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-tuneflow-deployment"] == run.deployment

    # every transition of alpha reached its notify_url, signed, in order
    wanted = [t.state.value for t in a.history]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(receiver.posts()) < len(wanted):
        time.sleep(0.2)
    seen = {}
    for headers, body in receiver.posts():
        signing.verify(SECRET, headers, body)  # raises when the signature or timestamp is wrong
        event = orjson.loads(body)
        assert event["subject"] == f"runs/{a.run_id}" and event["data"]["tags"] == {"team": "alpha"}
        seen[event["id"]] = event["type"]
    assert sorted(seen) == [f"{a.run_id}-{i:04d}" for i in range(len(wanted))]  # one per transition
    assert [seen[f"{a.run_id}-{i:04d}"] for i in range(len(wanted))] == [f"tuneflow.run.{s.lower()}" for s in wanted]


def test_a_bad_manifest_is_rejected_naming_each_key_with_nothing_submitted(stack, runs):
    manifest = {"compte": "serverless", "num_nodes": "two", "deployment": {"instance_type": "Standard_ND96asr_v4"}}
    put(stack, "broken/train.jsonl", valid_jsonl(40))
    put(stack, "broken/tuneflow.json", json.dumps(manifest).encode())
    run = wait_for(run_for(runs, "/broken/", {RunState.REJECTED}), 60, "the rejection")
    assert "compte: unknown key (did you mean 'compute'?)" in run.last_error
    assert 'num_nodes: expected an integer, got "two"' in run.last_error
    assert run.job_name is None
    # the keys fixed, the forbidden instance type is what remains
    manifest = {"deployment": {"instance_type": "Standard_ND96asr_v4"}}
    put(stack, "broken/tuneflow.json", json.dumps(manifest).encode())
    later = wait_for(lambda: next((r for r in runs.list() if r.dataset.endswith("/broken/")
                                   and "TUNEFLOW_ALLOWED_INSTANCE_TYPES" in (r.last_error or "")), None), 60,
                     "the guardrail rejection")
    assert later.state == RunState.REJECTED and "deployment.instance_type: 'Standard_ND96asr_v4'" in later.last_error
    assert all(r.job_name is None for r in runs.list() if r.dataset.endswith("/broken/"))


def test_a_source_manifest_prepares_the_dataset_and_trains_from_it(stack, runs):
    manifest = {"source": {"hub": HUB_ID, "percent": 50, "sample": "random", "seed": 7}, "deploy": "never"}
    put(stack, "hub-ultrachat/tuneflow.json", json.dumps(manifest).encode())
    run = wait_for(run_for(runs, "/hub-ultrachat/", {RunState.REGISTERED, *SETTLED}), 600, "the source run")
    assert run.state == RunState.REGISTERED, run.last_error  # deploy: never
    train, test = run.sources
    assert train.startswith("sources/") and train.endswith("/train.jsonl") and test.endswith("/test.jsonl")
    output = BlobServiceClient.from_connection_string(stack.azurite.connection_string).get_container_client("tuneflow")
    rows = [output.download_blob(path).readall().splitlines() for path in (train, test)]
    assert [len(r) for r in rows] == [30, 10]  # 50% of each split, sampled with the seed
    assert all(set(orjson.loads(line)) == {"messages"} for line in rows[0])
    assert run.endpoint is None and run.deployment is None and run.model


def test_exhausted_quota_fails_the_run_at_once_with_what_is_short(stack, runs):
    stack.admin("POST", "/faults", {"quota_exhausted": True})
    try:
        put(stack, "quota/train.jsonl", valid_jsonl(40, start=5000))
        put(stack, "quota/test.jsonl", valid_jsonl(10, start=6000))
        run = wait_for(run_for(runs, "/quota/", {RunState.FAILED, RunState.SUBMITTED, RunState.RUNNING}), 120,
                       "the quota refusal")
    finally:
        stack.admin("POST", "/faults", {"quota_exhausted": False})
    assert run.state == RunState.FAILED and run.job_name is None
    assert "needs 24 cores of family" in run.last_error and "in use" in run.last_error
