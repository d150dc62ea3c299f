"""Timers on their NCRONTAB schedule, run_on_startup, and manual runs through the admin API."""

from __future__ import annotations

import time

import httpx
import pytest

from devhost.process import Handle

from .conftest import Records

pytestmark = pytest.mark.integration


def test_run_on_startup(devhost: Handle, records: Records) -> None:
    # `yearly` is scheduled for 1 January only; its first record can only come from runOnStartup
    rows = records.wait_for(lambda rs: len(rs) >= 1, "yearly")
    assert rows[0]["past_due"] is False


def test_timer_fires_on_its_schedule(devhost: Handle, records: Records) -> None:
    before = len(records.all("tick"))
    start = time.monotonic()
    records.wait_for(lambda rs: len(rs) >= before + 2, "tick", timeout=5)
    assert time.monotonic() - start < 4  # every second (*/1 * * * * *)


def test_admin_invoke_runs_a_timer_on_demand(client: httpx.Client, devhost: Handle, records: Records) -> None:
    before = len(records.all("yearly"))
    r = client.post("/admin/functions/yearly", json={"input": ""}, headers={"x-functions-key": devhost.master_key})
    assert r.status_code == 202
    records.wait_for(lambda rs: len(rs) == before + 1, "yearly")


def test_admin_invoke_and_wait_reports_the_outcome(client: httpx.Client, devhost: Handle, records: Records) -> None:
    key = {"x-functions-key": devhost.master_key}
    r = client.post("/admin/functions/yearly?wait=true", json={"input": ""}, headers=key)
    assert r.status_code == 200
    assert r.json()["status"] == "Succeeded"
    r = client.post(
        "/admin/functions/on_event?wait=true",
        headers=key,
        json={
            "input": '{"id": "manual-1", "eventType": "t", "subject": "s", "data": {"fail": true},'
            ' "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1"}'
        },
    )
    assert r.status_code == 500
    assert r.json()["status"] == "Failed" and "event asked to fail" in r.json()["error"]
    assert any(x["id"] == "manual-1" for x in records.all("on_event"))


def test_admin_invoke_errors(client: httpx.Client, devhost: Handle) -> None:
    key = {"x-functions-key": devhost.master_key}
    assert client.post("/admin/functions/yearly", json={"input": ""}).status_code == 401
    assert (
        client.post(
            "/admin/functions/yearly", json={"input": ""}, headers={"x-functions-key": devhost.function_key}
        ).status_code
        == 401
    )
    assert client.post("/admin/functions/nope", json={"input": ""}, headers=key).status_code == 404
    assert client.post("/admin/functions/echo", json={"input": ""}, headers=key).status_code == 400
    assert client.post("/admin/functions/yearly", json={"input": 3}, headers=key).status_code == 400
