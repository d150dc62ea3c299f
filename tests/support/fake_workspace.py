"""An in-memory stand-in for the workspace MLClient's operations used by the lifecycle.

Unit tests only (the emulator covers the real SDK path). Long-running operations complete when
``auto_complete`` is set, otherwise they stay in Creating/Updating until ``finish()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from azure.core.exceptions import ResourceNotFoundError


@dataclass
class Poller:
    finished: bool

    def wait(self, timeout: float | None = None) -> None:
        return None

    def done(self) -> bool:
        return self.finished


@dataclass
class FakeWorkspace:
    auto_complete: bool = True
    fail_deployments: bool = False
    smoke_answer: str = '[{"0": "hello"}]'
    jobs: dict[str, Any] = field(default_factory=dict)
    models: dict[tuple[str, str], Any] = field(default_factory=dict)
    endpoints: dict[str, Any] = field(default_factory=dict)
    deployments: dict[str, Any] = field(default_factory=dict)
    invocations: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    model_creates: int = 0

    def __post_init__(self) -> None:
        ws = self
        self.ws = SimpleNamespace(
            jobs=SimpleNamespace(get=self._get_job),
            models=SimpleNamespace(get=self._get_model, create_or_update=self._create_model),
            online_endpoints=SimpleNamespace(get=self._get_endpoint, begin_create_or_update=self._put_endpoint,
                                             invoke=self._invoke),
            online_deployments=SimpleNamespace(
                get=lambda name, endpoint_name: ws._lookup(ws.deployments, name),
                begin_create_or_update=self._put_deployment,
                begin_delete=self._delete_deployment,
                list=lambda endpoint_name: [d for d in ws.deployments.values() if d.endpoint_name == endpoint_name],
            ),
        )

    def add_job(self, name: str, status: str, error: str | None = None) -> None:
        # the SDK hands back a JobStatus enum member, not a plain string
        from azure.ai.ml._restclient.arm_ml_service.models._enums import JobStatus

        self.jobs[name] = SimpleNamespace(name=name, status=JobStatus(status), properties={"azureml.metrics.eval_loss": "1.25"},
                                          error=SimpleNamespace(message=error) if error else None)

    def finish(self) -> None:
        for resource in [*self.endpoints.values(), *self.deployments.values()]:
            if resource.provisioning_state in ("Creating", "Updating"):
                failed = self.fail_deployments and hasattr(resource, "endpoint_name")
                resource.provisioning_state = "Failed" if failed else "Succeeded"

    def _lookup(self, table: dict[str, Any], name: str) -> Any:
        if name not in table:
            raise ResourceNotFoundError(f"{name} not found")
        return table[name]

    def _get_job(self, name: str) -> Any:
        return self._lookup(self.jobs, name)

    def _get_model(self, name: str, version: str) -> Any:
        if (name, version) not in self.models:
            raise ResourceNotFoundError("model not found")
        return self.models[(name, version)]

    def _create_model(self, model: Any) -> Any:
        self.model_creates += 1
        self.models[(model.name, model.version)] = model
        return model

    def _state(self) -> str:
        return "Succeeded" if self.auto_complete else "Creating"

    def _get_endpoint(self, name: str) -> Any:
        return self._lookup(self.endpoints, name)

    def _put_endpoint(self, endpoint: Any) -> Poller:
        record = self.endpoints.get(endpoint.name)
        if record is None:
            record = SimpleNamespace(name=endpoint.name, auth_mode=endpoint.auth_mode, provisioning_state=self._state())
            self.endpoints[endpoint.name] = record
        record.traffic = dict(endpoint.traffic or {})
        return Poller(record.provisioning_state == "Succeeded")

    def _put_deployment(self, deployment: Any) -> Poller:
        state = self._state()
        if state == "Succeeded" and self.fail_deployments:
            state = "Failed"
        self.deployments[deployment.name] = SimpleNamespace(
            name=deployment.name, endpoint_name=deployment.endpoint_name, model=deployment.model,
            liveness_probe=deployment.liveness_probe, request_settings=deployment.request_settings,
            provisioning_state=state)
        return Poller(state != "Creating")

    def _delete_deployment(self, name: str, endpoint_name: str) -> Poller:
        self.deleted.append(name)
        self.deployments.pop(name, None)
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is not None and endpoint.traffic:
            endpoint.traffic = {k: v for k, v in endpoint.traffic.items() if k != name}
        return Poller(True)

    def _invoke(self, endpoint_name: str, deployment_name: str, request_file: str) -> str:
        with open(request_file) as f:
            self.invocations.append({"deployment": deployment_name, "body": f.read()})
        return self.smoke_answer
