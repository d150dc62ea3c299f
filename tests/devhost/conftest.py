"""One devhost (hosting tests/devhost/sample_app.py) on the session's Azurite, shared by these tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devhost.process import Handle, start_devhost

APP = "tests.devhost.sample_app:app"


class Records:
    """What the sample app's non-HTTP functions received (one JSON line per invocation)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self, function: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [r for r in rows if function is None or r["function"] == function]

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], function: str, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.all(function)
            if predicate(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {function} records; have {rows[-5:]}")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def record_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("devhost") / "records.jsonl"


@pytest.fixture(scope="session")
def devhost(azurite: Any, record_file: Path) -> Iterator[Handle]:
    settings = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": azurite.connection_string,
        "TICK_SCHEDULE": "*/1 * * * * *",
        "SAMPLE_RECORD_FILE": str(record_file),
        "AzureWebJobs.disabled_fn.Disabled": "true",
    }
    handle = start_devhost(APP, settings=settings)
    try:
        yield handle
    finally:
        log = handle.log_text()
        handle.stop()
        print("\n--- devhost log (tail) ---\n" + log[-3000:])


@pytest.fixture(scope="session")
def records(record_file: Path) -> Records:
    return Records(record_file)


@pytest.fixture
def client(devhost: Handle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=devhost.url, timeout=30) as c:
        yield c
