"""Typed models for the events tuneflow consumes, parsed from an Event Grid envelope.

The envelope is what the trigger hands over: the event's JSON text (the functions take ``str``, so a
malformed envelope reaches tuneflow instead of failing in the worker's converter), an
``azure.functions.EventGridEvent`` / ``CloudEvent``, or a raw Event Grid / CloudEvents dict. Each
``parse_*`` turns its ``data`` into a frozen model or raises ``EventError`` naming the event and the
field. Whatever an event carries, parsing raises nothing else: an event that cannot be processed is
acknowledged by its handler, never raised to the host (Event Grid would retry it for a day).

Azure ML documents PascalCase keys (``ModelName``) while its SDK tests send camelCase (``modelName``):
lookups accept both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from shared.azureml import tags
from shared.errors import EventError
from shared.integers import parse_int
from shared.runs import is_run_id

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
# BlobCreated `data.api` values that mean "a blob now exists with new content".
CREATE_APIS = frozenset({"PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"})

# RFC 3339, as Event Grid stamps eventTime (fraction of any length: Azure sends 7 digits). [0-9], not \d.
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")
_BLOB_SUBJECT = "/blobServices/default/containers/"
_CONTAINER = re.compile(r"\$?[a-z0-9](-?[a-z0-9])+")  # 3-63 characters, checked apart; $root, $logs, $web
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_BLOB_NAME = 1024  # Azure's limit, in characters
# Azure ML asset (model) names and job names: a letter or digit, then letters, digits, '-', '_', '.'.
_ASSET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


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


# What an Event Grid trigger hands a function: the event's JSON text, or the worker's object for it.
TriggerEvent = str | bytes | EventGridEventLike


def _shown(value: object, limit: int = 120) -> str:
    """An untrusted value in a message: quoted (a newline cannot start a second log line) and cut short."""
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "an array"
    if not isinstance(value, str):
        return repr(value)[:limit]
    return repr(value[:limit] + "…" if len(value) > limit else value)


@dataclass(frozen=True)
class Envelope:
    id: str
    event_type: str
    subject: str
    topic: str
    data: Mapping[str, Any]

    @classmethod
    def from_function_event(cls, event: TriggerEvent | Any) -> Envelope:
        """From what the trigger hands over: the event's JSON text, or ``EventGridEvent`` (``CloudEvent``
        when the subscription delivers the CloudEvents schema; the worker picks the type from the payload)."""
        if isinstance(event, str | bytes | bytearray):
            return cls.from_json(event)
        event_id = getattr(event, "id", None)
        data = event.get_json()
        raw = {
            "id": event_id,
            "eventType": getattr(event, "event_type", None) or getattr(event, "type", None),
            "subject": getattr(event, "subject", None),
            "topic": getattr(event, "topic", None) or getattr(event, "source", None),
            "data": data,
        }
        return cls.from_dict(raw)

    @classmethod
    def from_json(cls, text: str | bytes | bytearray) -> Envelope:
        """One event's JSON (what the host passes a ``str`` trigger parameter)."""
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise EventError(f"event is not valid JSON: {exc.msg}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | Any) -> Envelope:
        """Event Grid schema (eventType/subject/eventTime) or CloudEvents schema (type/subject/source/time)."""
        if not isinstance(raw, Mapping):
            raise EventError("event is not a JSON object")
        event_id = raw.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise EventError(f"event has no id (got {_shown(event_id)})")
        where = f"event {_shown(event_id)}"
        event_type = raw.get("eventType") or raw.get("type")
        if not isinstance(event_type, str) or not event_type:
            raise EventError(f"{where}: no eventType/type string", event_id=event_id)
        subject = raw.get("subject")
        if subject is not None and not isinstance(subject, str):
            raise EventError(f"{where}: subject must be a string (got {_shown(subject)})", event_id=event_id)
        topic = raw.get("topic") or raw.get("source")
        if topic is not None and not isinstance(topic, str):
            raise EventError(f"{where}: topic/source must be a string (got {_shown(topic)})", event_id=event_id)
        time_key = "eventTime" if "eventTime" in raw else "time"
        if raw.get(time_key) is not None and not _is_time(raw[time_key]):
            raise EventError(f"{where}: {time_key} is not an RFC 3339 time (got {_shown(raw[time_key])})",
                             event_id=event_id)
        data = raw.get("data")
        if not isinstance(data, Mapping):
            raise EventError(f"{where}: data is not a JSON object (got {_shown(data)})", event_id=event_id)
        return cls(id=event_id, event_type=event_type, subject=subject or "", topic=topic or "", data=data)


def _is_time(value: Any) -> bool:
    """An RFC 3339 time that exists (no month 13); Python reads fractions of any length since 3.11."""
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        return False
    return True


def _get(data: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Look up a camelCase key, accepting its PascalCase spelling too."""
    if key in data:
        return data[key]
    return data.get(key[:1].upper() + key[1:], default)


def _where(envelope: Envelope) -> str:
    return f"{envelope.event_type.rsplit('.', 1)[-1]} event {_shown(envelope.id)}"


def _refuse(envelope: Envelope, why: str, **context: Any) -> EventError:
    return EventError(f"{_where(envelope)}: {why}", event_id=envelope.id, **context)


def _text(envelope: Envelope, key: str) -> str:
    """A required string field of ``data``."""
    value = _get(envelope.data, key)
    if value is None or value == "":
        raise _refuse(envelope, f"data.{key} is missing", field=key)
    if not isinstance(value, str):
        raise _refuse(envelope, f"data.{key} must be a string (got {_shown(value)})", field=key)
    return value


def _optional_text(envelope: Envelope, key: str) -> str | None:
    value = _get(envelope.data, key)
    if value is not None and not isinstance(value, str):
        raise _refuse(envelope, f"data.{key} must be a string (got {_shown(value)})", field=key)
    return value


def _tags(envelope: Envelope, key: str) -> dict[str, str]:
    """A tags/properties object (string values; numbers and booleans are read as text)."""
    value = _get(envelope.data, key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _refuse(envelope, f"data.{key} must be an object (got {_shown(value)})", field=key)
    out = {}
    for k, v in value.items():
        if isinstance(v, dict | list):
            raise _refuse(envelope, f"data.{key}.{k} must be a string (got {_shown(v)})", field=key)
        out[str(k)] = str(v)
    run_id = out.get(tags.RUN_ID)
    if run_id is not None and not is_run_id(run_id):
        raise _refuse(envelope, f"data.{key} names {tags.RUN_ID} {_shown(run_id)}, which is not a run id",
                      field=key)
    return out


def _asset_name(envelope: Envelope, key: str, value: str) -> str:
    """An Azure ML name or version: it becomes a path segment of a REST call, so nothing else passes."""
    if not _ASSET.fullmatch(value):
        raise _refuse(envelope, f"data.{key} {_shown(value)} is not an Azure ML name (letters, digits, '-', '_', "
                      "'.', starting with a letter or digit)", field=key)
    return value


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
        raise EventError(f"event {_shown(envelope.id)}: expected {BLOB_CREATED}, got {_shown(envelope.event_type)}",
                         event_id=envelope.id)
    api = _text(envelope, "api")
    url = _text(envelope, "url")
    container, blob_name = _blob_of(envelope)
    etag = _get(envelope.data, "eTag") or _get(envelope.data, "etag")
    if etag is not None and not isinstance(etag, str):
        raise _refuse(envelope, f"data.eTag must be a string (got {_shown(etag)})", field="eTag")
    return BlobCreated(
        event_id=envelope.id,
        api=api,
        url=url,
        container=container,
        blob_name=blob_name,
        etag=etag or None,
        content_length=_content_length(envelope),
    )


def _blob_of(envelope: Envelope) -> tuple[str, str]:
    """Container and blob name from the subject (URLs differ between Azure and Azurite).

    The name is taken as it is, never normalised: an HTTP client would resolve ``..`` segments and reach
    another container, so a name with ``.``/``..`` or empty segments, backslashes or control characters
    is refused here, before anything reads storage.
    """
    subject = envelope.subject
    shape = f"subject {_shown(subject)} is not {_BLOB_SUBJECT}<container>/blobs/<name>"
    if not subject.startswith(_BLOB_SUBJECT):
        raise _refuse(envelope, shape)
    container, sep, blob_name = subject[len(_BLOB_SUBJECT):].partition("/blobs/")
    if not sep or not blob_name:
        raise _refuse(envelope, shape)
    if not (3 <= len(container.lstrip("$")) <= 63 and _CONTAINER.fullmatch(container)):
        raise _refuse(envelope, f"subject {_shown(subject)}: {_shown(container)} is not a container name")
    problem = _blob_name_problem(blob_name)
    if problem:
        raise _refuse(envelope, f"subject {_shown(subject)}: the blob name {problem}; refused, not normalised")
    return container, blob_name


def _blob_name_problem(name: str) -> str | None:
    if len(name) > MAX_BLOB_NAME:
        return f"is longer than {MAX_BLOB_NAME} characters"
    if "\\" in name:
        return "has a backslash"
    if _CONTROL.search(name):
        return "has a control character"
    segments = name.split("/")
    if any(s in (".", "..") for s in segments):
        return "has a '.' or '..' segment"
    if "" in segments:
        return "has an empty segment"
    return None


def _content_length(envelope: Envelope) -> int | None:
    value = _get(envelope.data, "contentLength")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    try:
        return parse_int(value, lo=0) if isinstance(value, str) else parse_int("")
    except ValueError:
        raise _refuse(envelope, f"data.contentLength must be a byte count (got {_shown(value)})",
                      field="contentLength") from None


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
        raise EventError(f"event {_shown(envelope.id)}: not a run event: {_shown(envelope.event_type)}",
                         event_id=envelope.id)
    return RunEvent(
        event_id=envelope.id,
        event_type=envelope.event_type,
        experiment_id=_optional_text(envelope, "experimentId") or "",
        experiment_name=_optional_text(envelope, "experimentName") or "",
        run_id=_asset_name(envelope, "runId", _text(envelope, "runId")),
        run_type=_optional_text(envelope, "runType") or "",
        run_status=_optional_text(envelope, "runStatus"),
        run_tags=_tags(envelope, "runTags"),
        run_properties=_tags(envelope, "runProperties"),
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
        raise EventError(f"event {_shown(envelope.id)}: expected {MODEL_REGISTERED}, got "
                         f"{_shown(envelope.event_type)}", event_id=envelope.id)
    version = _get(envelope.data, "modelVersion")
    if isinstance(version, int) and not isinstance(version, bool):  # an int in the docs, a string in SDK tests
        version = str(version)
    if not isinstance(version, str) or not version:
        raise _refuse(envelope, f"data.modelVersion must be a version string or number (got {_shown(version)})",
                      field="modelVersion")
    return ModelRegistered(
        event_id=envelope.id,
        model_name=_asset_name(envelope, "modelName", _text(envelope, "modelName")),
        model_version=_asset_name(envelope, "modelVersion", version),
        model_tags=_tags(envelope, "modelTags"),
        model_properties=_tags(envelope, "modelProperties"),
    )
