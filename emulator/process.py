"""Start and stop the emulator as a subprocess (for tests and dev tooling).

    handle = start_emulator(data_dir, storage=conn_str)
    ml = handle.ml_client()          # needs azure-ai-ml; or build MLClient yourself from handle.connection
    ...
    handle.stop()

``start_emulator`` waits until ``<data_dir>/connection.json`` is written (the emulator deletes it when it
stops, so a stale file from an earlier run is never mistaken for a live one).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class EmulatorStartError(RuntimeError):
    pass


@dataclass
class EmulatorHandle:
    data_dir: Path
    process: subprocess.Popen[bytes]
    connection: dict[str, Any]
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def connection_file(self) -> Path:
        return self.data_dir / "connection.json"

    @property
    def admin_url(self) -> str:
        return str(self.connection["admin_endpoint"])

    @property
    def base_url(self) -> str:
        return str(self.connection["base_url"])

    @property
    def ca_bundle(self) -> str:
        return str(self.connection["ca_bundle"])

    def ml_client(self, registry: bool = False, **kwargs: Any) -> Any:
        """An azure-ai-ml ``MLClient`` for the workspace (or the registry) of this emulator."""
        from emulator.connection import ml_client

        return ml_client(self.connection, registry=registry, **kwargs)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful: processes it started are stopped, state is kept), then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: an abrupt crash (children started in their own sessions may survive; see README)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_emulator(
    data_dir: str | Path,
    storage: str | None = None,
    port: int = 0,
    events_config: str | Path | None = None,
    *,
    faults: dict[str, Any] | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> EmulatorHandle:
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    conn_file = data_dir / "connection.json"
    conn_file.unlink(missing_ok=True)
    args = [sys.executable, "-m", "emulator", "--data-dir", str(data_dir), "--port", str(port)]
    if storage:
        args += ["--storage", storage]
    if events_config:
        args += ["--events-config", str(events_config)]
    if faults:
        faults_file = data_dir / "faults.start.json"
        faults_file.write_text(json.dumps(faults))
        args += ["--faults", str(faults_file)]
    args += list(extra_args or [])
    log_path = data_dir / "emulator.log"
    log = log_path.open("ab")
    proc = subprocess.Popen(
        args,
        cwd=str(ROOT),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise EmulatorStartError(f"the emulator exited with code {proc.returncode}:\n{tail}")
        if conn_file.exists():
            try:
                connection = json.loads(conn_file.read_text())
            except ValueError:
                time.sleep(0.05)
                continue
            return EmulatorHandle(data_dir, proc, connection, log_path, args)
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    raise EmulatorStartError(f"the emulator wrote no {conn_file} within {timeout:.0f} s")
