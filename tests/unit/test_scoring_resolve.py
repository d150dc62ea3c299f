"""Endpoint resolution through the control plane over ARM's REST API (httpx.MockTransport as ARM)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from shared.endpoints.control import model_of
from shared.errors import EndpointNotFound, TransientError
from shared.scoring.resolve import ControlPlaneResolver
from tests.support.fake_endpoints import WS, control_plane

EP = f"https://arm.test{WS}/onlineEndpoints/tuneflow-chat"


def resolver(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[ControlPlaneResolver,
                                                                          list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []

    def record(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path))
        assert request.headers["authorization"] == "Bearer arm-token"
        assert request.url.params["api-version"]
        return handler(request)

    return ControlPlaneResolver(control_plane(record)), calls


def arm(request: httpx.Request, state: str = "Succeeded", auth: str = "Key") -> httpx.Response:
    path = request.url.path
    if path.endswith("/listKeys"):
        return httpx.Response(200, json={"primaryKey": "pk", "secondaryKey": "sk"})
    if path.endswith("/deployments"):
        return httpx.Response(200, json={"value": [
            {"name": "blue", "properties": {"model": f"azureml:{WS}/models/chat-ft/versions/3"}, "tags": {}},
            {"name": "green", "properties": {"model": "azureml:whatever:1"}, "tags": {"tuneflow.model": "chat-ft:4"}},
        ]})
    return httpx.Response(200, json={"name": "tuneflow-chat", "properties": {
        "scoringUri": "https://x.inference.ml.azure.com/score", "authMode": auth, "provisioningState": state,
        "traffic": {"blue": 100, "green": 0}}})


def test_resolves_uri_key_and_models_in_three_calls():
    r, calls = resolver(arm)
    info = asyncio.run(r.resolve("tuneflow-chat"))
    assert info.scoring_uri == "https://x.inference.ml.azure.com/score" and info.key == "pk"
    assert info.models == {"blue": "chat-ft:3", "green": "chat-ft:4"} and info.traffic == {"blue": 100, "green": 0}
    assert sorted(calls) == sorted([("GET", f"{WS}/onlineEndpoints/tuneflow-chat"),
                                    ("POST", f"{WS}/onlineEndpoints/tuneflow-chat/listKeys"),
                                    ("GET", f"{WS}/onlineEndpoints/tuneflow-chat/deployments")])
    assert "pk" not in repr(info)  # the key stays out of reprs (and so out of logs)


def test_missing_and_deleting_endpoints_are_not_found():
    r, _ = resolver(lambda request: httpx.Response(404, json={"error": {"code": "NotFound"}}))
    with pytest.raises(EndpointNotFound, match="does not exist"):
        asyncio.run(r.resolve("tuneflow-chat"))
    r, _ = resolver(lambda request: arm(request, state="Deleting"))
    with pytest.raises(EndpointNotFound, match="being deleted"):
        asyncio.run(r.resolve("tuneflow-chat"))


def test_control_plane_failures_are_transient():
    r, _ = resolver(lambda request: httpx.Response(429, json={"error": {"message": "throttled"}}))
    with pytest.raises(TransientError, match="429: throttled"):
        asyncio.run(r.resolve("tuneflow-chat"))


def test_token_auth_endpoints_use_the_endpoint_token():
    def handler(request):
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"accessToken": "aml-tok", "expiryTimeUtc": int(time.time()) + 3600})
        return arm(request, auth="AMLToken")

    r, calls = resolver(handler)
    info = asyncio.run(r.resolve("tuneflow-chat"))
    assert info.key == "aml-tok" and info.expires_at < float("inf")
    assert not any(path.endswith("/listKeys") for _, path in calls)


@pytest.mark.parametrize(("model_id", "tags", "expected"), [
    ("azureml:/subscriptions/s/resourceGroups/g/workspaces/w/models/chat-ft/versions/7", {}, "chat-ft:7"),
    ("azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/15", None, "Phi-3-mini-4k-instruct:15"),
    ("azureml:chat-ft:2", {}, "chat-ft:2"),
    ("azureml:chat-ft:2", {"tuneflow.model": "chat-ft:9"}, "chat-ft:9"),
    (None, {}, None),
])
def test_model_of(model_id, tags, expected):
    assert model_of(model_id, tags) == expected
