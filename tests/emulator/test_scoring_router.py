"""The endpoints' scoring URIs: keys, deployment choice, traffic, timeouts, process lifecycle."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.emulator import helpers
from tests.emulator.conftest import Admin

pytestmark = [pytest.mark.emulator, pytest.mark.integration]

REQUEST = {"input_data": {"input_string": [[{"role": "user", "content": "hi"}]], "parameters": {}}, "params": {}}
API = {"api-version": "2023-04-01-preview"}


@pytest.fixture(scope="module")
def two_deployments(shared_emulator: Any) -> dict[str, Any]:
    """An endpoint with deployments blue and green (fake scorer), traffic 50/50."""
    emu = Admin(shared_emulator)
    model = helpers.trained_model(emu)
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    helpers.create_endpoint(emu, endpoint)
    for name in ("blue", "green"):
        _r, status = helpers.create_deployment(emu, endpoint, name, model)
        assert status["status"] == "Succeeded", status
    helpers.set_traffic(emu, endpoint, {"blue": 50, "green": 50})
    ep = emu.http.get(emu.ws(f"/onlineEndpoints/{endpoint}"), params=API).json()
    emu.close()
    return {"endpoint": endpoint, "model": model, "scoring_uri": ep["properties"]["scoringUri"]}


def _score(client: httpx.Client, uri: str, key: str | None, deployment: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if deployment:
        headers["azureml-model-deployment"] = deployment
    return client.post(uri, json=REQUEST, headers=headers)


def test_keys(emu: Admin, two_deployments: dict[str, Any]) -> None:
    uri, endpoint = two_deployments["scoring_uri"], two_deployments["endpoint"]
    keys = helpers.keys(emu, endpoint)
    assert _score(emu.http, uri, keys["primaryKey"]).status_code == 200
    assert _score(emu.http, uri, keys["secondaryKey"]).status_code == 200
    wrong = _score(emu.http, uri, "not-the-key")
    assert wrong.status_code == 401 and "www-authenticate" in wrong.headers
    assert _score(emu.http, uri, None).status_code == 401
    r = emu.http.post(
        emu.ws(f"/onlineEndpoints/{endpoint}/regenerateKeys"), params=API, json={"keyType": "Primary"}
    )
    assert r.status_code == 202 and helpers.poll(emu, r)["status"] == "Succeeded"
    new = helpers.keys(emu, endpoint)
    assert new["primaryKey"] != keys["primaryKey"] and new["secondaryKey"] == keys["secondaryKey"]
    assert _score(emu.http, uri, keys["primaryKey"]).status_code == 401
    assert _score(emu.http, uri, new["primaryKey"]).status_code == 200


def test_deployment_header_and_traffic_split(emu: Admin, two_deployments: dict[str, Any]) -> None:
    uri, endpoint = two_deployments["scoring_uri"], two_deployments["endpoint"]
    key = helpers.keys(emu, endpoint)["secondaryKey"]
    r = _score(emu.http, uri, key, "green")
    assert r.status_code == 200 and r.headers["azureml-model-deployment"] == "green"
    assert r.json() == [{"0": "fake: hi"}]
    seen = Counter(_score(emu.http, uri, key).headers["azureml-model-deployment"] for _ in range(60))
    assert set(seen) == {"blue", "green"} and min(seen.values()) >= 10, seen
    missing = _score(emu.http, uri, key, "purple")
    assert missing.status_code == 404 and "purple" in missing.json()["message"]
    unknown = _score(emu.http, uri.replace(endpoint, "no-such-endpoint"), key)
    assert unknown.status_code == 404


def test_no_traffic_then_header_only(emu: Admin, two_deployments: dict[str, Any]) -> None:
    uri, endpoint = two_deployments["scoring_uri"], two_deployments["endpoint"]
    key = helpers.keys(emu, endpoint)["primaryKey"]
    try:
        helpers.set_traffic(emu, endpoint, {"blue": 0, "green": 0})
        r = _score(emu.http, uri, key)
        assert r.status_code == 404 and "No valid deployments to route to" in r.json()["message"]
        assert _score(emu.http, uri, key, "blue").status_code == 200
    finally:
        helpers.set_traffic(emu, endpoint, {"blue": 50, "green": 50})
    bad = helpers.set_traffic(emu, endpoint, {"blue": 60, "green": 60})
    assert bad.status_code == 400 and "sum to 100" in bad.json()["error"]["message"]
    bad = helpers.set_traffic(emu, endpoint, {"purple": 100})
    assert bad.status_code == 400


def test_bad_answers_knob_makes_one_deployment_answer_badly(emu: Admin, two_deployments: dict[str, Any]) -> None:
    uri, endpoint = two_deployments["scoring_uri"], two_deployments["endpoint"]
    key = helpers.keys(emu, endpoint)["primaryKey"]
    try:
        emu.faults(bad_answers={f"{endpoint}/green": {"error_rate": 1.0}, "blue": {"latency_ms": 150}})
        erring = _score(emu.http, uri, key, "green")
        assert erring.status_code == 500 and erring.headers["azureml-model-deployment"] == "green"
        started = time.monotonic()
        slow = _score(emu.http, uri, key, "blue")
        assert slow.status_code == 200 and slow.json() == [{"0": "fake: hi"}] and time.monotonic() - started >= 0.15
        emu.faults(bad_answers={"green": {"wrong_rate": 0.5, "empty_rate": 0.5}})
        answers = Counter(_score(emu.http, uri, key, "green").json()[0]["0"] for _ in range(40))
        assert set(answers) == {"", "I am not able to help with that, but I hope you have a wonderful day."}
        assert _score(emu.http, uri, key, "blue").json() == [{"0": "fake: hi"}]  # only green answers badly
        bad = emu.http.post(emu.handle.admin_url + "/faults", json={"bad_answers": {"green": {"wrong_rate": 2}}})
        assert bad.status_code == 400 and "rates are numbers" in bad.text
    finally:
        emu.faults(bad_answers=None)


def _requests(emu: Admin, endpoint: str, since: str, deployment: str) -> dict[str, float]:
    """RequestsPerMinute by status class for one deployment, from the Azure Monitor metrics API."""
    r = emu.http.get(emu.ws(f"/onlineEndpoints/{endpoint}/providers/Microsoft.Insights/metrics"), params={
        "api-version": "2023-10-01", "metricnames": "RequestsPerMinute,RequestLatency_P95", "aggregation": "Total",
        "interval": "PT1M", "timespan": f"{since}/2999-01-01T00:00:00Z",
        "$filter": f"deployment eq '{deployment}' and statusCodeClass eq '*'"})
    assert r.status_code == 200, r.text
    requests, latency = r.json()["value"]
    assert requests["name"]["value"] == "RequestsPerMinute" and latency["unit"] == "MilliSeconds"
    found: dict[str, float] = {}
    for series in requests["timeseries"]:
        klass = next(m["value"] for m in series["metadatavalues"] if m["name"]["value"] == "statusCodeClass")
        found[klass] = found.get(klass, 0) + sum(point["total"] for point in series["data"])
    return found


def test_mirror_traffic_copies_live_calls_and_monitor_metrics_count_them(emu: Admin, two_deployments: dict[str, Any]) -> None:
    uri, endpoint = two_deployments["scoring_uri"], two_deployments["endpoint"]
    key = helpers.keys(emu, endpoint)["primaryKey"]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    try:
        assert helpers.set_traffic(emu, endpoint, {"blue": 100, "green": 0}, {"green": 50}).status_code in (200, 201)
        blue_before, green_before = _requests(emu, endpoint, since, "blue"), _requests(emu, endpoint, since, "green")
        served = Counter(_score(emu.http, uri, key).headers["azureml-model-deployment"] for _ in range(60))
        assert served == {"blue": 60}  # the caller only ever sees the live deployment's answers
        time.sleep(0.5)  # the copies are fire and forget
        blue, green = _requests(emu, endpoint, since, "blue"), _requests(emu, endpoint, since, "green")
        assert blue.get("2xx", 0) - blue_before.get("2xx", 0) == 60
        mirrored = green.get("2xx", 0) - green_before.get("2xx", 0)
        assert 15 <= mirrored <= 45, mirrored  # about half of them, copied
        emu.faults(bad_answers={"green": {"error_rate": 1.0}})
        for _ in range(30):
            assert _score(emu.http, uri, key).status_code == 200  # a failing mirror never fails a caller
        time.sleep(0.5)
        assert _requests(emu, endpoint, since, "green").get("5xx", 0) > 0
        both = helpers.set_traffic(emu, endpoint, {"blue": 50, "green": 50}, {"green": 10})
        assert both.status_code == 400 and "live or mirrored" in both.text
        over = helpers.set_traffic(emu, endpoint, {"blue": 100, "green": 0}, {"green": 60})
        assert over.status_code == 400 and "between 0 and 50" in over.text
    finally:
        emu.faults(bad_answers=None)
        helpers.set_traffic(emu, endpoint, {"blue": 50, "green": 50}, {})


def test_scoring_makes_no_control_plane_calls(emu: Admin, two_deployments: dict[str, Any]) -> None:
    uri, endpoint = two_deployments["scoring_uri"], two_deployments["endpoint"]
    key = helpers.keys(emu, endpoint)["primaryKey"]
    emu.post("/requests/reset")
    latencies = []
    with httpx.Client(verify=emu.handle.ca_bundle) as client:
        for _ in range(50):
            t0 = time.perf_counter()
            assert _score(client, uri, key).status_code == 200
            latencies.append(time.perf_counter() - t0)
    counts = emu.requests()
    assert counts["totals"].get("arm", 0) == 0, counts
    assert counts["totals"]["scoring"] == 50
    assert counts["routes"]["scoring"] == {"POST /endpoints/{endpoint}/score": 50}
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.02  # p50 via the TLS router to the fake scorer (~2 ms idle)


def test_delete_stops_process_and_refuses_with_traffic(emu: Admin) -> None:
    model = helpers.trained_model(emu)
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    helpers.create_endpoint(emu, endpoint)
    _, status = helpers.create_deployment(emu, endpoint, "solo", model)
    assert status["status"] == "Succeeded"
    helpers.set_traffic(emu, endpoint, {"solo": 100})
    state = emu.handle.data_dir / "state" / "deployments"
    pid = json.loads((state / (quote(f"{endpoint}/solo", safe="") + ".json")).read_text())["pid"]
    os.kill(pid, 0)  # alive
    refused = emu.http.delete(emu.ws(f"/onlineEndpoints/{endpoint}/deployments/solo"), params=API)
    assert refused.status_code == 400 and "traffic" in refused.json()["error"]["message"]
    r = emu.http.delete(emu.ws(f"/onlineEndpoints/{endpoint}"), params=API)
    assert r.status_code == 202 and helpers.poll(emu, r)["status"] == "Succeeded"
    assert emu.http.get(emu.ws(f"/onlineEndpoints/{endpoint}"), params=API).status_code == 404
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the scoring process is still running after the endpoint was deleted")


def test_request_timeout_from_deployment_settings(emulator_factory: Any) -> None:
    handle = emulator_factory(env={"FAKE_SCORER_DELAY": "1.5"})
    emu = Admin(handle)
    try:
        model = helpers.trained_model(emu)
        helpers.create_endpoint(emu, "slow-ep")
        _, status = helpers.create_deployment(emu, "slow-ep", "blue", model, timeout_ms=500)
        assert status["status"] == "Succeeded"
        helpers.set_traffic(emu, "slow-ep", {"blue": 100})
        uri = emu.http.get(emu.ws("/onlineEndpoints/slow-ep"), params=API).json()["properties"]["scoringUri"]
        t0 = time.monotonic()
        r = _score(emu.http, uri, helpers.keys(emu, "slow-ep")["primaryKey"])
        assert r.status_code == 408 and time.monotonic() - t0 < 1.4
    finally:
        emu.close()
