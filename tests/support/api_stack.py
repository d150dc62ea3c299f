"""The HTTP front door's stack for integration tests: the Azure ML emulator with an endpoint deployed
(its fake scorer behind it), Azurite, a signature-checking webhook receiver, and two devhosts hosting
function_app: ``dh`` permissive about webhook targets (the receiver is plain http on 127.0.0.1), ``strict``
with the SSRF guard on and a separate teardown key.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devhost.process import Handle, start_devhost
from emulator.process import EmulatorHandle, start_emulator
from shared.records import BlobRecordStore
from shared.runs import RunStore
from shared.services import Services
from shared.settings import Settings
from shared.webhooks.signing import verify
from tests.emulator import helpers
from tests.emulator.conftest import Admin

ROOT = Path(__file__).resolve().parents[2]
FAKE_SCORER = f"{sys.executable} {ROOT / 'tests' / 'emulator' / 'fakes' / 'fake_scorer.py'}"
MODEL = "tuneflow-chat-ft:1"
SECRET = "whsec_aW50ZWdyYXRpb24tdGVzdHMtd2ViaG9vay1zZWNyZXQ="
TEARDOWN_KEY = "teardown-" + uuid.uuid4().hex
CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Peru?"}]}
NEVER = "0 0 0 1 1 *"  # timers fire only when a test asks (POST /admin/functions/<name>)


# ------------------------------------------------------------------------------------------ receiver


@dataclass
class Receiver:
    """A webhook receiver over plain HTTP that checks every signature; fails the first ``fail_first``."""

    fail_first: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tuneflow?token=abc"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verify(SECRET, headers, body)
                    valid = True
                except ValueError:
                    valid = False
                with receiver.lock:
                    status = 500 if receiver.fail_first > 0 else 200
                    receiver.fail_first -= 1
                    receiver.received.append({"headers": headers, "body": json.loads(body), "valid": valid,
                                              "status": status, "path": self.path})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# ------------------------------------------------------------------------------------------ the stack


@dataclass
class Stack:
    emu: EmulatorHandle
    endpoint: str
    dh: Handle
    strict: Handle
    receiver: Receiver
    settings: Settings  # the app's view (for reading its records in assertions)
    admin: Admin

    def arm_calls(self) -> int:
        return int(self.admin.requests()["totals"].get("arm", 0))

    def keys(self) -> dict[str, str]:
        return helpers.keys(self.admin, self.endpoint)

    def rotate_primary_key(self) -> None:
        r = self.admin.http.post(self.admin.ws(f"/onlineEndpoints/{self.endpoint}/regenerateKeys"),
                                 params={"api-version": helpers.API}, json={"keyType": "Primary"})
        assert r.status_code == 202 and helpers.poll(self.admin, r)["status"] == "Succeeded"

    def delete_endpoint(self, name: str) -> None:
        r = self.admin.http.delete(self.admin.ws(f"/onlineEndpoints/{name}"), params={"api-version": helpers.API})
        assert r.status_code in (200, 202, 204), r.text

    def runs(self) -> RunStore:
        return RunStore(BlobRecordStore(Services(self.settings).container(self.settings.output_container)))


def register_model(admin: Admin) -> None:
    """A model registered in the workspace (the emulator deploys only those): a tiny folder in the datastore."""
    from azure.storage.blob import BlobServiceClient

    conn = admin.conn
    blobs = BlobServiceClient.from_connection_string(conn["storage_connection_string"])
    folder = blobs.get_container_client(conn["datastore_container"])
    folder.upload_blob("models/tuneflow-chat-ft/1/config.json", b'{"model_type": "fake"}', overwrite=True)
    name, version = MODEL.split(":")
    body = {"properties": {"modelType": "mlflow_model",
                           "modelUri": "azureml://datastores/workspaceblobstore/paths/models/tuneflow-chat-ft/1"}}
    r = admin.http.put(admin.ws(f"/models/{name}/versions/{version}"), params={"api-version": helpers.API}, json=body)
    assert r.status_code == 201, r.text


def deploy(admin: Admin, endpoint: str, deployments: tuple[str, ...] = ("blue",)) -> None:
    """An endpoint whose deployments serve MODEL (the emulator's REST API: azure-ai-ml 1.35 cannot read the
    emulator's deployment bodies back, see the report); the first deployment takes all traffic."""
    helpers.create_endpoint(admin, endpoint)
    for name in deployments:
        _, status = helpers.create_deployment(admin, endpoint, name, tuple(MODEL.split(":")))  # type: ignore[arg-type]
        assert status["status"] == "Succeeded", status
    helpers.set_traffic(admin, endpoint, {d: 100 if i == 0 else 0 for i, d in enumerate(deployments)})


@contextlib.contextmanager
def api_stack(azurite: Any, work: Path) -> Iterator[Stack]:
    base = work / "base-model"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "fake"}')
    emu = start_emulator(work / "emulator", azurite.connection_string, extra_args=[
        "--scorer-command", FAKE_SCORER, "--base-model-dir", str(base)])
    previous_ca = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = emu.ca_bundle  # the SDK's plain `requests` calls in this process
    receiver = Receiver().start()
    handles: list[Handle] = []
    try:
        admin = Admin(emu)
        endpoint = f"chat-{uuid.uuid4().hex[:8]}"
        register_model(admin)
        deploy(admin, endpoint)
        suffix = uuid.uuid4().hex[:8]
        common = {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": azurite.connection_string,
            "TUNEFLOW_STORAGE_CONNECTION": azurite.connection_string,
            "TUNEFLOW_DROP_CONTAINER": f"drop-{suffix}",
            "TUNEFLOW_OUTPUT_CONTAINER": f"out-{suffix}",
            "TUNEFLOW_EMULATOR_CONNECTION": str(emu.connection_file),
            "TUNEFLOW_ENDPOINT": endpoint,
            "TUNEFLOW_RECONCILE_SCHEDULE": NEVER,
            "TUNEFLOW_IDLE_TEARDOWN_SCHEDULE": NEVER,
            "TUNEFLOW_WEBHOOK_SECRET": SECRET,
            "TUNEFLOW_MAX_REQUEST_KB": "64",
        }
        permissive = {**common, "TUNEFLOW_SCORE_QUEUE": f"score-{suffix}", "TUNEFLOW_WEBHOOK_ALLOW_HTTP": "true",
                      "TUNEFLOW_WEBHOOK_ALLOW_PRIVATE": "true", "TUNEFLOW_WEBHOOK_BACKOFF_S": "0.5",
                      "TUNEFLOW_WEBHOOK_ATTEMPTS": "4", "TUNEFLOW_IDLE_TEARDOWN_MINUTES": "0.05"}
        strict = {**common, "TUNEFLOW_SCORE_QUEUE": f"strict-{suffix}", "TUNEFLOW_TEARDOWN_KEY": TEARDOWN_KEY}
        # no CA bundle in the app's environment: it passes the emulator's CA to its clients itself
        dh = start_devhost("function_app:app", settings=permissive, extra_args=["--log-level", "debug"], timeout=60)
        handles.append(dh)
        handles.append(start_devhost("function_app:app", settings=strict, timeout=60))
        settings = Settings.from_env({k: v for k, v in permissive.items() if k.startswith("TUNEFLOW_")})
        yield Stack(emu, endpoint, dh, handles[1], receiver, settings, admin)
        admin.close()
    finally:
        for handle in handles:
            tail = handle.log_text()[-4000:]
            handle.stop()
            print(f"\n--- devhost log (tail) ---\n{tail}")
        receiver.stop()
        emu.stop()
        if previous_ca is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = previous_ca


