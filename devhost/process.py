"""Run devhost as a subprocess (for tests and dev tooling).

    with start_devhost("function_app:app", settings={"AzureWebJobsStorage": conn}) as dh:
        httpx.get(f"{dh.url}/api/health", headers={"x-functions-key": dh.function_key})

`start_devhost` returns once the host answers `GET /admin/host/status` with state Running.
Output goes to a log file (`Handle.log_path`); its tail is in the error if the host fails to start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class DevhostStartError(RuntimeError):
    """devhost exited or did not become ready in time."""


@dataclass
class Handle:
    url: str
    port: int
    keys: dict[str, Any]
    keys_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def master_key(self) -> str:
        return str(self.keys["masterKey"])

    @property
    def function_key(self) -> str:
        """The host key `default`: valid for every FUNCTION-level function."""
        return str(self.keys["functionKeys"]["default"])

    def system_key(self, name: str) -> str:
        """`eventgrid_extension` or `blobs_extension`: the `code` for the webhooks."""
        return str(self.keys["systemKeys"][name])

    def eventgrid_url(self, function_name: str) -> str:
        return (
            f"{self.url}/runtime/webhooks/EventGrid?functionName={function_name}"
            f"&code={self.system_key('eventgrid_extension')}"
        )

    def blobs_url(self, function_name: str) -> str:
        return (
            f"{self.url}/runtime/webhooks/blobs?functionName=Host.Functions.{function_name}"
            f"&code={self.system_key('blobs_extension')}"
        )

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        return self.process.returncode

    def __enter__(self) -> Handle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _status(url: str, master_key: str) -> str | None:
    request = urllib.request.Request(f"{url}/admin/host/status", headers={"x-functions-key": master_key})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return str(json.loads(response.read()).get("state"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def free_port() -> int:
    """A TCP port free on loopback right now (the local stack's servers start on such ports)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_devhost(
    app_spec: str = "function_app:app",
    port: int = 0,
    settings: str | Path | Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    keys: str | Path | None = None,
    cwd: str | Path | None = None,
    insecure_webhooks: bool = False,
    extra_args: list[str] | None = None,
    timeout: float = 30.0,
) -> Handle:
    """Start `python -m devhost` and wait until it is Running.

    settings: a local.settings.json path, or a mapping of Values (written to a temporary file).
    env: variables for the child on top of this process's environment; they win over settings, and
         settings win over variables merely inherited from this process.
    keys: keys file (default: a fresh temporary one, so every run has its own random keys).
    cwd: the child's working directory (default: the project root, so `function_app` imports).
    """
    workdir = tempfile.TemporaryDirectory(prefix="devhost-")
    work = Path(workdir.name)
    settings_path: Path | None = None
    if isinstance(settings, Mapping):
        settings_path = work / "local.settings.json"
        settings_path.write_text(json.dumps({"IsEncrypted": False, "Values": dict(settings)}))
    elif settings is not None:
        settings_path = Path(settings).resolve()
    keys_path = Path(keys).resolve() if keys is not None else work / "keys.json"
    ready_path = work / "ready.json"
    log_path = work / "devhost.log"
    cmd = [
        sys.executable,
        "-m",
        "devhost",
        "--app",
        app_spec,
        "--port",
        str(port),
        "--keys",
        str(keys_path),
        "--ready-file",
        str(ready_path),
    ]
    if settings_path is not None:
        cmd += ["--settings", str(settings_path)]
    if insecure_webhooks:
        cmd.append("--insecure-webhooks")
    cmd += extra_args or []
    # Explicit settings beat whatever the caller's shell happens to export (a stray AzureWebJobsStorage
    # must not send a test to the wrong storage); `env` beats both. devhost itself lets the environment win.
    inherited = dict(os.environ)
    # The app hands the emulator's CA to each of its clients itself; a CA bundle inherited through the
    # environment (tests set one for their own SDK calls) would hide a client that does not.
    inherited.pop("REQUESTS_CA_BUNDLE", None)
    if settings_path is not None:
        try:
            values = json.loads(settings_path.read_text(encoding="utf-8-sig")).get("Values", {})
        except (OSError, ValueError, AttributeError):
            values = {}
        for name in values if isinstance(values, dict) else {}:
            inherited.pop(name, None)
    child_env = {**inherited, **(env or {})}
    # make devhost importable from any cwd without installing it
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), child_env.get("PYTHONPATH", "")) if p)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            cmd,
            cwd=str(cwd or ROOT),
            env=child_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + timeout

    def fail(reason: str) -> DevhostStartError:
        if process.poll() is None:
            process.kill()
            process.wait()
        tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
        workdir.cleanup()
        return DevhostStartError(f"devhost {reason}\n--- devhost output ---\n{tail}")

    while not ready_path.exists():
        if process.poll() is not None:
            raise fail(f"exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise fail(f"was not ready within {timeout:.0f} s")
        time.sleep(0.05)
    ready = json.loads(ready_path.read_text())
    keys_doc = json.loads(keys_path.read_text())
    url = str(ready["url"])
    while _status(url, str(keys_doc["masterKey"])) != "Running":
        if process.poll() is not None:
            raise fail(f"exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise fail(f"did not report Running within {timeout:.0f} s")
        time.sleep(0.05)
    return Handle(
        url=url,
        port=int(ready["port"]),
        keys=keys_doc,
        keys_path=keys_path,
        log_path=log_path,
        process=process,
        _workdir=workdir,
    )
