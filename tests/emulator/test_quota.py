"""Core quota: ``compute.list_usage()`` per VM family from what the emulator runs, the quotas route, the
``quota_exhausted`` fault, and ``shared.azureml.quota.quota_problem`` through the real SDK."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from emulator.routes_workspace import VM_SIZES
from shared.azureml.quota import quota_problem
from tests.emulator import helpers
from tests.emulator.conftest import Admin

pytestmark = [pytest.mark.emulator, pytest.mark.integration]

A100 = "StandardNCADSA100v4Family"  # as the emulator's vmSizes names the family of Standard_NC24ads_A100_v4
A100_SIZE = "Standard_NC24ads_A100_v4"


def _usages(ml: Any) -> dict[str, Any]:
    """name.value → the SDK's Usage (which keeps currentValue under its REST name)."""
    return {u.name["value"]: u for u in ml.compute.list_usage()}


def test_usages_list_every_family_and_the_regional_total(ml: Any) -> None:
    usages = _usages(ml)
    families = {family for _, family, *_ in VM_SIZES}
    assert families | {"Total Cluster Dedicated Regional vCPUs"} == set(usages)
    a100 = usages[A100]
    assert a100.limit == 96 and a100.type == "Microsoft.MachineLearningServices/vmFamily/usages"
    assert a100.name["localizedValue"] == "Standard NCADSA100v4 Family Cluster Dedicated vCPUs"
    assert a100.unit == "Count" and a100.id.endswith("/usages/Standard_NCADSA100v4_Family_Cluster_Dedicated_vCPUs")
    total = usages["Total Cluster Dedicated Regional vCPUs"]
    assert total.type.endswith("/dedicatedCores/usages") and total.limit == 400
    assert total.__dict__["currentValue"] == sum(u.__dict__["currentValue"] for u in usages.values() if u is not total)


def test_quotas_route_and_other_regions(emu: Admin) -> None:
    sub = emu.conn["subscription_id"]
    base = f"/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations"
    r = emu.http.get(emu.url(f"{base}/{emu.conn['location']}/quotas"), params={"api-version": "2025-12-01"})
    assert r.status_code == 200
    a100 = [q for q in r.json()["value"] if q["name"]["value"] == A100]
    assert {q["type"] for q in a100} == {"Microsoft.MachineLearningServices/vmFamily/quotas",
                                         "Microsoft.MachineLearningServices/workspaces/quotas"}
    assert {q["limit"] for q in a100} == {96} and all(q["unit"] == "Count" for q in a100)
    for route in ("quotas", "usages"):
        other = emu.http.get(emu.url(f"{base}/westeurope/{route}"), params={"api-version": "2025-12-01"})
        assert other.status_code == 200 and other.json()["value"] == []


def test_the_exhausted_knob_fills_families_and_quota_problem_says_so(emu: Admin, ml: Any) -> None:
    emu.faults(quota_exhausted=[A100])
    usages = _usages(ml)
    assert usages[A100].__dict__["currentValue"] == 96
    assert quota_problem(ml, A100_SIZE, 1) == (
        f"needs 24 cores of family {A100} ({A100_SIZE} × 1); 96 of 96 in use"
    )
    assert quota_problem(ml, "Standard_ND96amsr_A100_v4", 1) is None  # another family: 96 of 96 free
    emu.faults(quota_exhausted=True)
    total = _usages(ml)["Total Cluster Dedicated Regional vCPUs"]
    assert total.__dict__["currentValue"] == total.limit == 400
    assert quota_problem(ml, "Standard_ND96amsr_A100_v4", 1) == (
        "needs 96 cores of family StandardNDAMSv4_A100Family (Standard_ND96amsr_A100_v4 × 1); 96 of 96 in use"
    )
    assert quota_problem(ml, "Standard_XYZ_unknown", 1) is None  # not a size of the region: not checked
    r = emu.http.post(emu.handle.admin_url + "/faults", json={"quota_exhausted": 3})
    assert r.status_code == 400 and "quota_exhausted" in r.text


def _wait_status(emu: Admin, job: str, status: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while emu.get(f"/jobs/{job}")["status"] != status:
        assert time.monotonic() < deadline, f"{job} never {status}"
        time.sleep(0.05)


def test_running_and_queued_jobs_and_deployments_hold_their_cores(emulator_factory: Any) -> None:
    """A fresh workspace, A100 quota 72 (--core-quota): a deployment (24) + a serverless job (24) + a cluster job
    (gpu-cluster-big's size, 24) fill it; cancelling the jobs frees theirs."""
    handle = emulator_factory(env={"FAKE_TRAINER_SLEEP": "1", "FAKE_TRAINER_STEPS": "60"},
                              extra_args=["--core-quota", f"{A100}=72"])
    emu, ml = Admin(handle), handle.ml_client()
    try:
        assert _usages(ml)[A100].__dict__["currentValue"] == 0 and _usages(ml)[A100].limit == 72
        job, r = helpers.submit_job(emu, inputs={"compute_finetune": "gpu-cluster-big", "num_nodes_finetune": "5"})
        assert r.status_code == 201, r.text
        _wait_status(emu, job, "Running")
        # 5 nodes asked, but the cluster scales to at most 2: 48 cores.
        assert _usages(ml)[A100].__dict__["currentValue"] == 48
        cancelling = time.monotonic()
        ml.jobs.begin_cancel(job).result()
        # A cancel that lands before the trainer process exists must still stop it (it used to run on, 60 s).
        assert time.monotonic() - cancelling < 15
        assert _usages(ml)[A100].__dict__["currentValue"] == 0

        serverless, r = helpers.submit_job(emu, inputs={"instance_type_finetune": A100_SIZE})
        assert r.status_code == 201, r.text
        on_cluster, r = helpers.submit_job(emu, inputs={"compute_finetune": "gpu-cluster-big"})
        assert r.status_code == 201, r.text
        _wait_status(emu, serverless, "Running")
        assert emu.get(f"/jobs/{on_cluster}")["status"] == "Queued"  # queued jobs hold their cores too
        assert _usages(ml)[A100].__dict__["currentValue"] == 48
        assert quota_problem(ml, A100_SIZE, 1) is None  # 48 + 24 = 72 fits exactly

        deployment = _deploy_without_training(emu)
        assert _usages(ml)[A100].__dict__["currentValue"] == 72
        assert quota_problem(ml, A100_SIZE, 1) == f"needs 24 cores of family {A100} ({A100_SIZE} × 1); 72 of 72 in use"
        assert _usages(ml)["standardNCSv3Family"].__dict__["currentValue"] == 0

        for name in (serverless, on_cluster):
            ml.jobs.begin_cancel(name).result()
        assert _usages(ml)[A100].__dict__["currentValue"] == 24  # the deployment's
        r = emu.http.delete(emu.ws(f"/onlineEndpoints/{deployment}"), params={"api-version": helpers.API})
        assert helpers.poll(emu, r)["status"] == "Succeeded"
        assert _usages(ml)[A100].__dict__["currentValue"] == 0
    finally:
        emu.close()


def _deploy_without_training(emu: Admin) -> str:
    """A deployment on Standard_NC24ads_A100_v4 × 1 of a model registered from a datastore path (no job needed)."""
    name = f"m-{uuid.uuid4().hex[:6]}"
    path = f"models/{name}/MLmodel"
    helpers.upload(emu.conn["storage_connection_string"], emu.conn["datastore_container"], path, b"flavors: {}\n")
    body = {"properties": {"modelType": "mlflow_model",
                           "modelUri": f"azureml://datastores/workspaceblobstore/paths/models/{name}/"}}
    r = emu.http.put(emu.ws(f"/models/{name}/versions/1"), params={"api-version": helpers.API}, json=body)
    assert r.status_code == 201, r.text
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    helpers.create_endpoint(emu, endpoint)
    r, status = helpers.create_deployment(emu, endpoint, "blue", (name, "1"))
    assert status.get("status") == "Succeeded", (r.text, status)
    return endpoint
