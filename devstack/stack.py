"""Start the whole local stack and wire it the way Azure is wired.

Azurite (storage) → the emulator (Azure ML + Event Grid, backed by that Azurite) → devhost hosting
``function_app`` with local settings pointing at both → Event Grid subscriptions: BlobCreated in the
drop container → ``ingest``; Azure ML run and model events → ``lifecycle``.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.process import Handle, start_devhost
from devstack.azurite import Azurite, start_azurite
from emulator.process import EmulatorHandle, start_emulator

ML_EVENTS = [
    "Microsoft.MachineLearningServices.RunStatusChanged",
    "Microsoft.MachineLearningServices.RunCompleted",
    "Microsoft.MachineLearningServices.ModelRegistered",
]
DROP_CONTAINER = "datasets"
# Phi-3-mini-4k-instruct is retired for fine-tuning in Azure (and, faithfully, in the emulator):
# the local stack demonstrates the newer model that is one setting away.
LOCAL_BASE_MODEL = "Phi-4-mini-instruct"


@dataclass
class LocalStack:
    azurite: Azurite
    emulator: EmulatorHandle
    devhost: Handle
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"{self.devhost.url}/api"

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the emulator's admin API (subscriptions, faults, recorded events)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.emulator.admin_url}{path}", data=data, method=method,
                                         headers={"content-type": "application/json"})
        import ssl

        context = ssl.create_default_context(cafile=self.emulator.ca_bundle)
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def stop(self) -> None:
        for stop in (self.devhost.stop, self.emulator.stop, self.azurite.stop):
            with contextlib.suppress(Exception):  # keep stopping the others
                stop()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_stack(work_dir: Path, settings: Mapping[str, str] | None = None, *,
                emulator_faults: dict[str, Any] | None = None, devhost_port: int = 0,
                base_model: str = LOCAL_BASE_MODEL) -> LocalStack:
    """Start everything under ``work_dir``; ``settings`` override the app's local settings."""
    work_dir.mkdir(parents=True, exist_ok=True)
    # azure-ai-ml records the cloud of the last MLClient in this environment variable; a child that
    # inherited it would fail to import the SDK (an earlier stack's cloud is unknown to it).
    os.environ.pop("AZUREML_CURRENT_CLOUD", None)
    azurite = start_azurite()
    try:
        emulator = start_emulator(work_dir / "emulator", storage=azurite.connection_string,
                                  faults=emulator_faults, extra_args=["--base-model-name", base_model])
    except Exception:
        azurite.stop()
        raise
    try:
        conn = emulator.connection
        values = {
            "AzureWebJobsStorage": azurite.connection_string,
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "TUNEFLOW_STORAGE_CONNECTION": azurite.connection_string,
            "TUNEFLOW_DROP_CONTAINER": DROP_CONTAINER,
            "TUNEFLOW_BASE_MODEL": base_model,
            "TUNEFLOW_EMULATOR_CONNECTION": str(emulator.connection_file),
            "TUNEFLOW_EVENTGRID_TOPIC_ENDPOINT": str(conn["eventgrid_topic_endpoint"]),
            "TUNEFLOW_EVENTGRID_TOPIC_KEY": str(conn["eventgrid_topic_key"]),
            "TUNEFLOW_RECONCILE_SCHEDULE": "*/10 * * * * *",
            # the queue triggers resolve these names; a folder drop settles for a few seconds, not Azure's 30
            "TUNEFLOW_SCORE_QUEUE": "tuneflow-score-jobs",
            "TUNEFLOW_WORK_QUEUE": "tuneflow-work",
            "TUNEFLOW_SETTLE_SECONDS": "3",
            **(settings or {}),
        }
        devhost = start_devhost("function_app:app", port=devhost_port, settings=values, timeout=60)
    except Exception:
        emulator.stop()
        azurite.stop()
        raise
    stack = LocalStack(azurite, emulator, devhost, values)
    try:
        drop = values["TUNEFLOW_DROP_CONTAINER"]
        # The container exists before the subscription, so its first blob is an event, not a baseline.
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        with contextlib.suppress(ResourceExistsError):
            BlobServiceClient.from_connection_string(azurite.connection_string).create_container(drop)
        stack.admin("PUT", "/subscriptions/tuneflow-ingest", {
            "endpoint": devhost.eventgrid_url("ingest"),
            "included_event_types": ["Microsoft.Storage.BlobCreated"],
            "subject_begins_with": f"/blobServices/default/containers/{drop}/",
        })
        stack.admin("PUT", "/subscriptions/tuneflow-lifecycle", {
            "endpoint": devhost.eventgrid_url("lifecycle"),
            "included_event_types": ML_EVENTS,
        })
        # Baseline the watched containers now: what is uploaded from here on is an event.
        stack.admin("POST", "/blobs/scan", {})
    except Exception:
        stack.stop()
        raise
    return stack
