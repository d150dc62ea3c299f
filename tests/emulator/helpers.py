"""Small REST-level helpers (faster than the SDK) for tests that need a job, a model or an endpoint."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from azure.storage.blob import BlobServiceClient

from tests.emulator.conftest import Admin

API = "2024-01-01-preview"
COMPONENT = "azureml://registries/azureml/components/chat_completion_pipeline/versions/0.0.82"
BASE_MODEL = "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/15"
PHI4 = "azureml://registries/azureml/models/Phi-4/versions/8"  # the catalog's second chat model
ROWS = [
    {"messages": [{"role": "user", "content": f"What is {i} + {i}?"}, {"role": "assistant", "content": f"{2 * i}"}]}
    for i in range(10)
]


def upload(conn_str: str, container: str, name: str, data: bytes, **kwargs: Any) -> Any:
    service = BlobServiceClient.from_connection_string(conn_str, **kwargs)
    cc = service.get_container_client(container)
    if not cc.exists():
        cc.create_container()
    return cc.get_blob_client(name).upload_blob(data, overwrite=True)


def upload_dataset(emu: Admin, prefix: str | None = None) -> str:
    """Upload a tiny JSONL dataset to the default datastore; return its datastore path prefix."""
    prefix = prefix or f"datasets/{uuid.uuid4().hex[:8]}"
    data = "\n".join(json.dumps(r) for r in ROWS).encode()
    conn = emu.conn
    upload(conn["storage_connection_string"], conn["datastore_container"], f"{prefix}/train.jsonl", data)
    upload(conn["storage_connection_string"], conn["datastore_container"], f"{prefix}/test.jsonl", data[:200])
    return f"azureml://datastores/workspaceblobstore/paths/{prefix}"


def pipeline_body(
    data_uri: str,
    *,
    inputs: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    experiment: str = "tuneflow-tests",
    output: str = "trained_model",
    model: str = BASE_MODEL,
) -> dict[str, Any]:
    """A pipeline job body as azure-ai-ml serialises the notebook's @pipeline (datastore inputs, as the app)."""
    literals = {"apply_lora": "true", "num_train_epochs": "1", "max_steps": "3", **(inputs or {})}
    node_inputs: dict[str, Any] = {k: {"job_input_type": "literal", "value": str(v)} for k, v in literals.items()}
    node_inputs["mlflow_model_path"] = {"job_input_type": "mlflow_model", "uri": model}
    node_inputs["train_file_path"] = {"job_input_type": "uri_file", "uri": f"{data_uri}/train.jsonl"}
    node_inputs["test_file_path"] = {"job_input_type": "uri_file", "uri": f"{data_uri}/test.jsonl"}
    return {
        "properties": {
            "jobType": "Pipeline",
            "displayName": "tuneflow test",
            "experimentName": experiment,
            "tags": tags or {},
            "properties": {},
            "inputs": {},
            "jobs": {
                "finetune": {
                    "type": "pipeline",
                    "name": "finetune",
                    "componentId": COMPONENT,
                    "inputs": node_inputs,
                    "outputs": {"mlflow_model_folder": {"type": "literal", "value": f"${{{{parent.outputs.{output}}}}}"}},
                }
            },
            "outputs": {output: {"jobOutputType": "mlflow_model", "mode": "ReadWriteMount"}},
            "settings": {"continue_on_step_failure": False, "force_rerun": True},
        }
    }


def submit_job(emu: Admin, name: str | None = None, **kwargs: Any) -> tuple[str, Any]:
    name = name or f"job-{uuid.uuid4().hex[:10]}"
    data_uri = kwargs.pop("data_uri", None) or upload_dataset(emu)
    r = emu.http.put(emu.ws(f"/jobs/{name}"), params={"api-version": API}, json=pipeline_body(data_uri, **kwargs))
    return name, r


def register_model(emu: Admin, name: str, version: str, job: str, tags: dict[str, str] | None = None) -> Any:
    body = {
        "properties": {
            "modelType": "mlflow_model",
            "modelUri": f"azureml://jobs/{job}/outputs/trained_model",
            "tags": tags or {},
            "properties": {"origin": "test"},
        }
    }
    return emu.http.put(emu.ws(f"/models/{name}/versions/{version}"), params={"api-version": API}, json=body)


def trained_model(emu: Admin, name: str | None = None, tags: dict[str, str] | None = None) -> tuple[str, str]:
    """Run a (fake) job and register its output; return (model name, version)."""
    job, r = submit_job(emu)
    assert r.status_code == 201, r.text
    assert emu.wait_job(job)["status"] == "Completed"
    name = name or f"model-{uuid.uuid4().hex[:6]}"
    r = register_model(emu, name, "1", job, tags)
    assert r.status_code == 201, r.text
    return name, "1"


def poll(emu: Admin, response: Any, timeout: float = 30) -> dict[str, Any]:
    """Follow an LRO's Azure-AsyncOperation header until it settles; return the final status body."""
    url = response.headers["Azure-AsyncOperation"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = emu.http.get(url).json()
        if body["status"] != "InProgress":
            return body
        time.sleep(0.05)
    raise AssertionError(f"operation {url} still in progress after {timeout}s")


def create_endpoint(emu: Admin, name: str, traffic: dict[str, int] | None = None) -> Any:
    body = {"location": "eastus2", "properties": {"authMode": "Key", "traffic": traffic or {}}}
    r = emu.http.put(emu.ws(f"/onlineEndpoints/{name}"), params={"api-version": "2022-02-01-preview"}, json=body)
    assert r.status_code in (200, 201), r.text
    assert poll(emu, r)["status"] == "Succeeded"
    return emu.http.get(emu.ws(f"/onlineEndpoints/{name}"), params={"api-version": "2022-02-01-preview"}).json()


def create_deployment(
    emu: Admin, endpoint: str, name: str, model: tuple[str, str], timeout_ms: int = 5000, *, wait: float = 30
) -> tuple[Any, dict[str, Any]]:
    model_id = f"/subscriptions/{emu.conn['subscription_id']}/resourceGroups/{emu.conn['resource_group']}/providers/" \
        f"Microsoft.MachineLearningServices/workspaces/{emu.conn['workspace_name']}/models/{model[0]}/versions/{model[1]}"
    seconds = timeout_ms / 1000
    body = {
        "location": "eastus2",
        "sku": {"name": "Default", "capacity": 1},
        "properties": {
            "endpointComputeType": "Managed",
            "model": model_id,
            "instanceType": "Standard_NC24ads_A100_v4",
            "requestSettings": {"requestTimeout": f"PT{seconds:g}S"},
        },
    }
    r = emu.http.put(
        emu.ws(f"/onlineEndpoints/{endpoint}/deployments/{name}"), params={"api-version": "2023-04-01-preview"}, json=body
    )
    return r, (poll(emu, r, timeout=wait) if r.status_code in (200, 201) else {})


def set_traffic(emu: Admin, endpoint: str, traffic: dict[str, int], mirror: dict[str, int] | None = None) -> Any:
    body = {"location": "eastus2", "properties": {"authMode": "Key", "traffic": traffic,
                                                  **({"mirrorTraffic": mirror} if mirror is not None else {})}}
    r = emu.http.put(emu.ws(f"/onlineEndpoints/{endpoint}"), params={"api-version": "2022-02-01-preview"}, json=body)
    if r.status_code in (200, 201):
        assert poll(emu, r)["status"] == "Succeeded"
    return r


def keys(emu: Admin, endpoint: str) -> dict[str, str]:
    r = emu.http.post(emu.ws(f"/onlineEndpoints/{endpoint}/listKeys"), params={"api-version": "2022-02-01-preview"})
    r.raise_for_status()
    result: dict[str, str] = r.json()
    return result
