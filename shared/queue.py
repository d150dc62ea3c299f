"""A storage queue of JSON messages (base64 text, what the Functions queue trigger expects by default).

The queue is created on first send. A delay makes the message visible only later (at most 7 days, the
service's limit): that is how tuneflow waits — a settle window, a webhook back-off — without a
function instance sleeping.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

MAX_DELAY_S = 7 * 24 * 3600


class JsonQueue:
    def __init__(self, client: Callable[[], QueueClient], *, exists: bool = False) -> None:
        self._factory = client
        self._client: QueueClient | None = None
        self._ready = exists
        self._lock = threading.Lock()

    def _queue(self) -> QueueClient:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            if not self._ready:
                from azure.core.exceptions import ResourceExistsError

                with contextlib.suppress(ResourceExistsError):
                    self._client.create_queue()
                self._ready = True
            client: QueueClient = self._client
            return client

    def send_json(self, message: dict[str, Any], delay_s: float = 0) -> None:
        delay = int(max(0, min(delay_s, MAX_DELAY_S)))
        self._queue().send_message(orjson.dumps(message).decode(), visibility_timeout=delay or None)
