"""Fixtures for the integration tests: one API stack for the package (it takes seconds to start)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api_stack import Stack, api_stack


@pytest.fixture(scope="package")
def stack(azurite: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with api_stack(azurite, tmp_path_factory.mktemp("api-http")) as built:
        yield built
