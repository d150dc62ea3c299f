"""The emulator's start-up configuration (command-line flags and environment)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Azurite's well-known development account (public, documented by Microsoft) on its default ports.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEV_CONNECTION_STRING = (
    f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
    f"BlobEndpoint=http://127.0.0.1:10000/{DEV_ACCOUNT};QueueEndpoint=http://127.0.0.1:10001/{DEV_ACCOUNT};"
    f"TableEndpoint=http://127.0.0.1:10002/{DEV_ACCOUNT};"
)

DEFAULT_BASE_MODEL = "Phi-3-mini-4k-instruct"
LRO_RETRY_AFTER_S = 10  # what Azure ML sends on its 202s (its REST specs allow 10-600)


@dataclass
class EmulatorConfig:
    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    storage: str = DEV_CONNECTION_STRING
    events_config: Path | None = None
    # Where the CA and server certificate live (default <data-dir>/tls); share it to trust one CA.
    tls_dir: Path | None = None
    # Identity of the emulated Azure resources (any values work: the SDK only echoes them back).
    subscription_id: str = "5d3c1f0e-7a2b-4c9d-8e6f-000000000001"
    resource_group: str = "tuneflow-local"
    workspace_name: str = "tuneflow-ws"
    location: str = "eastus2"
    registry_name: str = "azureml"
    registry_resource_group: str = "registry-builtin-local"
    base_model_name: str = DEFAULT_BASE_MODEL
    base_model_version: str = "15"
    # A real local Hugging Face model directory to use as the base model's weights instead of the
    # colleague-built tiny model (env TUNEFLOW_EMULATOR_BASE_MODEL_DIR).
    base_model_dir: Path | None = None
    faults: dict[str, Any] = field(default_factory=dict)
    # Dedicated vCPU quota per VM family (as vmSizes names it; "regional" for the total), over
    # emulator.quota.DEFAULT_LIMITS (--core-quota FAMILY=CORES).
    core_quota: dict[str, int] = field(default_factory=dict)
    # Where built artefacts shared between data dirs are cached (the base model's weights).
    cache_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("TUNEFLOW_EMULATOR_CACHE", str(Path.home() / ".cache" / "tuneflow-emulator"))
        )
    )
    # Commands that run the training and scoring processes (overridable for tests and experiments).
    trainer_command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "emulator.training"])
    scorer_command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "emulator.scoring"])
    blob_poll_interval: float = 0.5
    # Azure's clock, scaled: 1.0 runs Event Grid's retry schedule (10 s, 30 s, 1 min, …), the event time to
    # live (24 h) and long-running operations' Retry-After (10 s) in real time; the default runs them 20×
    # faster so a local stack converges in seconds. Event Grid's 30 s answer window is not scaled.
    time_scale: float = 0.05
    delivery_attempts: int = 30  # Event Grid's default maximum delivery attempts (1-30)
    event_ttl_minutes: float = 1440.0  # Event Grid's default event time to live, scaled by time_scale
    delivery_timeout: float = 30.0  # seconds Event Grid waits for an answer before it counts a failure
    # How long a deployment's scoring process may take to become ready.
    deployment_ready_timeout: float = 300.0
    # Seconds a long-running operation stays in progress at least (Azure never answers at once).
    lro_min_seconds: float = 0.2

    def scaled(self, seconds: float) -> float:
        """A span of Azure's time on the emulator's clock."""
        return seconds * self.time_scale

    @property
    def retry_after_header(self) -> str:
        """Retry-After of a 202: Azure ML declares 10-600 s and sends 10; whole seconds (azure-ai-ml parses
        an int), so at least 1 on a fast clock. azure-core's pollers sleep this long between polls."""
        return str(max(1, round(self.scaled(LRO_RETRY_AFTER_S))))

