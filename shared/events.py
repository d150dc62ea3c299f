"""Typed models for the events tuneflow consumes, parsed from an Event Grid envelope.

The envelope is what the trigger hands over (``azure.functions.EventGridEvent`` or a raw Event Grid /
CloudEvents dict); each ``parse_*`` turns its ``data`` into a frozen model or raises ``EventError``
naming the missing field. Azure ML documents PascalCase keys (``ModelName``) while its SDK tests send
camelCase (``modelName``): lookups accept both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.errors import EventError

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
# BlobCreated `data.api` values that mean "a blob now exists with new content".
CREATE_APIS = frozenset({"PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"})


class EventGridEventLike(Protocol):
    """The attributes of ``azure.functions.EventGridEvent`` that tuneflow reads."""

    @property
    def id(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def topic(self) -> str: ...

    def get_json(self) -> Any: ...


@dataclass(frozen=True)
class Envelope:
    id: str
    event_type: str
    subject: str
    topic: str
    data: Mapping[str, Any]

    @classmethod
    def from_function_event(cls, event: EventGridEventLike | Any) -> Envelope:
        """From the trigger's object: ``EventGridEvent``, or ``CloudEvent`` when the subscription
        delivers the CloudEvents schema (the worker picks the type from the payload)."""
        data = event.get_json()
        if not isinstance(data, Mapping):
            raise EventError(f"event {event.id}: data is not a JSON object", event_id=event.id)
        event_type = getattr(event, "event_type", None) or getattr(event, "type", "")
        topic = getattr(event, "topic", None) or getattr(event, "source", "")
        return cls(event.id, str(event_type), event.subject or "", str(topic or ""), data)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Envelope:
        """Event Grid schema (eventType/subject) or CloudEvents schema (type/subject/source)."""
        if not isinstance(raw, Mapping):
            raise EventError("event is not a JSON object")
        event_type = raw.get("eventType") or raw.get("type")
        data = raw.get("data")
        if not isinstance(event_type, str) or not isinstance(data, Mapping):
            raise EventError(
                "event has no eventType/type or no data object", event_id=str(raw.get("id", ""))
            )
        return cls(
            id=str(raw.get("id", "")),
            event_type=event_type,
            subject=str(raw.get("subject", "")),
            topic=str(raw.get("topic") or raw.get("source") or ""),
            data=data,
        )


def _get(data: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Look up a camelCase key, accepting its PascalCase spelling too."""
    if key in data:
        return data[key]
    return data.get(key[:1].upper() + key[1:], default)


def _require(envelope: Envelope, key: str) -> Any:
    value = _get(envelope.data, key)
    if value is None or value == "":
        raise EventError(
            f"{envelope.event_type} event {envelope.id}: data.{key} is missing",
            event_id=envelope.id,
            field=key,
        )
    return value


def _mapping(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class BlobCreated:
    event_id: str
    api: str
    url: str
    container: str
    blob_name: str
    etag: str | None
    content_length: int | None

    @property
    def creates_content(self) -> bool:
        return self.api in CREATE_APIS


def parse_blob_created(envelope: Envelope) -> BlobCreated:
    if envelope.event_type != BLOB_CREATED:
        raise EventError(f"expected {BLOB_CREATED}, got {envelope.event_type}", event_id=envelope.id)
    api = str(_require(envelope, "api"))
    url = str(_require(envelope, "url"))
    # The subject names container and blob unambiguously (URLs differ between Azure and Azurite).
    _prefix, sep, rest = envelope.subject.partition("/containers/")
    container, sep2, blob_name = rest.partition("/blobs/")
    if not (sep and sep2 and container and blob_name):
        raise EventError(
            f"BlobCreated event {envelope.id}: subject {envelope.subject!r} is not "
            "/blobServices/default/containers/<container>/blobs/<name>",
            event_id=envelope.id,
        )
    etag = _get(envelope.data, "eTag") or _get(envelope.data, "etag")
    length = _get(envelope.data, "contentLength")
    return BlobCreated(
        event_id=envelope.id,
        api=api,
        url=url,
        container=container,
        blob_name=blob_name,
        etag=str(etag) if etag else None,
        content_length=int(length) if isinstance(length, int | str) and str(length).isdigit() else None,
    )


@dataclass(frozen=True)
class RunEvent:
    event_id: str
    event_type: str
    experiment_id: str
    experiment_name: str
    run_id: str
    run_type: str
    run_status: str | None
    run_tags: Mapping[str, str] = field(default_factory=dict)
    run_properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str | None:
        """RunCompleted carries no status: it means Completed."""
        return "Completed" if self.event_type == RUN_COMPLETED else self.run_status


def parse_run_event(envelope: Envelope) -> RunEvent:
    if envelope.event_type not in (RUN_STATUS_CHANGED, RUN_COMPLETED):
        raise EventError(f"not a run event: {envelope.event_type}", event_id=envelope.id)
    return RunEvent(
        event_id=envelope.id,
        event_type=envelope.event_type,
        experiment_id=str(_get(envelope.data, "experimentId", "")),
        experiment_name=str(_get(envelope.data, "experimentName", "")),
        run_id=str(_require(envelope, "runId")),
        run_type=str(_get(envelope.data, "runType", "")),
        run_status=_get(envelope.data, "runStatus"),
        run_tags=_mapping(_get(envelope.data, "runTags")),
        run_properties=_mapping(_get(envelope.data, "runProperties")),
    )


@dataclass(frozen=True)
class ModelRegistered:
    event_id: str
    model_name: str
    model_version: str
    model_tags: Mapping[str, str] = field(default_factory=dict)
    model_properties: Mapping[str, str] = field(default_factory=dict)


def parse_model_registered(envelope: Envelope) -> ModelRegistered:
    if envelope.event_type != MODEL_REGISTERED:
        raise EventError(f"expected {MODEL_REGISTERED}, got {envelope.event_type}", event_id=envelope.id)
    return ModelRegistered(
        event_id=envelope.id,
        model_name=str(_require(envelope, "modelName")),
        model_version=str(_require(envelope, "modelVersion")),  # an int in the docs, a string in SDK tests
        model_tags=_mapping(_get(envelope.data, "modelTags")),
        model_properties=_mapping(_get(envelope.data, "modelProperties")),
    )
