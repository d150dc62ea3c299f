"""Fixtures for the emulator's tests: emulators as subprocesses (fast fakes, or the real ML), clients."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.process import EmulatorHandle, start_emulator
from tests.emulator.webhook import Policy, Webhook, start_webhook

FAKES = Path(__file__).resolve().parent / "fakes"
FAKE_TRAINER = f"{sys.executable} {FAKES / 'fake_trainer.py'}"
FAKE_SCORER = f"{sys.executable} {FAKES / 'fake_scorer.py'}"


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CA for every emulator of the session (REQUESTS_CA_BUNDLE is process-wide)."""
    return tmp_path_factory.mktemp("emulator-tls")


@pytest.fixture(scope="session")
def fake_base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fake-base-model")
    (path / "config.json").write_text(json.dumps({"model_type": "fake"}))
    return path


def fast_args(base_model: Path) -> list[str]:
    """Fake trainer and scorer (same CLI contracts, milliseconds), quick polling and retries."""
    return [
        "--trainer-command", FAKE_TRAINER,
        "--scorer-command", FAKE_SCORER,
        "--base-model-dir", str(base_model),
        "--blob-poll-interval", "0.2",
        "--time-scale", "0.01",
        "--delivery-attempts", "4",
    ]


EmulatorFactory = Callable[..., EmulatorHandle]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the real base model is built once per session: the directory test_basemodel/test_training use
    (TUNEFLOW_TEST_BASEMODEL_CACHE keeps it between sessions)."""
    kept = os.environ.get("TUNEFLOW_TEST_BASEMODEL_CACHE")
    return Path(kept) if kept else tmp_path_factory.getbasetemp() / "tuneflow-basemodel-cache"


@pytest.fixture
def emulator_factory(
    tmp_path: Path, azurite: Any, tls_dir: Path, fake_base_model: Path, model_cache: Path
) -> Iterator[EmulatorFactory]:
    """Start emulators on demand (fakes by default); every one is stopped at teardown."""
    handles: list[EmulatorHandle] = []

    def start(
        data_dir: Path | None = None, *, fakes: bool = True, extra_args: list[str] | None = None, **kwargs: Any
    ) -> EmulatorHandle:
        args = [*(fast_args(fake_base_model) if fakes else []), "--tls-dir", str(tls_dir), *(extra_args or [])]
        kwargs["env"] = {"TUNEFLOW_EMULATOR_CACHE": str(model_cache), **(kwargs.get("env") or {})}
        handle = start_emulator(data_dir or tmp_path / "emu", azurite.connection_string, extra_args=args, **kwargs)
        handles.append(handle)
        os.environ["REQUESTS_CA_BUNDLE"] = handle.ca_bundle  # the session's one CA (see tls_dir)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture(scope="session")
def shared_emulator(
    tmp_path_factory: pytest.TempPathFactory, azurite: Any, tls_dir: Path, fake_base_model: Path
) -> Iterator[EmulatorHandle]:
    """One emulator (with fakes) for the tests that need no restart; reset between tests by ``emu``."""
    handle = start_emulator(
        tmp_path_factory.mktemp("shared-emulator"),
        azurite.connection_string,
        extra_args=[*fast_args(fake_base_model), "--tls-dir", str(tls_dir)],
    )
    os.environ["REQUESTS_CA_BUNDLE"] = handle.ca_bundle  # the session's one CA (see tls_dir)
    yield handle
    handle.stop()


class Admin:
    """The emulator's control API (``/_emulator``) and raw HTTPS access to its routes."""

    def __init__(self, handle: EmulatorHandle) -> None:
        self.handle = handle
        self.conn = handle.connection
        self.http = httpx.Client(verify=handle.ca_bundle, timeout=30)

    def url(self, path: str) -> str:
        return str(self.conn["base_url"]) + path

    def ws(self, path: str = "") -> str:
        c = self.conn
        return self.url(
            f"/subscriptions/{c['subscription_id']}/resourceGroups/{c['resource_group']}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{c['workspace_name']}{path}"
        )

    def get(self, path: str, **kw: Any) -> Any:
        r = self.http.get(self.handle.admin_url + path, **kw)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Any = None) -> Any:
        r = self.http.post(self.handle.admin_url + path, json=body)
        r.raise_for_status()
        return r.json()

    def faults(self, **knobs: Any) -> Any:
        return self.post("/faults", knobs)

    def subscribe(self, name: str, **sub: Any) -> Any:
        r = self.http.put(self.handle.admin_url + f"/subscriptions/{name}", json=sub)
        r.raise_for_status()
        return r.json()

    def unsubscribe(self, name: str) -> None:
        self.http.delete(self.handle.admin_url + f"/subscriptions/{name}")

    def requests(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/requests")
        return result

    def wait_job(self, name: str, timeout: float = 60, statuses: tuple[str, ...] = ("Completed", "Failed", "Canceled")) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc: dict[str, Any] = self.get(f"/jobs/{name}")
            if doc["status"] in statuses:
                return doc
            time.sleep(0.1)
        raise AssertionError(f"job {name} did not reach {statuses} in {timeout}s: {doc['status']}")

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def emu(shared_emulator: EmulatorHandle) -> Iterator[Admin]:
    """The shared emulator's control API; faults, counters and subscriptions are reset afterwards."""
    admin = Admin(shared_emulator)
    yield admin
    admin.http.delete(shared_emulator.admin_url + "/faults")
    for sub in admin.get("/subscriptions")["value"]:
        admin.unsubscribe(sub["name"])
    admin.close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = start_webhook(Policy())
    yield hook
    hook.stop()


@pytest.fixture(scope="session")
def ml(shared_emulator: EmulatorHandle) -> Any:
    return shared_emulator.ml_client()


@pytest.fixture(scope="session")
def ml_registry(shared_emulator: EmulatorHandle) -> Any:
    return shared_emulator.ml_client(registry=True)
