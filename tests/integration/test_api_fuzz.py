"""Property-based probes through the real stack (devhost hosting function_app, the emulator, Azurite): no
input makes a route answer 5xx or an Event Grid webhook fail, and none changes state.

Every HTTP route is sent random path segments, query strings, headers and bodies (JSON of any shape and
depth, and raw bytes); both Event Grid webhooks are sent random envelopes and mutations of the documented
payloads. A 4xx must come in the documented error shape. Afterwards the run records (by ETag), the jobs
and the endpoints (deployments, traffic) are as they were. The budget is small (about 600 requests, ~15 s),
so ``make test`` grows by seconds; ``HYPOTHESIS_PROFILE=deep`` runs many more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.emulator import helpers
from tests.support.api_stack import Stack
from tests.support.events import load_event

pytestmark = [pytest.mark.integration, pytest.mark.emulator]

settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("deep", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# -- inputs ------------------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=30)
# bodies shaped like the real ones, with random values, so validation goes deep rather than stopping at once
field_names = st.sampled_from(["messages", "parameters", "deployment", "callback_url", "model", "stream",
                               "temperature", "top_p", "max_tokens", "n", "stop", "seed", "user",
                               "stream_options", "input_data", "role", "content"])
shaped_bodies = st.dictionaries(field_names, json_values, max_size=6)
# a valid request whose parameters nest deeper than orjson can re-encode (it reads 1024 levels, writes 254)
deep_bodies = st.integers(60, 400).map(
    lambda n: '{"messages": [{"role": "user", "content": "hi"}], "parameters": ' + '{"a": ' * n + "1" + "}" * n + "}")
bodies = st.one_of(shaped_bodies.map(json.dumps), json_values.map(json.dumps), deep_bodies, deep_bodies,
                   st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
segments = st.text(min_size=1, max_size=40) | st.sampled_from(
    ["tuneflow-chat\n", "abc\n", "..", "%2e%2e", "a" * 300, "²", "①", "chat%00", " ", "blue/../x"])
query_values = st.text(max_size=20) | st.sampled_from(["²", "³¹", "①", "-1", "0", "1001", "9" * 40, "1e3"])
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)

ROUTES: list[tuple[str, str]] = [
    ("POST", "/api/score"), ("GET", "/api/score/{}"), ("POST", "/api/v1/chat/completions"),
    ("GET", "/api/v1/models"), ("GET", "/api/v1/models/{}"), ("GET", "/api/runs"), ("GET", "/api/runs/{}"),
    ("POST", "/api/runs/{}/cancel"), ("GET", "/api/runs/{}/metrics"), ("GET", "/api/runs/{}/report"),
    ("GET", "/api/runs/{}/events"), ("GET", "/api/dashboard"), ("GET", "/api/dashboard/assets/{}"),
    ("GET", "/api/health"), ("GET", "/api/endpoints"), ("DELETE", "/api/endpoints/{}"), ("DELETE", "/api/endpoints/{}/deployments/{}"),
    ("GET", "/api/endpoints/{}/status"), ("GET", "/api/endpoints/{}/deployments/{}/status"),
]

# -- state ------------------------------------------------------------------------------------------


def state(stack: Stack) -> dict[str, Any]:
    """What a malformed input must not change: run records (ETags), jobs, endpoints with their deployments."""
    from azure.storage.blob import ContainerClient

    out = ContainerClient.from_connection_string(stack.admin.conn["storage_connection_string"],
                                                 stack.settings.output_container)
    records = ({b.name: b.etag for b in out.list_blobs(name_starts_with="runs/")} if out.exists() else {})
    api = {"api-version": helpers.API}
    jobs = sorted(j["name"] for j in stack.admin.http.get(stack.admin.ws("/jobs"), params=api).json()["value"])
    endpoints = {}
    for ep in stack.admin.http.get(stack.admin.ws("/onlineEndpoints"), params=api).json()["value"]:
        deployments = stack.admin.http.get(stack.admin.ws(f"/onlineEndpoints/{ep['name']}/deployments"),
                                           params=api).json()["value"]
        endpoints[ep["name"]] = (ep["properties"].get("traffic"), sorted(d["name"] for d in deployments))
    return {"records": records, "jobs": jobs, "endpoints": endpoints}


@pytest.fixture
def unchanged(stack: Stack) -> Iterator[None]:
    before = state(stack)
    yield
    assert state(stack) == before


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.dh.url, timeout=30) as client:
        yield client


def check_answer(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what} → {response.status_code}: {response.text[:300]}"
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
        error = response.json().get("error")
        assert isinstance(error, dict) and isinstance(error.get("message"), str), (what, response.text[:300])


# -- HTTP routes --------------------------------------------------------------------------------------


@given(route=st.sampled_from(ROUTES), parts=st.lists(segments, min_size=2, max_size=2),
       query=st.dictionaries(st.sampled_from(["limit", "state", "q", "cursor", "v", "code2", "api-version", "x"]),
                             query_values,
                             max_size=3),
       headers=st.dictionaries(st.sampled_from(["content-type", "accept", "x-request-id", "content-length2",
                                                "x-ms-foo", "authorization"]), header_values, max_size=3),
       body=bodies)
def test_no_route_answers_5xx_for_any_input(stack: Stack, http: httpx.Client, unchanged: None, *,
                                            route: tuple[str, str], parts: list[str], query: dict[str, str],
                                            headers: dict[str, str], body: str) -> None:
    method, template = route
    path = template.format(*(quote(p, safe="") for p in parts[: template.count("{}")]))
    admin = method == "DELETE" or template.endswith("/cancel")
    key = stack.dh.master_key if admin else stack.dh.function_key  # reach the handler, not 401
    response = http.request(method, path, params=query, content=body.encode() if method == "POST" else None,
                            headers={**headers, "x-functions-key": key})
    check_answer(response, f"{method} {path}")


@pytest.mark.parametrize("path", ["/api/score", "/api/v1/chat/completions"])
@given(body=bodies, stream=st.booleans())
def test_no_request_body_makes_a_5xx(stack: Stack, http: httpx.Client, unchanged: None, *, path: str, body: str,
                                     stream: bool) -> None:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and stream:
        data["stream"] = True
        body = json.dumps(data)
    response = http.post(path, content=body.encode(),
                         headers={"x-functions-key": stack.dh.function_key, "content-type": "application/json"})
    check_answer(response, path)


# -- Event Grid webhooks ----------------------------------------------------------------------------

DOCUMENTED = ["blob_created_putblob", "run_status_running_camel", "run_completed_camel", "model_registered_camel"]


def mutated(event: dict[str, Any], draw: st.DrawFn) -> dict[str, Any]:
    """The event with one to three fields (envelope or data) replaced by random JSON or removed."""
    event = json.loads(json.dumps(event))
    for _ in range(draw(st.integers(1, 3))):
        target = event if draw(st.booleans()) or not isinstance(event.get("data"), dict) else event["data"]
        keys = [*target.keys(), "tuneflow.run_id"]
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(json_values | segments)
    return event


@st.composite
def envelopes(draw: st.DrawFn) -> Any:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(json_values)  # anything at all
    event = load_event(draw(st.sampled_from(DOCUMENTED)))
    if choice == 1:
        return [mutated(event, draw)]
    if choice == 2:  # tags naming runs that are not run ids, subjects that walk out of the container
        data = event.setdefault("data", {})
        for tags in ("runTags", "modelTags"):
            if tags in data:
                data[tags] = {"tuneflow.run_id": draw(segments)}
        if "subject" in event and "blobs/" in event["subject"]:
            event["subject"] = event["subject"].split("/blobs/")[0] + "/blobs/" + draw(segments)
        return [event]
    return [mutated(event, draw) for _ in range(draw(st.integers(1, 3)))]


@given(function=st.sampled_from(["ingest", "lifecycle"]), payload=envelopes())
def test_event_grid_webhooks_acknowledge_what_they_can_never_process(stack: Stack, http: httpx.Client,
                                                                   unchanged: None, *, function: str,
                                                                   payload: Any) -> None:
    # blob events name the stack's drop container, so they reach storage rather than stop at the filter
    text = json.dumps(payload).replace("/containers/datasets/", f"/containers/{stack.settings.drop_container}/")
    response = http.post(stack.dh.eventgrid_url(function), content=text.encode(),
                         headers={"aeg-event-type": "Notification", "content-type": "application/json"})
    check_answer(response, f"{function} webhook")
