"""A fake Azure ML control plane at the HTTP layer (``responses``) for unit tests.

The unmodified SDK builds real requests; this answers the few routes a submission touches and
records every request, so tests can assert the exact PUT body Azure ML would receive.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import responses

ARM = "https://management.azure.com"
WS = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


@dataclass
class FakeArm:
    compute_size: str = "Standard_NC24ads_A100_v4"
    compute_state: str = "Succeeded"
    gpus: int = 1
    datastore_exists: bool = True
    job_status: int | None = None  # force an error status on the job PUT
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)

    def install(self, mock: responses.RequestsMock) -> None:
        for method in (responses.GET, responses.PUT, responses.POST):
            mock.add_callback(method, re.compile(re.escape(ARM) + ".*"), callback=self._handle)
        mock.add_callback(responses.GET, re.compile(r"https://eastus\.api\.azureml\.ms/discovery.*"),
                          callback=lambda r: (200, {}, json.dumps({"api": "https://eastus.api.azureml.ms"})))

    def puts(self, fragment: str) -> list[Any]:
        return [body for method, url, body in self.requests if method == "PUT" and fragment in url]

    def _handle(self, request: Any) -> tuple[int, dict[str, str], str]:
        path = request.path_url.split("?")[0]
        body = json.loads(request.body) if request.body else None
        self.requests.append((request.method, path, body))
        if path == WS:
            return _ok({"id": WS, "name": "ws", "location": "eastus", "kind": "Default",
                        "type": "Microsoft.MachineLearningServices/workspaces",
                        "properties": {"discoveryUrl": "https://eastus.api.azureml.ms/discovery"}})
        if "/computes/" in path:
            name = path.rsplit("/", 1)[-1]
            if name != "gpu-cluster-big":
                return _error(404, "ResourceNotFound", f"compute {name} not found")
            return _ok({"id": path, "name": name, "location": "eastus",
                        "type": "Microsoft.MachineLearningServices/workspaces/computes",
                        "properties": {"computeType": "AmlCompute", "provisioningState": self.compute_state,
                                       "properties": {"vmSize": self.compute_size,
                                                      "scaleSettings": {"maxNodeCount": 2, "minNodeCount": 0}}}})
        if path.endswith("/vmSizes"):
            return _ok({"value": [{"name": self.compute_size, "gpus": self.gpus, "vCPUs": 24},
                                  {"name": "Standard_DS3_v2", "gpus": 0, "vCPUs": 4}]})
        if "/datastores/" in path:
            if request.method == "PUT":
                self.datastore_exists = True
                return _ok({"id": path, "name": path.rsplit("/", 1)[-1], "properties": body["properties"]})
            if not self.datastore_exists:
                return _error(404, "UserError", "datastore not found")
            return _ok({"id": path, "name": path.rsplit("/", 1)[-1], "properties": {
                "datastoreType": "AzureBlob", "accountName": "devstoreaccount1", "containerName": "tuneflow",
                "credentials": {"credentialsType": "None"}, "endpoint": "core.windows.net", "protocol": "https"}})
        if "/jobs/" in path:
            name = path.rsplit("/", 1)[-1]
            if request.method == "PUT":
                if self.job_status:
                    return _error(self.job_status, "UserError", "the workspace refused the job")
                if name in self.jobs:
                    return _error(409, "UserError", f"job {name} already exists")
                self.jobs[name] = {"id": path, "name": name, "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                                   "properties": {**body["properties"], "status": "NotStarted"}}
                return 201, {}, json.dumps(self.jobs[name])
            if name in self.jobs:
                return _ok(self.jobs[name])
            return _error(404, "UserError", f"job {name} not found")
        return _error(404, "NotFound", f"no fake for {request.method} {path}")


def _ok(body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    return 200, {"content-type": "application/json"}, json.dumps(body)


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
    return status, {"content-type": "application/json"}, json.dumps({"error": {"code": code, "message": message}})
