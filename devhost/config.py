"""Configuration the Functions host reads: local.settings.json, host.json, app-setting expressions."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A settings or host.json problem, with a message naming the file and key."""


def load_local_settings(path: Path, environ: MutableMapping[str, str]) -> dict[str, Any]:
    """Copy `Values` into `environ` (variables already set win, as with `func start`).

    Returns the whole document so callers can read `Host.LocalHttpPort`.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    if doc.get("IsEncrypted"):
        raise ConfigError(f"{path}: IsEncrypted=true is not supported; decrypt it with `func settings decrypt`")
    values = doc.get("Values", {})
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: 'Values' must be an object of strings")
    for key, value in values.items():
        if not isinstance(value, str):
            raise ConfigError(f"{path}: Values.{key} must be a string, got {type(value).__name__}")
        environ.setdefault(key, value)
    return doc


def parse_timespan(text: str, where: str) -> dt.timedelta:
    """A .NET TimeSpan string: `[d.]hh:mm:ss[.fffffff]`."""
    m = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?", text.strip())
    if not m:
        raise ConfigError(f"{where}: {text!r} is not a TimeSpan (hh:mm:ss)")
    days, hours, minutes, seconds, fraction = m.groups()
    return dt.timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(7, "0")) // 10,
    )


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the defaults the host uses in Development."""

    max_polling_interval: dt.timedelta = dt.timedelta(seconds=2)  # 1 min in Azure, 2 s in Development
    visibility_timeout: dt.timedelta = dt.timedelta(0)
    batch_size: int = 16
    new_batch_threshold: int | None = None
    max_dequeue_count: int = 5
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()
    source: Path | None = None


def load_host_json(path: Path | None) -> HostConfig:
    if path is None or not path.is_file():
        return HostConfig()
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e
    extensions = doc.get("extensions") or {}
    http = extensions.get("http") or {}
    prefix = http.get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise ConfigError(f"{path}: extensions.http.routePrefix must be a string")
    q = extensions.get("queues") or {}
    defaults = QueueOptions()

    def span(key: str, default: dt.timedelta) -> dt.timedelta:
        return parse_timespan(q[key], f"{path}: extensions.queues.{key}") if key in q else default

    def integer(key: str, default: int | None) -> int | None:
        value = q.get(key, default)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ConfigError(f"{path}: extensions.queues.{key} must be a non-negative integer")
        return value

    encoding = str(q.get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise ConfigError(f"{path}: extensions.queues.messageEncoding must be 'base64' or 'none'")
    queues = QueueOptions(
        max_polling_interval=span("maxPollingInterval", defaults.max_polling_interval),
        visibility_timeout=span("visibilityTimeout", defaults.visibility_timeout),
        batch_size=integer("batchSize", defaults.batch_size) or defaults.batch_size,
        new_batch_threshold=integer("newBatchThreshold", None),
        max_dequeue_count=integer("maxDequeueCount", defaults.max_dequeue_count) or defaults.max_dequeue_count,
        message_encoding=encoding,
    )
    return HostConfig(route_prefix=prefix.strip("/"), queues=queues, source=path)


_SETTING_REF = re.compile(r"%([^%]+)%")


def resolve_app_settings(value: str, environ: Mapping[str, str], where: str) -> str:
    """Replace `%NAME%` with the app setting NAME, as the host does in binding properties."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in environ:
            raise ConfigError(f"{where}: app setting {name!r} (referenced as %{name}%) is not set")
        return environ[name]

    return _SETTING_REF.sub(sub, value)


def connection_string(connection: str | None, environ: Mapping[str, str], where: str) -> str:
    """The storage connection string a binding's `connection` names.

    Like the host: empty means AzureWebJobsStorage; NAME is looked up as NAME, then AzureWebJobsNAME.
    Identity-based connections (NAME__serviceUri) need Azure credentials and are not supported here.
    """
    name = connection or "AzureWebJobsStorage"
    for candidate in (name, f"AzureWebJobs{name}"):
        value = environ.get(candidate)
        if value:
            return value
    if any(k.startswith(f"{name}__") for k in environ):
        raise ConfigError(
            f"{where}: connection {name!r} is identity-based ({name}__...); devhost needs a "
            f"connection string (set {name} to one, e.g. Azurite's)"
        )
    raise ConfigError(
        f"{where}: connection setting {name!r} is not set (put a storage connection string "
        "in local.settings.json Values or the environment)"
    )


def is_disabled(function_name: str, environ: Mapping[str, str]) -> bool:
    """`AzureWebJobs.<name>.Disabled` = true disables a function, as in Azure."""
    value = environ.get(f"AzureWebJobs.{function_name}.Disabled")
    if value is None:
        value = environ.get(f"AzureWebJobs_{function_name}_Disabled")
    return value is not None and value.strip().lower() in ("true", "1")
