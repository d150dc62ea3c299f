"""Trigger payloads and bindings, converted the way the host and the Python worker convert them.

Trigger values are built with azure.functions' own converters (the ones the worker calls), so the
function sees exactly the objects it gets in Azure: `EventGridEvent` (or `CloudEvent` for a
CloudEvents-schema event, which is what azure-functions does), `QueueMessage`, `InputStream`,
`TimerRequest`. A parameter annotated `str` or `bytes` gets the raw payload instead.
Storage is reached with the synchronous Azure SDK in worker threads (the async SDK needs aiohttp).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections.abc
import contextlib
import datetime as dt
import json
import re
import threading
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import azure.functions as func
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import meta
from azure.functions.blob import BlobConverter
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from devhost.config import ConfigError, QueueOptions, connection_string, resolve_app_settings
from devhost.discovery import FunctionSpec


class BindingError(RuntimeError):
    """A binding could not be resolved or written."""


# ---------------------------------------------------------------- storage clients


class Storage:
    """Cached SDK clients per connection string (the SDK clients are thread-safe)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self._lock = threading.Lock()
        self._blob: dict[str, BlobServiceClient] = {}
        self._queues: dict[tuple[str, str], QueueClient] = {}

    def connection(self, binding: Mapping[str, Any], where: str) -> str:
        return connection_string(binding.get("connection"), self.environ, where)

    def blob_service(self, conn: str) -> BlobServiceClient:
        with self._lock:
            if conn not in self._blob:
                self._blob[conn] = BlobServiceClient.from_connection_string(conn)
            return self._blob[conn]

    def queue(self, conn: str, name: str) -> QueueClient:
        with self._lock:
            key = (conn, name)
            if key not in self._queues:
                # no encode/decode policy: devhost does the host's base64 itself
                self._queues[key] = QueueClient.from_connection_string(conn, name)
            return self._queues[key]

    def send(self, conn: str, queue_name: str, text: str) -> None:
        client = self.queue(conn, queue_name)
        try:
            client.send_message(text)
        except ResourceNotFoundError:
            # the host's queue output creates the queue on first use
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            client.send_message(text)


# ---------------------------------------------------------------- binding expressions

_EXPR = re.compile(r"\{([^{}]+)\}")


def resolve_expression(template: str, data: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> str:
    """`%Setting%` and `{name}` binding expressions, like the host (names are case-insensitive)."""
    text = resolve_app_settings(template, environ, where)
    lowered = {k.lower(): v for k, v in data.items()}

    def sub(m: re.Match[str]) -> str:
        key = m.group(1).strip()
        low = key.lower()
        if low in ("rand-guid", "sys.randguid"):
            return str(uuid.uuid4())
        if low in ("datetime", "sys.utcnow"):
            return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
        if low in lowered and lowered[low] is not None:
            return str(lowered[low])
        raise BindingError(f"{where}: no value for binding expression {{{key}}} (available: {sorted(data) or 'none'})")

    return _EXPR.sub(sub, text)


def path_pattern(path: str) -> re.Pattern[str]:
    """A blob path pattern (`container/{name}.csv`) as a regex with one group per `{param}`."""
    pieces: list[str] = []
    pos = 0
    for m in _EXPR.finditer(path):
        pieces.append(re.escape(path[pos : m.start()]))
        name = m.group(1).strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"blob path {path!r}: unsupported expression {{{name}}}")
        pieces.append(f"(?P<{name}>.+?)")
        pos = m.end()
    pieces.append(re.escape(path[pos:]))
    body = "".join(pieces)
    if "/" not in path.strip("/"):
        body += "/(?P<__blob>.+)"  # container only: any blob in it
    return re.compile(body)


def split_blob_url(url: str, account_url: str) -> tuple[str, str]:
    """(container, blob name) of a blob URL, path-style (Azurite, IP hosts) or host-style (Azure)."""
    parts = urlsplit(url)
    path = parts.path
    account_path = urlsplit(account_url).path.rstrip("/")
    if account_path and path.startswith(account_path + "/"):
        path = path[len(account_path) :]
    elif re.fullmatch(r"[\d.]+|localhost|\[[0-9a-fA-F:]+\]", parts.hostname or ""):
        path = "/" + path.lstrip("/").partition("/")[2]  # path-style: /account/container/blob
    container, _, blob = path.lstrip("/").partition("/")
    if not container or not blob:
        raise BindingError(f"{url!r} is not a blob URL")
    return unquote(container), unquote(blob)


# ---------------------------------------------------------------- trigger values


def _annotation(spec: FunctionSpec, name: str) -> Any:
    return spec.annotations.get(name)


def _raw_or(spec: FunctionSpec, raw: bytes, make: Any) -> Any:
    ann = _annotation(spec, spec.trigger_name)
    if ann is bytes:
        return raw
    if ann is str:
        return raw.decode("utf-8")
    return make()


def event_grid_value(spec: FunctionSpec, event: Mapping[str, Any]) -> Any:
    text = json.dumps(event)
    return _raw_or(
        spec,
        text.encode(),
        lambda: EventGridEventInConverter.decode(meta.Datum(text, "json"), trigger_metadata={}),
    )


def timer_value(schedule_status: Mapping[str, Any] | None, past_due: bool = False) -> func.TimerRequest:
    info = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": schedule_status, "IsPastDue": past_due}
    value = TimerRequestConverter.decode(meta.Datum(json.dumps(info), "json"), trigger_metadata={})
    assert isinstance(value, func.TimerRequest)
    return value


def _iso(value: dt.datetime | None) -> meta.Datum | None:
    return None if value is None else meta.Datum(value.astimezone(dt.UTC).isoformat(), "string")


def queue_value(
    spec: FunctionSpec,
    body: bytes,
    *,
    message_id: str,
    dequeue_count: int,
    inserted: dt.datetime | None = None,
    expires: dt.datetime | None = None,
    next_visible: dt.datetime | None = None,
    pop_receipt: str | None = None,
) -> Any:
    metadata: dict[str, meta.Datum | None] = {
        "Id": meta.Datum(message_id, "string"),
        "DequeueCount": meta.Datum(dequeue_count, "int"),
        "InsertionTime": _iso(inserted),
        "ExpirationTime": _iso(expires),
        "NextVisibleTime": _iso(next_visible),
        "PopReceipt": None if pop_receipt is None else meta.Datum(pop_receipt, "string"),
    }
    clean = {k: v for k, v in metadata.items() if v is not None}
    return _raw_or(
        spec, body, lambda: QueueMessageInConverter.decode(meta.Datum(body, "bytes"), trigger_metadata=clean)
    )


def queue_binding_data(body: bytes, message_id: str, dequeue_count: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "QueueTrigger": body.decode("utf-8", "replace"),
        "Id": message_id,
        "DequeueCount": dequeue_count,
    }
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        data.update({k: v for k, v in doc.items() if isinstance(v, str | int | float | bool)})
    return data


def decode_queue_text(text: str, encoding: str) -> bytes:
    """The message body: base64 (the host default) when the text is base64 of UTF-8, else the text."""
    if encoding == "base64" and text and len(text) % 4 == 0:
        try:
            raw = base64.b64decode(text, validate=True)
            raw.decode("utf-8")
            return raw
        except (binascii.Error, UnicodeDecodeError):
            pass
    return text.encode("utf-8")


def encode_queue_body(body: bytes, options: QueueOptions) -> str:
    return base64.b64encode(body).decode("ascii") if options.message_encoding == "base64" else body.decode("utf-8")


def read_blob(storage: Storage, conn: str, container: str, blob: str) -> tuple[bytes, dict[str, Any], str]:
    """(content, properties as the host names them, metadata dict, url). Whole blob, as the host loads it."""
    client = storage.blob_service(conn).get_blob_client(container, blob)
    downloader = client.download_blob()
    content = downloader.readall()
    p = downloader.properties
    props: dict[str, Any] = {
        "ContentLength": p.size,
        "ContentType": p.content_settings.content_type,
        "ContentEncoding": p.content_settings.content_encoding,
        "ETag": p.etag,
        "LastModified": p.last_modified.isoformat() if p.last_modified else None,
        "CreatedOn": p.creation_time.isoformat() if p.creation_time else None,
        "BlobType": str(p.blob_type.value if hasattr(p.blob_type, "value") else p.blob_type),
        "Metadata": dict(p.metadata or {}),
    }
    return content, props, client.url


def blob_value(
    spec: FunctionSpec, param: str, content: bytes, *, path: str, uri: str, properties: Mapping[str, Any]
) -> Any:
    ann = _annotation(spec, param)
    if ann is bytes:
        return content
    if ann is str:
        return content.decode("utf-8")
    metadata = {
        "BlobTrigger": meta.Datum(path, "string"),
        "Uri": meta.Datum(uri, "string"),
        "Properties": meta.Datum(json.dumps(dict(properties)), "json"),
        "Metadata": meta.Datum(json.dumps(properties.get("Metadata") or {}), "json"),
    }
    return BlobConverter.decode(meta.Datum(content, "bytes"), trigger_metadata=metadata)


async def load_input(storage: Storage, binding: Mapping[str, Any], data: Mapping[str, Any], spec: FunctionSpec) -> Any:
    """Input bindings: blob input is read whole; unsupported types give None (warned at start)."""
    if str(binding.get("type")).lower() != "blob":
        return None
    where = f"function {spec.name!r} binding {binding['name']!r}"
    path = resolve_expression(str(binding["path"]), data, where, storage.environ)
    container, _, name = path.partition("/")
    conn = storage.connection(binding, where)
    try:
        content, props, url = await asyncio.to_thread(read_blob, storage, conn, container, name)
    except ResourceNotFoundError:
        return None  # a missing input blob binds as None, as in the worker
    return blob_value(spec, str(binding["name"]), content, path=path, uri=url, properties=props)


# ---------------------------------------------------------------- outputs


def _queue_bodies(value: Any, where: str) -> list[bytes]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.encode("utf-8")]
    if isinstance(value, bytes | bytearray):
        return [bytes(value)]
    if isinstance(value, func.QueueMessage):
        return [value.get_body()]
    if isinstance(value, collections.abc.Iterable) and not isinstance(value, Mapping):
        bodies: list[bytes] = []
        for item in value:
            if isinstance(item, str):
                bodies.append(item.encode("utf-8"))
            elif isinstance(item, func.QueueMessage):
                bodies.append(item.get_body())
            else:
                raise BindingError(f"{where}: invalid item type {type(item).__name__} in a queue message list")
        return bodies
    # the worker's queue converter raises here too (e.g. for a dict: serialise it yourself)
    raise BindingError(f"{where}: cannot write a {type(value).__name__} to a queue (use str, bytes or a list)")


def _blob_bytes(value: Any, where: str) -> bytes | None:
    if value is None:
        return None
    if callable(getattr(value, "read", None)):
        value = value.read()
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise BindingError(f"{where}: cannot write a {type(value).__name__} to a blob (use str, bytes or a stream)")


class OutputWriter:
    def __init__(self, storage: Storage, queue_options: QueueOptions) -> None:
        self.storage = storage
        self.queue_options = queue_options

    async def write(self, binding: Mapping[str, Any], value: Any, data: Mapping[str, Any], spec: FunctionSpec) -> None:
        kind = str(binding.get("type")).lower()
        where = f"function {spec.name!r} output {binding['name']!r}"
        if kind == "queue":
            bodies = _queue_bodies(value, where)
            if not bodies:
                return
            queue_name = resolve_expression(str(binding["queueName"]), data, where, self.storage.environ).lower()
            conn = self.storage.connection(binding, where)
            for body in bodies:
                await asyncio.to_thread(
                    self.storage.send, conn, queue_name, encode_queue_body(body, self.queue_options)
                )
        elif kind == "blob":
            content = _blob_bytes(value, where)
            if content is None:
                return
            path = resolve_expression(str(binding["path"]), data, where, self.storage.environ)
            container, _, name = path.partition("/")
            conn = self.storage.connection(binding, where)
            await asyncio.to_thread(self._upload, conn, container, name, content)

    def _upload(self, conn: str, container: str, name: str, content: bytes) -> None:
        service = self.storage.blob_service(conn)
        try:
            service.get_blob_client(container, name).upload_blob(content, overwrite=True)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                service.create_container(container)
            service.get_blob_client(container, name).upload_blob(content, overwrite=True)
