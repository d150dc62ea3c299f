"""Azure ML clients for tests: the real SDK over the fake ARM, and the fake registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azure.ai.ml import MLClient

from shared.azureml.submit import PipelineSubmitter
from shared.connections import AzureML, StaticTokenCredential
from shared.settings import Settings
from tests.support.fake_registry import fake_registry


def fake_clients(spec: Path, **registry: Any) -> AzureML:
    workspace = MLClient(StaticTokenCredential(), "sub", "rg", "ws", show_progress=False)
    return AzureML(workspace, fake_registry(spec, **registry), "sub", "rg", "ws")


def submitter(settings: Settings, spec: Path, **registry: Any) -> PipelineSubmitter:
    clients = fake_clients(spec, **registry)
    return PipelineSubmitter(settings, lambda: clients)
