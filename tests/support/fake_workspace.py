"""An in-memory stand-in for the workspace MLClient's job and model operations used by the lifecycle.

Unit tests only (the emulator covers the real SDK path). Endpoints and deployments are not here: the
lifecycle reaches them over REST (``tests/support/fake_endpoints.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from tests.support.fake_quota import FakeCompute


@dataclass
class FakeWorkspace:
    jobs: dict[str, Any] = field(default_factory=dict)
    models: dict[tuple[str, str], Any] = field(default_factory=dict)
    model_creates: int = 0

    def __post_init__(self) -> None:
        # sizes and usages (quota): empty, so quota is not checked unless a test arranges them
        self.compute = FakeCompute()
        self.ws = SimpleNamespace(
            jobs=SimpleNamespace(get=self._get_job),
            models=SimpleNamespace(get=self._get_model, create_or_update=self._create_model),
            compute=self.compute,
        )

    def add_job(self, name: str, status: str, error: str | None = None) -> None:
        # the SDK hands back a JobStatus enum member, not a plain string
        from azure.ai.ml._restclient.arm_ml_service.models._enums import JobStatus

        self.jobs[name] = SimpleNamespace(name=name, status=JobStatus(status), properties={"azureml.metrics.eval_loss": "1.25"},
                                          error=SimpleNamespace(message=error) if error else None)

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
