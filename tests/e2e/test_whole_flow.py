"""The whole chain through real parts: Azurite + the Azure ML emulator + devhost hosting function_app.

dataset upload → BlobCreated → ingest → pipeline job trains for real → RunCompleted → registration →
ModelRegistered → blue/green deployment → DEPLOYED, and the endpoint answers with the fine-tuned model.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from azure.storage.blob import BlobServiceClient

from cli.demo_dataset import generate
from shared.runs import RunState
from tests.e2e.conftest import run_for, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DONE = {RunState.DEPLOYED, RunState.FAILED, RunState.DEPLOY_FAILED, RunState.REJECTED}


def upload(stack, name: str, rows: int, seed: int) -> None:
    data = "".join(json.dumps(r) + "\n" for r in generate(rows, seed)).encode()
    blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    blobs.get_blob_client("datasets", name).upload_blob(data, overwrite=True)


def score(stack, body: dict, deployment: str | None = None) -> tuple[int, str]:
    import httpx

    ml = stack.emulator.ml_client()
    endpoint = ml.online_endpoints.get("tuneflow-chat")
    key = ml.online_endpoints.get_keys("tuneflow-chat").primary_key
    headers = {"Authorization": f"Bearer {key}"}
    if deployment:
        headers["azureml-model-deployment"] = deployment
    response = httpx.post(endpoint.scoring_uri, json=body, headers=headers, verify=stack.emulator.ca_bundle,
                          timeout=60)
    return response.status_code, response.text


QUESTION = {"input_data": {"input_string": [{"role": "user", "content": "What is the capital of France?"}],
                           "parameters": {"max_new_tokens": 24}}}


@pytest.fixture(scope="module")
def first(stack, runs):
    """The first dataset's run, settled (each test may run alone: none relies on another having run)."""
    upload(stack, "demo.jsonl", rows=200, seed=1)  # the same bytes again converge on the same run
    return wait_for(run_for(runs, "datasets/demo.jsonl", DONE), 600, "the first run to settle")


def test_dataset_becomes_a_deployed_model(stack, runs, first):
    run = first
    assert run.state == RunState.DEPLOYED, f"{run.state}: {run.last_error}"
    states = [t.state for t in run.history]
    assert states[:3] == ["RECEIVED", "VALIDATING", "SUBMITTED"]
    assert states[-4:] == ["TRAINED", "REGISTERED", "DEPLOYING", "DEPLOYED"]
    assert run.model == f"Phi-4-mini-instruct-ft:{run.run_id}"
    status, text = score(stack, QUESTION)
    assert status == 200 and json.loads(text)[0]["0"].strip(), text
    name, version = run.model.rsplit(":", 1)
    tags = stack.emulator.ml_client().models.get(name, version=version).tags
    assert tags["tuneflow.run_id"] == run.run_id and tags["tuneflow.job_name"] == run.job_name
    assert float(tags["metrics.eval_loss"]) < float(tags["metrics.base_eval_loss"])  # the job's final metrics
    # the lifecycle's CloudEvents reached the topic in the order of the run's transitions
    expected = [f"tuneflow.run.{s.lower()}" for s in states]

    def announced() -> list[str]:  # the last event may land just after the record is written
        events = [recorded["event"] for recorded in stack.admin("GET", "/topic/events")["value"]]
        return [e["type"] for e in events if e.get("subject") == f"runs/{run.run_id}"
                and e["type"] != "tuneflow.run.progress"]  # transitions; progress events come while it trains

    deadline = time.monotonic() + 10
    while announced() != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert announced() == expected


def test_the_openai_sdk_streams_the_fine_tuned_answer(stack, first):
    import openai

    key = stack.devhost.function_key
    sdk = openai.OpenAI(base_url=f"{stack.api}/v1", api_key=key, default_headers={"x-functions-key": key},
                        max_retries=0)
    assert first.model in {m.id for m in sdk.models.list()}
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    whole = sdk.chat.completions.create(model=first.model, messages=messages, temperature=0, max_tokens=24)
    pieces = [c.choices[0].delta.content or "" for c in sdk.chat.completions.create(
        model=first.model, messages=messages, temperature=0, max_tokens=24, stream=True) if c.choices]
    assert "".join(pieces) == whole.choices[0].message.content and len([p for p in pieces if p]) > 1


def test_a_second_dataset_replaces_the_deployment_without_failed_requests(stack, runs, first):
    assert first.state == RunState.DEPLOYED, f"{first.state}: {first.last_error}"
    failures: list[str] = []
    served = 0
    stop = threading.Event()

    def keep_scoring() -> None:
        nonlocal served
        while not stop.is_set():
            status, text = score(stack, QUESTION)
            served += 1
            if status != 200:
                failures.append(f"{status} {text[:200]}")
            time.sleep(0.05)

    scorer = threading.Thread(target=keep_scoring)
    scorer.start()
    try:
        upload(stack, "demo2.jsonl", rows=200, seed=2)
        second = wait_for(run_for(runs, "datasets/demo2.jsonl", DONE), 600, "the second run to settle")
    finally:
        stop.set()
        scorer.join()
    assert second.state == RunState.DEPLOYED, f"{second.state}: {second.last_error}"
    assert runs.get(first.run_id).state == RunState.RETIRED
    assert served > 10 and failures == []
    ml = stack.emulator.ml_client()
    deadline = time.monotonic() + 60  # the previous deployment's deletion is asynchronous
    while [d.name for d in ml.online_deployments.list("tuneflow-chat")] != [second.deployment]:
        assert time.monotonic() < deadline, "the previous deployment was not deleted"
        time.sleep(1)
