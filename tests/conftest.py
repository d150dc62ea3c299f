"""Session-wide fixtures: a real Azurite for every test that asks for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.azurite import Azurite, start_azurite

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


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
