"""The pooled HTTP clients, one per process, reused across invocations so connections stay open.

- scoring calls: ``shared.scoring.http1.Http1Client``, a lean keep-alive client (the hot path);
- webhook deliveries: ``httpx.AsyncClient`` (off the hot path: one per webhook; the control plane has
  its own synchronous client, ``shared.connections.Connections.http``). Scoring does not go through
  httpx because of its per-request CPU (``shared.scoring.http1``'s docstring has the measured numbers).

Both are sized for at least 32 concurrent calls. An async client belongs to the event loop it first
ran on; the Functions worker has one loop, but tests run several, so clients are kept per loop.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import httpx  # noqa: F401  (named in HttpPool's forward reference)

    from shared.scoring.http1 import Http1Client

T = TypeVar("T")

# Sized for at least 32 concurrent scoring calls per instance (the bench drives 32), with headroom.
MAX_CONNECTIONS = 128
MAX_KEEPALIVE = 64
CONNECT_TIMEOUT_S = 10.0


class PerLoop(Generic[T]):
    """``get()`` returns this event loop's instance (a client, a connection pool), creating it on first use."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._items: dict[int, tuple[asyncio.AbstractEventLoop, T]] = {}
        self._lock = threading.Lock()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        entry = self._items.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        with self._lock:
            # forget the instances of loops that have closed (their connections went with them)
            self._items = {k: v for k, v in self._items.items() if not v[0].is_closed()}
            item = self._factory()
            self._items[id(loop)] = (loop, item)
            return item


HttpPool = PerLoop["httpx.AsyncClient"]


def new_scoring_client(tls: ssl.SSLContext) -> Http1Client:
    from shared.scoring.http1 import Http1Client

    return Http1Client(tls, max_connections=MAX_CONNECTIONS, max_idle_per_origin=MAX_KEEPALIVE)

