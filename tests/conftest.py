"""Session-wide fixtures: a real Azurite for every test that asks for it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.azurite import Azurite, start_azurite

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(autouse=True)
def _no_leaked_azureml_cloud() -> None:
    """azure-ai-ml remembers the last MLClient's cloud in AZUREML_CURRENT_CLOUD; a test that talked to
    the emulator must not send the next test's default (Azure public cloud) client there."""
    os.environ.pop("AZUREML_CURRENT_CLOUD", None)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = start_azurite()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The team's reference material beside the project (../shared/reference)."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference material not found at {REFERENCE} (CI places ../shared beside the project)")
    return REFERENCE
