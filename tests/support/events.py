"""Load the event payload collection in tests/events/ (one Event Grid delivery per file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import azure.functions as func

EVENTS = Path(__file__).resolve().parents[1] / "events"


def load_event(name: str, **data_overrides: Any) -> dict[str, Any]:
    """The first event of ``tests/events/<name>.json``; ``data_overrides`` patch its ``data``."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())[0]
    event["data"].update(data_overrides)
    return event


def function_event(raw: dict[str, Any]) -> func.EventGridEvent:
    """What the Functions host hands an Event Grid trigger for ``raw``."""
    return func.EventGridEvent(
        id=raw["id"], data=raw["data"], topic=raw.get("topic", ""), subject=raw.get("subject", ""),
        event_type=raw["eventType"], event_time=None, data_version=raw.get("dataVersion", ""),
    )


def blob_created(container: str, name: str, api: str = "PutBlob", etag: str = "0x1") -> dict[str, Any]:
    event = load_event("blob_created_putblob")
    event["subject"] = f"/blobServices/default/containers/{container}/blobs/{name}"
    event["data"].update(api=api, eTag=etag, url=f"http://127.0.0.1/devstoreaccount1/{container}/{name}")
    return event
