"""One local stack (Azurite + emulator + devhost) per end-to-end module."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from devstack.stack import LocalStack, start_stack
from shared.records import BlobRecordStore
from shared.runs import Run, RunState, RunStore

# Small, fast fine-tuning for tests (the emulator's trainer honours these component inputs).
FAST_FINETUNE = '{"num_train_epochs": 1, "max_steps": 20, "learning_rate": 0.003, "per_device_train_batch_size": 8}'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work: Path = tmp_path_factory.mktemp("stack")
    # Any candidate that answers is promoted here (these modules test the switch, not the gate: test_gate.py does)
    with start_stack(work, {"TUNEFLOW_FINETUNE_PARAMS": FAST_FINETUNE, "TUNEFLOW_TEST_FRACTION": "0.1",
                            "TUNEFLOW_GATE_MIN_DELTA": "-1"}) as s:
        yield s
        print(s.devhost.log_text()[-4000:])


@pytest.fixture(scope="module")
def runs(stack: LocalStack) -> RunStore:
    blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    return RunStore(BlobRecordStore(blobs.get_container_client("tuneflow")))


def wait_for(predicate: Callable[[], Run | None], timeout: float, what: str) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found is not None:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_for(runs: RunStore, dataset: str, states: set[RunState]) -> Callable[[], Run | None]:
    def find() -> Run | None:
        try:
            candidates = list(runs.list())
        except Exception:  # the container may not exist yet
            return None
        for run in candidates:
            if run.dataset.endswith(dataset) and run.state in states:
                return run
        return None
    return find
