"""Start a real Azurite (installed by `npm install` into node_modules/) on free ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devhost.process import free_port

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class Azurite:
    blob_port: int
    queue_port: int
    table_port: int
    process: subprocess.Popen[bytes]
    location: str

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.blob_port}/{ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.queue_port}/{ACCOUNT}"

    @property
    def table_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.table_port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    def stop(self) -> None:
        # Azurite ignores SIGTERM/SIGINT (it waits 10 s); its data lives in a temporary folder anyway.
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.location, ignore_errors=True)


def azurite_binary() -> Path:
    binary = ROOT / "node_modules" / ".bin" / "azurite"
    if not binary.exists():
        raise RuntimeError(f"Azurite is not installed at {binary}: run `npm install` (the Makefile does)")
    return binary


def start_azurite(timeout: float = 30.0) -> Azurite:
    location = tempfile.mkdtemp(prefix="azurite-")
    ports = (free_port(), free_port(), free_port())
    cmd = [
        str(azurite_binary()), "--silent", "--location", location,
        "--blobPort", str(ports[0]), "--queuePort", str(ports[1]), "--tablePort", str(ports[2]),
        "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
        "--skipApiVersionCheck", "--loose",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    azurite = Azurite(*ports, process=proc, location=location)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"Azurite exited with {proc.returncode}: {err}")
        try:
            with socket.create_connection(("127.0.0.1", ports[0]), 0.2), \
                 socket.create_connection(("127.0.0.1", ports[1]), 0.2):
                return azurite
        except OSError:
            time.sleep(0.1)
    azurite.stop()
    raise RuntimeError(f"Azurite did not start listening within {timeout:.0f} s")
