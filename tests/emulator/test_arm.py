"""The control plane: connection file, Azure-shaped errors, LROs, datastores, models, registry."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import helpers
from tests.emulator.conftest import Admin

pytestmark = [pytest.mark.emulator, pytest.mark.integration]

API = {"api-version": helpers.API}
CLOUD_KEYS = {
    "azure_portal", "resource_manager", "active_directory", "aml_resource_id", "storage_endpoint",
    "registry_discovery_endpoint",
}


def test_connection_file(shared_emulator: Any) -> None:
    conn = json.loads((shared_emulator.data_dir / "connection.json").read_text())
    for key in (
        "subscription_id", "resource_group", "workspace_name", "registry_name", "cloud_name", "cloud_metadata",
        "ca_bundle", "eventgrid_topic_endpoint", "eventgrid_topic_key", "storage_connection_string",
        "datastore_container", "admin_endpoint", "scoring_base",
    ):
        assert conn.get(key), key
    assert set(conn["cloud_metadata"]) == CLOUD_KEYS
    assert conn["ca_bundle"].endswith(".pem") and "BEGIN CERTIFICATE" in Path(conn["ca_bundle"]).read_text()
    assert conn["eventgrid_topic_endpoint"].startswith("https://127.0.0.1:")


def test_not_found_errors(emu: Admin, ml: Any) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    r = emu.http.get(emu.ws("/jobs/no-such-job"), params=API)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "UserError" and error["innerError"]["code"] == "NotFoundError" and "no-such-job" in error["message"]
    with pytest.raises(ResourceNotFoundError):
        ml.jobs.get("no-such-job")
    with pytest.raises(ResourceNotFoundError):
        ml.models.get("no-such-model", version="1")
    with pytest.raises(ResourceNotFoundError):
        ml.online_endpoints.get("no-such-endpoint")
    other = emu.http.get(emu.ws().replace(emu.conn["workspace_name"], "other-ws"), params=API)
    assert other.status_code == 404 and other.json()["error"]["code"] == "ResourceNotFound"


def test_unknown_route_is_logged(emu: Admin) -> None:
    r = emu.http.post(emu.ws("/featuresets/x/versions/1"), params={"api-version": "2099-01-01"})
    assert r.status_code == 404 and "does not serve POST" in r.json()["error"]["message"]
    log = emu.handle.log_text()
    assert "unknown route: POST" in log and "/featuresets/x/versions/1 api-version=2099-01-01" in log


def test_reused_job_name_is_409(emu: Admin, ml: Any) -> None:
    from azure.core.exceptions import HttpResponseError

    name, r = helpers.submit_job(emu)
    assert r.status_code == 201
    again = emu.http.put(emu.ws(f"/jobs/{name}"), params=API, json=helpers.pipeline_body("azureml://datastores/workspaceblobstore/paths/x"))
    assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]
    job = ml.jobs.get(name)
    with pytest.raises(HttpResponseError) as info:
        ml.jobs.create_or_update(job)
    assert info.value.status_code == 409


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"inputs": {"no_such_input": "1"}}, "Unknown input(s)"),
        ({"inputs": {"lr_scheduler_type": "sawtooth"}}, "must be one of"),
        ({"inputs": {"num_train_epochs": "zero"}}, "must be an integer"),
        ({"inputs": {"per_device_train_batch_size": "0"}}, "must be >= 1"),
        ({"data_uri": "azureml://datastores/nope/paths/x"}, "datastore 'nope' does not exist"),
    ],
)
def test_bad_job_bodies_are_400(emu: Admin, patch: dict[str, Any], message: str) -> None:
    _, r = helpers.submit_job(emu, **patch)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]


def test_malformed_bodies_are_400(emu: Admin) -> None:
    r = emu.http.put(emu.ws("/jobs/bad-json"), params=API, content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = emu.http.put(emu.ws("/jobs/bad-type"), params=API, json={"properties": {"jobType": "Command", "command": "ls"}})
    assert r.status_code == 400 and "jobType 'Command' is not supported" in r.json()["error"]["message"]
    r = emu.http.put(emu.ws("/onlineEndpoints/x"), params=API, json={"properties": {}})
    assert r.status_code == 400 and "invalid" in r.json()["error"]["message"]


def test_endpoint_lro_headers(emu: Admin) -> None:
    name = f"ep-{uuid.uuid4().hex[:8]}"
    r = emu.http.put(emu.ws(f"/onlineEndpoints/{name}"), params={"api-version": "2022-02-01-preview"},
                     json={"location": "eastus2", "properties": {"authMode": "Key"}})
    assert r.status_code == 201
    assert r.json()["properties"]["provisioningState"] == "Creating"
    assert "/mfeOperationsStatus/" in r.headers["Azure-AsyncOperation"]
    assert "/mfeOperationResults/" in r.headers["Location"] and r.headers["Retry-After"] == "1"
    status = helpers.poll(emu, r)
    assert status["status"] == "Succeeded" and status["name"] and status["startTime"] and status["endTime"]
    ep = emu.http.get(emu.ws(f"/onlineEndpoints/{name}"), params=API).json()
    assert ep["properties"]["provisioningState"] == "Succeeded"
    assert ep["properties"]["scoringUri"] == f"{emu.conn['scoring_base']}/endpoints/{name}/score"
    d = emu.http.delete(emu.ws(f"/onlineEndpoints/{name}"), params=API)
    assert d.status_code == 202 and helpers.poll(emu, d)["status"] == "Succeeded"


def test_datastores(emu: Admin, ml: Any) -> None:
    from azure.ai.ml.entities import AccountKeyConfiguration, AzureBlobDatastore

    default = ml.datastores.get_default()
    assert default.name == "workspaceblobstore" and default.container_name == emu.conn["datastore_container"]
    key = dict(p.split("=", 1) for p in emu.conn["storage_connection_string"].split(";") if "=" in p)["AccountKey"]
    container = f"tuneflow-{uuid.uuid4().hex[:6]}"
    created = ml.datastores.create_or_update(
        AzureBlobDatastore(name="tuneflow", account_name="devstoreaccount1", container_name=container,
                           credentials=AccountKeyConfiguration(account_key=key))
    )
    assert created.name == "tuneflow" and created.container_name == container
    assert ml.datastores.get("tuneflow").container_name == container
    assert {"workspaceblobstore", "tuneflow"} <= {d.name for d in ml.datastores.list()}
    # A job reads its inputs from the new datastore, through --storage.
    data = "\n".join(json.dumps(r) for r in helpers.ROWS).encode()
    helpers.upload(emu.conn["storage_connection_string"], container, "prepared/train.jsonl", data)
    helpers.upload(emu.conn["storage_connection_string"], container, "prepared/test.jsonl", data)
    job, r = helpers.submit_job(emu, data_uri="azureml://datastores/tuneflow/paths/prepared")
    assert r.status_code == 201, r.text
    assert emu.wait_job(job)["status"] == "Completed"


def test_models_from_job_output_and_latest(emu: Admin, ml: Any) -> None:
    job, _ = helpers.submit_job(emu)
    assert emu.wait_job(job)["status"] == "Completed"
    name = f"m-{uuid.uuid4().hex[:6]}"
    for version in ("1", "2"):
        assert helpers.register_model(emu, name, version, job).status_code == 201
    latest = ml.models.get(name, label="latest")
    assert latest.version == "2" and latest.job_name == job
    assert latest.path.endswith(f"/datastores/workspaceblobstore/paths/azureml/{job}/trained_model/")
    assert sorted(m.version for m in ml.models.list(name=name)) == ["1", "2"]
    # The output really is in the default datastore.
    from azure.storage.blob import ContainerClient

    cc = ContainerClient.from_connection_string(emu.conn["storage_connection_string"], emu.conn["datastore_container"])
    assert any(b.name.endswith("/MLmodel") for b in cc.list_blobs(name_starts_with=f"azureml/{job}/trained_model/"))
    # Registering from a job that did not complete is refused.
    emu.faults(fail_next_job="boom")
    failed, _ = helpers.submit_job(emu)
    emu.wait_job(failed)
    r = helpers.register_model(emu, name, "3", failed)
    assert r.status_code == 400 and "is not available" in r.json()["error"]["message"]


def test_registry_model_and_component(ml_registry: Any) -> None:
    import ast

    model = ml_registry.models.get("Phi-3-mini-4k-instruct", label="latest")
    assert model.id == "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/15"
    assert "Standard_NC24ads_A100_v4" in ast.literal_eval(model.tags["finetune_compute_allow_list"])
    assert "Standard_NC6s_v3" in ast.literal_eval(model.tags["inference_compute_allow_list"])
    defaults = ast.literal_eval(model.tags["model_specific_defaults"])
    from emulator.pipeline_component import INPUTS

    assert defaults and set(defaults) <= set(INPUTS)  # the notebook passes them all as pipeline inputs
    component = ml_registry.components.get(name="chat_completion_pipeline", label="latest")
    assert component.version == "0.0.82" and component.type == "pipeline"
    assert set(component.inputs) == set(INPUTS) and set(component.outputs) == {"pytorch_model_folder", "mlflow_model_folder"}


def test_compute_create_and_sizes(ml: Any) -> None:
    from azure.ai.ml.entities import AmlCompute

    ml.compute.begin_create_or_update(
        AmlCompute(name="gpu-cluster-small", size="Standard_NC6s_v3", tier="Dedicated", max_instances=2)
    ).wait()
    compute = ml.compute.get("gpu-cluster-small")
    assert compute.size == "Standard_NC6s_v3" and compute.max_instances == 2
    sizes = {s.name: s.gpus for s in ml.compute.list_sizes()}
    assert sizes["Standard_NC24ads_A100_v4"] == 1 and sizes["Standard_NC6s_v3"] == 1
    assert {"gpu-cluster-big", "gpu-cluster-small"} <= {c.name for c in ml.compute.list()}


def test_retry_after_on_202s_is_azures_on_the_emulators_clock(emulator_factory: Any, tmp_path: Path) -> None:
    # Azure ML's specs declare 10-600 s and it sends 10; at time scale 1 the emulator sends the same,
    # at 0.01 (the tests' clock) the whole-second floor of 1
    from emulator.config import LRO_RETRY_AFTER_S, EmulatorConfig

    assert EmulatorConfig(data_dir=tmp_path, time_scale=1).retry_after_header == str(LRO_RETRY_AFTER_S) == "10"
    assert EmulatorConfig(data_dir=tmp_path, time_scale=0.5).retry_after_header == "5"
    real = Admin(emulator_factory(tmp_path / "real-clock", extra_args=["--time-scale", "1"]))
    try:
        name = f"ep-{uuid.uuid4().hex[:8]}"
        r = real.http.put(real.ws(f"/onlineEndpoints/{name}"), params=API,
                          json={"location": "eastus2", "properties": {"authMode": "Key"}})
        assert r.status_code == 201 and 10 <= int(r.headers["Retry-After"]) <= 600
        time.sleep(0.5)  # past lro_min_seconds: the create has finished
        keys = real.http.post(real.ws(f"/onlineEndpoints/{name}/regenerateKeys"), params=API,
                              json={"keyType": "Primary"})
        assert keys.status_code == 202 and keys.headers["Retry-After"] == "10"
        d = real.http.delete(real.ws(f"/onlineEndpoints/{name}"), params=API)
        assert d.status_code == 202 and d.headers["Retry-After"] == "10"
    finally:
        real.close()
