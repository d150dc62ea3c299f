"""Queue triggers: poll a storage queue the way the host's queue listener does.

- Poll with randomized exponential back-off from 100 ms up to `maxPollingInterval` (host.json;
  2 s by default in Development, which is what `func start` runs as); poll again at once after a hit.
- Fetch up to `batchSize` (16) messages, run them concurrently, fetch more once at most
  `newBatchThreshold` (batchSize / 2) are still running.
- Messages are held invisible for 10 minutes and the lease is renewed while the function runs.
- Success deletes the message. Failure makes it visible again after `visibilityTimeout` (0);
  once it has been dequeued `maxDequeueCount` (5) times it is copied to `<queue>-poison` and deleted.
- A queue that does not exist yet is polled as empty (the trigger does not create it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from devhost.bindings import Storage, decode_queue_text, queue_binding_data, queue_value
from devhost.config import QueueOptions
from devhost.discovery import FunctionSpec
from devhost.invoker import Invoker

log = logging.getLogger("devhost")

LEASE_SECONDS = 600
MIN_POLL_SECONDS = 0.1


@dataclass
class _Lease:
    id: str
    pop_receipt: str  # changes every time the message is updated


class QueueListener:
    def __init__(
        self,
        spec: FunctionSpec,
        *,
        queue_name: str,
        conn: str,
        storage: Storage,
        invoker: Invoker,
        options: QueueOptions,
    ) -> None:
        self.spec = spec
        self.queue_name = queue_name
        self.storage = storage
        self.invoker = invoker
        self.options = options
        self.client: QueueClient = storage.queue(conn, queue_name)
        self.poison: QueueClient = storage.queue(conn, f"{queue_name}-poison")
        self.threshold = (
            options.new_batch_threshold if options.new_batch_threshold is not None else options.batch_size // 2
        )
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        delay = MIN_POLL_SECONDS
        max_delay = max(self.options.max_polling_interval.total_seconds(), MIN_POLL_SECONDS)
        while True:
            if len(self._tasks) > self.threshold:
                await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                continue
            want = min(self.options.batch_size, 32)
            try:
                messages = await asyncio.to_thread(self._receive, want)
            except Exception as e:
                log.warning("queue %r (function %s): polling failed: %s", self.queue_name, self.spec.name, e)
                messages = []
            if messages:
                delay = MIN_POLL_SECONDS
                for message in messages:
                    task = asyncio.create_task(self._process(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                continue
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, max_delay)

    def _receive(self, count: int) -> list[QueueMessage]:
        try:
            return list(
                self.client.receive_messages(
                    messages_per_page=count, max_messages=count, visibility_timeout=LEASE_SECONDS
                )
            )
        except ResourceNotFoundError:
            return []

    async def _renew(self, lease: _Lease) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 2)
            updated = await asyncio.to_thread(
                self.client.update_message,
                lease.id,
                lease.pop_receipt,
                visibility_timeout=LEASE_SECONDS,
            )
            lease.pop_receipt = str(updated.pop_receipt)

    async def _process(self, message: QueueMessage) -> None:
        lease = _Lease(str(message.id), str(message.pop_receipt or ""))
        count = int(message.dequeue_count or 1)
        if count > self.options.max_dequeue_count:
            await self._to_poison(message, lease)
            return
        body = decode_queue_text(str(message.content or ""), self.options.message_encoding)
        renewal = asyncio.create_task(self._renew(lease))
        try:
            value = queue_value(
                self.spec,
                body,
                message_id=str(message.id),
                dequeue_count=count,
                inserted=message.inserted_on,
                expires=message.expires_on,
                next_visible=message.next_visible_on,
                pop_receipt=message.pop_receipt,
            )
            outcome = await self.invoker.invoke(
                self.spec,
                value,
                reason=f"New queue message detected on '{self.queue_name}'.",
                binding_data=queue_binding_data(body, str(message.id), count),
            )
            succeeded = outcome.succeeded
        except Exception as e:  # conversion failures count as failed invocations
            log.error("queue %r: message %s could not be delivered: %s", self.queue_name, message.id, e)
            succeeded = False
        finally:
            renewal.cancel()
        try:
            if succeeded:
                await asyncio.to_thread(self.client.delete_message, lease.id, lease.pop_receipt)
            elif count >= self.options.max_dequeue_count:
                await self._to_poison(message, lease)
            else:
                await asyncio.to_thread(
                    self.client.update_message,
                    lease.id,
                    lease.pop_receipt,
                    visibility_timeout=int(self.options.visibility_timeout.total_seconds()),
                )
        except ResourceNotFoundError:
            log.warning("queue %r: message %s vanished before it could be settled", self.queue_name, message.id)

    async def _to_poison(self, message: QueueMessage, lease: _Lease) -> None:
        log.warning(
            "Message %s has reached MaxDequeueCount of %d; moving it to queue '%s-poison'.",
            message.id,
            self.options.max_dequeue_count,
            self.queue_name,
        )

        def move() -> None:
            with contextlib.suppress(ResourceExistsError):
                self.poison.create_queue()
            self.poison.send_message(message.content)
            self.client.delete_message(lease.id, lease.pop_receipt)

        await asyncio.to_thread(move)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
