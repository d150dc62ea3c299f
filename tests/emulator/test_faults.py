"""Every fault knob, set at run time through the admin API or at start (``--faults``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.emulator import helpers
from tests.emulator.conftest import Admin

pytestmark = [pytest.mark.emulator, pytest.mark.integration]

API = {"api-version": "2024-10-01-preview"}


def test_arm_latency(emu: Admin) -> None:
    emu.faults(arm_latency_ms=400)
    t0 = time.monotonic()
    assert emu.http.get(emu.ws(), params=API).status_code == 200
    assert time.monotonic() - t0 >= 0.4
    t0 = time.monotonic()
    emu.get("/health")  # the admin API is not ARM: no latency
    assert time.monotonic() - t0 < 0.3


def test_arm_429_then_recovers_and_the_sdk_retries(emu: Admin, ml: Any) -> None:
    emu.faults(arm_429_rate=1.0, arm_error_count=2, arm_retry_after_s=1)
    first = emu.http.get(emu.ws(), params=API)
    assert first.status_code == 429 and first.headers["Retry-After"] == "1"
    assert first.json()["error"]["code"] == "TooManyRequests"
    assert emu.http.get(emu.ws(), params=API).status_code == 429
    assert emu.http.get(emu.ws(), params=API).status_code == 200  # the count is used up
    emu.faults(arm_429_rate=1.0, arm_error_count=1)
    t0 = time.monotonic()
    assert ml.compute.get("gpu-cluster-big").size == "Standard_NC24ads_A100_v4"  # azure-core honours Retry-After
    assert time.monotonic() - t0 >= 0.9
    assert emu.get("/faults")["arm_error_count"] == 0


def test_arm_500_rate_and_path_filter(emu: Admin) -> None:
    emu.faults(arm_500_rate=1.0, arm_path_contains="/computes/")
    bad = emu.http.get(emu.ws("/computes/gpu-cluster-big"), params=API)
    assert bad.status_code == 500 and "Retry-After" in bad.headers
    assert bad.json()["error"]["code"] == "InternalServerError"
    assert emu.http.get(emu.ws("/datastores/workspaceblobstore"), params=API).status_code == 200
    counts = emu.requests()["routes"]["arm_faults"]
    assert counts.get("GET 500", 0) >= 1


def test_fail_next_job_and_named_job(emu: Admin) -> None:
    emu.faults(fail_next_job="CUDA out of memory (injected)")
    failed, r = helpers.submit_job(emu)
    assert r.status_code == 201
    doc = emu.wait_job(failed)
    assert doc["status"] == "Failed" and doc["error"]["message"] == "CUDA out of memory (injected)"
    steps = {c["step"]: c["status"] for c in doc["children"]}
    assert steps == {
        "validation": "Completed", "model_import": "Completed", "preprocess": "Completed",
        "finetune": "Failed", "model_converter": "Canceled",
    }
    ok, _ = helpers.submit_job(emu)  # "next" means one job
    assert emu.wait_job(ok)["status"] == "Completed"
    named = f"job-{uuid.uuid4().hex[:8]}"
    emu.faults(fail_jobs={named: "disk full (injected)"})
    helpers.submit_job(emu, name=named)
    assert emu.wait_job(named)["error"]["message"] == "disk full (injected)"
    # Seen through the ARM job resource too.
    body = emu.http.get(emu.ws(f"/jobs/{named}"), params={"api-version": helpers.API}).json()
    assert body["properties"]["status"] == "Failed"


def test_forced_deployment_failure(emu: Admin) -> None:
    model = helpers.trained_model(emu)
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    helpers.create_endpoint(emu, endpoint)
    emu.faults(fail_next_deployment="quota exceeded for Standard_NC24ads_A100_v4 (injected)")
    r, status = helpers.create_deployment(emu, endpoint, "blue", model)
    assert r.status_code == 201 and r.json()["properties"]["provisioningState"] == "Creating"
    assert status["status"] == "Failed" and "quota exceeded" in status["error"]["message"]
    dep = emu.http.get(emu.ws(f"/onlineEndpoints/{endpoint}/deployments/blue"), params=API).json()
    assert dep["properties"]["provisioningState"] == "Failed"
    r, status = helpers.create_deployment(emu, endpoint, "green", model)  # "next" means one
    assert status["status"] == "Succeeded"
    emu.faults(fail_deployments={f"{endpoint}/green": "image pull failed (injected)"})
    r, status = helpers.create_deployment(emu, endpoint, "green", model)
    assert r.status_code == 200 and status["status"] == "Failed" and "image pull" in status["error"]["message"]


def test_archived_base_model(emu: Admin, ml_registry: Any) -> None:
    emu.faults(base_model_archived=True)
    model = ml_registry.models.get("Phi-3-mini-4k-instruct", version="15")
    assert model.stage == "Archived"
    with pytest.raises(Exception, match="does not exist"):
        ml_registry.models.get("Phi-3-mini-4k-instruct", label="latest")  # ActiveOnly listing is empty
    emu.faults(base_model_archived=False)
    assert ml_registry.models.get("Phi-3-mini-4k-instruct", label="latest").stage == "Active"


def test_unknown_knob_is_rejected(emu: Admin) -> None:
    r = emu.http.post(emu.handle.admin_url + "/faults", json={"arm_latency": 5})
    assert r.status_code == 400 and "unknown fault knob" in r.json()["error"]["message"]
    r = emu.http.post(emu.handle.admin_url + "/faults", json={"arm_429_rate": 3})
    assert r.status_code == 400


def test_faults_at_start_and_crashing_processes(emulator_factory: Any) -> None:
    handle = emulator_factory(
        faults={"arm_latency_ms": 50, "fail_next_job": None},
        env={"FAKE_TRAINER_FAIL": "ValueError: dataset has no 'messages' column", "FAKE_SCORER_CRASH": "1"},
    )
    emu = Admin(handle)
    try:
        assert emu.get("/faults")["arm_latency_ms"] == 50
        job, r = helpers.submit_job(emu)
        assert r.status_code == 201
        doc = emu.wait_job(job)
        # The trainer's last stderr line is the job's error.
        assert doc["status"] == "Failed" and doc["error"]["message"] == "ValueError: dataset has no 'messages' column"
        # A deployment whose scoring process dies before it is ready fails with the reason.
        emu.faults(fail_next_job=None)
        # Register a model from a datastore folder (the trainer fails here, so no job output exists).
        conn = handle.connection
        helpers.upload(conn["storage_connection_string"], conn["datastore_container"], "models/m1/MLmodel", b"flavors: {}\n")
        body = {"properties": {"modelType": "mlflow_model",
                               "modelUri": "azureml://datastores/workspaceblobstore/paths/models/m1/"}}
        r = emu.http.put(emu.ws("/models/m1/versions/1"), params=API, json=body)
        assert r.status_code == 201, r.text
        helpers.create_endpoint(emu, "crash-ep")
        r, status = helpers.create_deployment(emu, "crash-ep", "blue", ("m1", "1"))
        assert status["status"] == "Failed", status
        assert "exited with code" in status["error"]["message"], status
        logs = emu.http.post(
            emu.ws("/onlineEndpoints/crash-ep/deployments/blue/getLogs"), params=API, json={"tail": 20}
        ).json()["content"]
        assert "crashing on purpose" in logs
    finally:
        emu.close()
