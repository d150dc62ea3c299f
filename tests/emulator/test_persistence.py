"""Restarts lose nothing: jobs, models, endpoints, deployments, keys, pending events; unfinished work resumes."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.emulator import helpers
from tests.emulator.conftest import Admin
from tests.emulator.webhook import Policy, start_webhook

pytestmark = [pytest.mark.emulator, pytest.mark.integration]

API = {"api-version": "2023-04-01-preview"}
REQUEST = {"input_data": {"input_string": [[{"role": "user", "content": "still there?"}]], "parameters": {}}}
SLOW = {"FAKE_TRAINER_SLEEP": "0.25", "FAKE_TRAINER_STEPS": "4"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _deployment_pid(data_dir: Path, endpoint: str, name: str) -> int:
    doc = json.loads((data_dir / "state" / "deployments" / (quote(f"{endpoint}/{name}", safe="") + ".json")).read_text())
    return int(doc["pid"])


def _wait_status(emu: Admin, job: str, status: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emu.get(f"/jobs/{job}")["status"] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"{job} never reached {status}")


@pytest.mark.parametrize("how", ["graceful", "crash"])
def test_restart_keeps_state_and_resumes_work(emulator_factory: Any, tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "emu-data"
    hook = start_webhook(Policy(always_fail=True))
    first = emulator_factory(data_dir, env=SLOW)
    emu = Admin(first)
    try:
        # State: a finished job, its model, an endpoint with a serving deployment, keys.
        model = helpers.trained_model(emu)
        helpers.create_endpoint(emu, "keep-ep")
        _, status = helpers.create_deployment(emu, "keep-ep", "blue", model)
        assert status["status"] == "Succeeded"
        helpers.set_traffic(emu, "keep-ep", {"blue": 100})
        keys = helpers.keys(emu, "keep-ep")
        scoring_uri = emu.http.get(emu.ws("/onlineEndpoints/keep-ep"), params=API).json()["properties"]["scoringUri"]
        old_scorer = _deployment_pid(data_dir, "keep-ep", "blue")
        # An event the subscriber keeps refusing: still pending when the emulator goes down.
        emu.subscribe("keep", endpoint=hook.url, included_event_types=["tuneflow.test.keep"], max_delivery_attempts=30)
        r = emu.http.post(
            first.connection["eventgrid_topic_endpoint"],
            headers={"aeg-sas-key": first.connection["eventgrid_topic_key"]},
            json=[{"id": "keep-1", "subject": "s", "eventType": "tuneflow.test.keep", "eventTime": "2025-01-01T00:00:00Z",
                   "data": {}, "dataVersion": "1"}],
        )
        assert r.status_code == 200
        # Work in flight: one job training, one queued behind it.
        running, _ = helpers.submit_job(emu)
        queued, _ = helpers.submit_job(emu)
        _wait_status(emu, running, "Running")
        assert emu.get(f"/jobs/{queued}")["status"] == "Queued"
        trainer = emu.get(f"/jobs/{running}").get("train_pid")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not trainer:
            time.sleep(0.05)
            trainer = emu.get(f"/jobs/{running}").get("train_pid")
        assert _alive(trainer)
    finally:
        emu.close()
    if how == "graceful":
        first.stop()
    else:
        first.kill()  # SIGKILL: the children die with it (PR_SET_PDEATHSIG)
    assert _wait_gone(trainer), "the training process outlived the emulator"
    assert _wait_gone(old_scorer), "the scoring process outlived the emulator"

    hook.policy.always_fail = False
    second = emulator_factory(data_dir, env=SLOW)
    emu = Admin(second)
    try:
        assert second.base_url == first.base_url  # the same ports are reused
        # Everything is still there.
        assert emu.http.get(emu.ws(f"/models/{model[0]}/versions/{model[1]}"), params=API).status_code == 200
        assert helpers.keys(emu, "keep-ep") == keys
        ep = emu.http.get(emu.ws("/onlineEndpoints/keep-ep"), params=API).json()
        assert ep["properties"]["traffic"] == {"blue": 100} and ep["properties"]["scoringUri"] == scoring_uri
        # The deployment's scoring server is back (a new process) and serves the same URI and keys.
        deadline = time.monotonic() + 15
        while True:
            r = emu.http.post(scoring_uri, json=REQUEST, headers={"Authorization": f"Bearer {keys['primaryKey']}"})
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status_code == 200 and r.json() == [{"0": "fake: still there?"}]
        assert _deployment_pid(data_dir, "keep-ep", "blue") != old_scorer
        # The interrupted job ran again from the start; the queued one ran after it.
        assert emu.wait_job(running, timeout=30)["status"] == "Completed"
        assert emu.wait_job(queued, timeout=30)["status"] == "Completed"
        log = (data_dir / "jobs" / running / "logs" / "executionlogs.txt").read_text()
        assert "Emulator restarted" in log
        listed = emu.http.get(emu.ws("/jobs"), params={"api-version": helpers.API}).json()["value"]
        assert {running, queued} <= {j["name"] for j in listed}
        # The pending event was delivered after the restart.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(e["id"] == "keep-1" for e in hook.events()):
            time.sleep(0.05)
        assert any(e["id"] == "keep-1" for e in hook.events())
    finally:
        emu.close()
        hook.stop()


def test_state_files_are_json_written_atomically(emulator_factory: Any, tmp_path: Path) -> None:
    handle = emulator_factory(tmp_path / "d")
    emu = Admin(handle)
    try:
        job, _ = helpers.submit_job(emu, name=f"atomic-{uuid.uuid4().hex[:6]}")
        emu.wait_job(job)
    finally:
        emu.close()
    files = list((tmp_path / "d" / "state").rglob("*"))
    assert any(f.name == f"{job}.json" for f in files)
    assert not [f for f in files if f.name.endswith(".tmp")]
    for f in files:
        if f.suffix == ".json":
            json.loads(f.read_text())
