"""A PipelineSubmitter whose workspace client is the real SDK over the fake ARM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azure.ai.ml import MLClient

from shared.azureml.clients import AzureML, StaticTokenCredential
from shared.azureml.submit import PipelineSubmitter
from shared.settings import Settings
from tests.support.fake_registry import fake_registry


def submitter(settings: Settings, spec: Path, **registry: Any) -> PipelineSubmitter:
    workspace = MLClient(StaticTokenCredential(), "sub", "rg", "ws", show_progress=False)
    clients = AzureML(workspace, fake_registry(spec, **registry), "sub", "rg", "ws")
    return PipelineSubmitter(settings, clients)
