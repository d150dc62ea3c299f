"""ARM's online-endpoint resources as an httpx transport handler, for unit tests of the control plane.

``shared.endpoints.control.ControlPlane`` talks to it through ``httpx.MockTransport`` (the real parts —
the emulator — are covered by tests/emulator and tests/e2e). Like Azure:

- a PUT of an endpoint or a deployment is a long-running operation, finished at once while
  ``auto_complete`` is set, else left Creating/Updating until ``finish()``;
- a deployment that takes traffic cannot be deleted;
- the scoring URI answers each deployment (pinned by ``azureml-model-deployment``) with ``smoke_answer``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx

from shared.connections import AzureMLTarget
from shared.endpoints.control import ControlPlane

ARM = "https://arm.test"
WS = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w"
TARGET = AzureMLTarget("azure", ARM, "s", "g", "w", "azureml")


class FakeCredential:
    """A token credential that hands out a fixed token (counts how often it was asked)."""

    def __init__(self, token: str = "arm-token") -> None:
        self.token = token
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.calls += 1
        return SimpleNamespace(token=self.token, expires_on=int(time.time()) + 3600)


def _not_found() -> httpx.Response:
    return httpx.Response(404, json={"error": {"code": "NotFound", "message": "not found"}})


class FakeOnlineEndpoints:
    def __init__(self) -> None:
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, str, Any]] = []
        self.invocations: list[dict[str, Any]] = []
        self.auto_complete = True
        self.fail_deployments = False
        self.traffic_updates_finish = True
        self.smoke_answer: Any = [{"0": "hello"}]
        # (deployment, request body) → answer text, or an httpx.Response to send as is; None: smoke_answer
        self.answer: Callable[[str, dict[str, Any]], str | httpx.Response] | None = None
        self._pending_put: dict[str, Any] | None = None
        self.jobs: set[str] = set()  # job names that exist (POST …/jobs/{name}/cancel answers 202 for them)
        # Azure Monitor's metrics per deployment: {"2xx": calls, "5xx": calls, "p95": ms}
        self.monitor: dict[str, dict[str, float]] = {}
        self.canceled: list[str] = []

    # ------------------------------------------------------------------------------ arranging

    def add(self, endpoint: str, traffic: dict[str, int]) -> None:
        """An endpoint that exists, with Succeeded deployments named after its traffic keys."""
        self.endpoints[endpoint] = self._endpoint_doc(endpoint, traffic, "Succeeded")
        for name in traffic:
            self.deployments[(endpoint, name)] = {"name": name, "tags": {}, "properties": {
                "model": f"{WS}/models/chat-ft/versions/{name}", "provisioningState": "Succeeded"}}

    def traffic(self, endpoint: str) -> dict[str, int]:
        return dict(self.endpoints[endpoint]["properties"]["traffic"])

    def finish(self) -> None:
        """Every long-running creation ends (Failed for deployments while ``fail_deployments``)."""
        for (_, _), doc in self.deployments.items():
            if doc["properties"]["provisioningState"] in ("Creating", "Updating"):
                doc["properties"]["provisioningState"] = "Failed" if self.fail_deployments else "Succeeded"
        for doc in self.endpoints.values():
            if doc["properties"]["provisioningState"] in ("Creating", "Updating"):
                doc["properties"]["provisioningState"] = "Succeeded"

    def puts(self, fragment: str) -> list[Any]:
        return [body for method, path, body in self.bodies if method == "PUT" and fragment in path]

    def _endpoint_doc(self, name: str, traffic: dict[str, int], state: str) -> dict[str, Any]:
        return {"name": name, "location": "eastus2", "kind": "Managed", "tags": {},
                "identity": {"type": "SystemAssigned", "principalId": "p"},
                "properties": {"authMode": "Key", "traffic": dict(traffic), "provisioningState": state,
                               "scoringUri": f"https://{name}.test/score"}}

    # ------------------------------------------------------------------------------ serving

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, path.removeprefix(WS)))
        self.bodies.append((request.method, path.removeprefix(WS), body))
        if request.url.host.endswith(".test") and path == "/score" and request.url.host != "arm.test":
            return self._score(request)
        if path == "/operations/put":
            done = self.traffic_updates_finish
            if done and self._pending_put is not None:
                self._apply(self._pending_put)
            return httpx.Response(200, json={"status": "Succeeded" if done else "InProgress"})
        if path.startswith("/operations/"):
            return httpx.Response(200, json={"status": "Succeeded" if self.auto_complete else "InProgress"})
        if path == WS:
            return httpx.Response(200, json={"name": "w", "location": "eastus2"})
        if path.startswith(WS + "/jobs/") and path.endswith("/cancel") and request.method == "POST":
            job = path.removeprefix(WS + "/jobs/").removesuffix("/cancel")
            if job not in self.jobs:
                return _not_found()
            self.canceled.append(job)
            return httpx.Response(202, headers={"Location": f"{ARM}/operations/cancel", "Retry-After": "10"})
        if path.endswith("/providers/Microsoft.Insights/metrics"):
            return self._metrics(request)
        rest = path.removeprefix(WS + "/onlineEndpoints").strip("/").split("/")
        if rest == [""]:
            return httpx.Response(200, json={"value": list(self.endpoints.values())})
        name = rest[0]
        if len(rest) == 1:
            return self._endpoint(request.method, name, body)
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return _not_found()
        if rest[1] == "listKeys":
            return httpx.Response(200, json={"primaryKey": "pk", "secondaryKey": "sk"})
        if len(rest) == 2:
            return httpx.Response(200, json={"value": [d for (e, _), d in self.deployments.items() if e == name]})
        return self._deployment(request.method, name, rest[2], body)

    def _endpoint(self, method: str, name: str, body: Any) -> httpx.Response:
        endpoint = self.endpoints.get(name)
        if method == "PUT":
            assert "scoringUri" not in body["properties"] and "principalId" not in body.get("identity", {})
            if endpoint is None:
                state = "Succeeded" if self.auto_complete else "Creating"
                self.endpoints[name] = self._endpoint_doc(name, body["properties"].get("traffic") or {}, state)
                self.endpoints[name]["tags"] = dict(body.get("tags") or {})  # ARM keeps the tags it was given
                return httpx.Response(201, json=self.endpoints[name],
                                      headers={"Azure-AsyncOperation": f"{ARM}/operations/create"})
            self._pending_put = {**body, "name": name}
            if self.traffic_updates_finish:
                self._apply(self._pending_put)
            return httpx.Response(200, json=body, headers={"Azure-AsyncOperation": f"{ARM}/operations/put"})
        if endpoint is None:
            return _not_found()
        if method == "DELETE":
            del self.endpoints[name]
            for key in [k for k in self.deployments if k[0] == name]:
                del self.deployments[key]
            return httpx.Response(202, headers={"Location": f"{ARM}/operations/delete", "Retry-After": "10"})
        return httpx.Response(200, json=endpoint)

    def _deployment(self, method: str, endpoint: str, name: str, body: Any) -> httpx.Response:
        deployment = self.deployments.get((endpoint, name))
        if method == "PUT":
            state = "Creating"
            if self.auto_complete:
                state = "Failed" if self.fail_deployments else "Succeeded"
            self.deployments[(endpoint, name)] = {"name": name, "tags": body.get("tags") or {}, "sku": body.get("sku"),
                                                  "properties": {**body["properties"], "provisioningState": state}}
            return httpx.Response(201, json=self.deployments[(endpoint, name)],
                                  headers={"Azure-AsyncOperation": f"{ARM}/operations/deployment"})
        if deployment is None:
            return _not_found()
        if method == "DELETE":
            if self.traffic(endpoint).get(name, 0) > 0:
                return httpx.Response(400, json={"error": {"message": "set its traffic to 0 before deleting it"}})
            del self.deployments[(endpoint, name)]
            return httpx.Response(202, headers={"Location": f"{ARM}/operations/delete"})
        return httpx.Response(200, json=deployment)

    def _score(self, request: httpx.Request) -> httpx.Response:
        deployment = request.headers.get("azureml-model-deployment")
        self.invocations.append({"deployment": deployment, "body": request.content.decode(),
                                 "auth": request.headers.get("authorization")})
        if self.answer is None:
            return httpx.Response(200, json=self.smoke_answer)
        answer = self.answer(str(deployment), json.loads(request.content))
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=[{"0": answer}])

    def _apply(self, body: dict[str, Any]) -> None:
        props = self.endpoints[body["name"]]["properties"]
        props["traffic"] = dict(body["properties"]["traffic"])
        props["mirrorTraffic"] = dict(body["properties"].get("mirrorTraffic") or {})
        self._pending_put = None

    def _metrics(self, request: httpx.Request) -> httpx.Response:
        """Azure Monitor's answer (its REST shape) for the deployment the $filter names."""
        flt = request.url.params.get("$filter", "")
        deployment = flt.split("deployment eq '", 1)[1].split("'", 1)[0]
        seen = self.monitor.get(deployment, {})
        dims = [{"name": {"value": "deployment"}, "value": deployment}]
        requests = [{"metadatavalues": [*dims, {"name": {"value": "statusCodeClass"}, "value": klass}],
                     "data": [{"timeStamp": "2026-01-01T00:00:00Z", "total": seen[klass]}]}
                    for klass in ("2xx", "5xx") if klass in seen]
        latency = [{"metadatavalues": dims, "data": [{"timeStamp": "2026-01-01T00:00:00Z", "average": seen["p95"]}]}
                   ] if "p95" in seen else []
        return httpx.Response(200, json={"value": [
            {"name": {"value": "RequestsPerMinute"}, "unit": "Count", "timeseries": requests},
            {"name": {"value": "RequestLatency_P95"}, "unit": "MilliSeconds", "timeseries": latency}]})


def control_plane(fake: Callable[[httpx.Request], httpx.Response], credential: Any = None) -> ControlPlane:
    """A ControlPlane over ``fake``, on a clock that only its own waiting moves (tests never sleep)."""
    client = httpx.Client(transport=httpx.MockTransport(fake))
    cred = credential or FakeCredential()
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return ControlPlane(lambda: TARGET, lambda: cred, lambda: client, clock=lambda: now[0], sleep=sleep)
