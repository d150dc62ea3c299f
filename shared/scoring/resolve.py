"""Endpoint resolution: scoring URI, key and deployments of an online endpoint, cached per endpoint.

Resolution is a control-plane call (three ARM requests, see ``shared.endpoints.control``), so it happens once
per ``TUNEFLOW_ENDPOINT_CACHE_S`` — or when the endpoint answers 401/403 because its key was rotated —
and never per request. Concurrent callers share one resolution (single flight). An endpoint that does
not exist is remembered for a few seconds, so clients hammering a torn-down endpoint do not hammer ARM.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared.connections import ML_SCOPE
from shared.endpoints.control import ControlPlane, deployment_models
from shared.errors import EndpointNotFound

log = logging.getLogger(__name__)
NEGATIVE_TTL_S = 5.0


@dataclass(frozen=True)
class EndpointInfo:
    name: str
    scoring_uri: str
    key: str = field(repr=False)
    models: Mapping[str, str | None]  # deployment → "model name:version"
    traffic: Mapping[str, int]
    expires_at: float = float("inf")  # monotonic; a token-auth key may expire before the TTL
    created: int = 0  # the endpoint's creation (epoch seconds), as OpenAI's model list reports it


class Resolver(Protocol):
    async def resolve(self, name: str) -> EndpointInfo: ...


class ControlPlaneResolver:
    """GET the endpoint, then its key (``listKeys``, or a token) and its deployments, concurrently
    (each control-plane call runs in a worker thread: the client is synchronous)."""

    def __init__(self, control: ControlPlane, clock: Callable[[], float] = time.monotonic) -> None:
        self._control = control
        self._clock = clock

    async def resolve(self, name: str) -> EndpointInfo:
        endpoint = await asyncio.to_thread(self._control.endpoint, name)
        if endpoint is None:
            raise EndpointNotFound(f"endpoint {name!r} does not exist", endpoint=name)
        props = endpoint.get("properties") or {}
        if str(props.get("provisioningState", "")).lower() == "deleting":
            raise EndpointNotFound(f"endpoint {name!r} is being deleted", endpoint=name)
        (key, expires), deployments = await asyncio.gather(
            self._key(name, str(props.get("authMode") or "Key").lower()),
            asyncio.to_thread(self._control.deployments, name))
        traffic = {str(k): int(v) for k, v in (props.get("traffic") or {}).items()}
        return EndpointInfo(name, str(props.get("scoringUri") or ""), key, deployment_models(deployments), traffic,
                            expires, _created(endpoint))

    async def _key(self, name: str, auth_mode: str) -> tuple[str, float]:
        if auth_mode == "key":
            keys = await asyncio.to_thread(self._control.keys, name)
            return str(keys.get("primaryKey") or ""), float("inf")
        if auth_mode == "aadtoken":
            token, expires_on = await asyncio.to_thread(self._control.bearer, ML_SCOPE)
            return token, self._clock() + max(0.0, expires_on - time.time() - 300)
        doc = await asyncio.to_thread(self._control.token, name)
        expiry = float(doc.get("expiryTimeUtc") or 0) or time.time() + 3600
        return str(doc.get("accessToken") or ""), self._clock() + max(0.0, expiry - time.time() - 300)


def _created(resource: Mapping[str, object]) -> int:
    system = resource.get("systemData")
    raw = system.get("createdAt") if isinstance(system, Mapping) else None
    try:
        return int(datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp()) if raw else 0
    except ValueError:
        return 0


class EndpointCache:
    """Resolved endpoints for ``ttl`` seconds; one resolution at a time per endpoint."""

    def __init__(self, resolver: Resolver, ttl: float, negative_ttl: float = NEGATIVE_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._resolver = resolver
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._clock = clock
        self._items: dict[str, tuple[EndpointInfo, float]] = {}
        self._missing: dict[str, tuple[EndpointNotFound, float]] = {}
        self._inflight: dict[str, asyncio.Task[EndpointInfo]] = {}
        self.resolutions = 0  # control-plane resolutions made

    def _fresh(self, name: str) -> EndpointInfo | None:
        entry = self._items.get(name)
        if entry is None:
            return None
        info, fetched = entry
        now = self._clock()
        return info if now - fetched < self._ttl and now < info.expires_at else None

    async def get(self, name: str, *, stale: EndpointInfo | None = None) -> EndpointInfo:
        """The cached endpoint; ``stale`` (the one a caller found wanting) forces a re-resolution."""
        info = self._fresh(name)
        if info is not None and info is not stale:
            return info
        missing = self._missing.get(name)
        if stale is None and missing is not None and self._clock() - missing[1] < self._negative_ttl:
            raise missing[0]
        task = self._inflight.get(name)
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._resolve(name))
            self._inflight[name] = task
        return await asyncio.shield(task)

    async def _resolve(self, name: str) -> EndpointInfo:
        self.resolutions += 1
        try:
            info = await self._resolver.resolve(name)
        except EndpointNotFound as exc:
            self._items.pop(name, None)
            self._missing[name] = (exc, self._clock())
            raise
        self._missing.pop(name, None)
        self._items[name] = (info, self._clock())
        log.info("endpoint %s resolved: %d deployment(s)", name, len(info.models))
        return info

    def invalidate(self, name: str | None = None) -> None:
        if name is None:
            self._items.clear()
            self._missing.clear()
        else:
            self._items.pop(name, None)
            self._missing.pop(name, None)

    def peek(self, name: str) -> EndpointInfo | None:
        return self._fresh(name)
