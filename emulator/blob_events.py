"""``Microsoft.Storage.BlobCreated`` for Azurite: poll the watched containers and publish what is new.

Azurite has no event feed, so the watcher lists blobs every ``blob_poll_interval`` seconds and emits an
event for every (name, ETag) it has not seen. Only containers some subscription could receive
BlobCreated events for are watched (a ``subject_begins_with`` of ``/blobServices/default/containers/<c>/``
narrows it to that container); a container is baselined silently when first watched, and what was seen
persists, so blobs written while the emulator was down are reported after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from emulator import arm
from emulator.blobstore import BlobInfo

if TYPE_CHECKING:
    from emulator.core import Emulator

log = logging.getLogger("emulator.blobs")

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
_CONTAINER_RE = re.compile(r"^/blobservices/default/containers/([^/]+)(/|$)", re.IGNORECASE)


class BlobWatcher:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.seen = emu.store["blob_seen"]
        self._task: asyncio.Task[None] | None = None
        self._sequence = int((emu.store["counters"].get("blob_sequencer") or {}).get("value", 0))

    @property
    def topic(self) -> str:
        c = self.emu.cfg
        return (
            f"/subscriptions/{c.subscription_id}/resourceGroups/{c.resource_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{self.emu.blobs.account_name}"
        )

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="blob-watcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def watched(self, available: list[str]) -> set[str]:
        """Containers some subscription may want BlobCreated events for."""
        wanted: set[str] = set()
        for sub in self.emu.events.subs.values():
            types = {t.lower() for t in sub.included_event_types or [BLOB_CREATED]}
            if BLOB_CREATED.lower() not in types:
                continue
            match = _CONTAINER_RE.match(sub.subject_begins_with or "")
            if match:
                wanted.add(match.group(1))
            else:  # no container in the filter: any container may match
                wanted.update(available)
        return wanted & set(available)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.scan_once)
            except Exception as exc:  # Azurite down or restarting: keep polling
                log.debug("blob scan failed: %s", exc)
            await asyncio.sleep(self.emu.cfg.blob_poll_interval)

    def scan_once(self) -> int:
        """One polling pass (runs in a worker thread); returns the number of events published."""
        if not any(BLOB_CREATED.lower() in {t.lower() for t in (s.included_event_types or [BLOB_CREATED])}
                   for s in self.emu.events.subs.values()):
            return 0
        containers = self.emu.blobs.list_containers()
        watched = self.watched(containers)
        for stale in set(self.seen.keys()) - watched:
            self.seen.delete(stale)  # not watched any more: baseline again if it comes back
        published = 0
        for container in sorted(watched):
            blobs = self.emu.blobs.list_blobs(container)
            current = {b.name: b.etag for b in blobs}
            doc = self.seen.get(container)
            if doc is None:
                self.seen.put(container, {"blobs": current})
                continue
            before: dict[str, str] = doc.get("blobs", {})
            new = [b for b in blobs if before.get(b.name) != b.etag]
            for blob in new:
                self.emu.events.publish(self._event(blob))
                published += 1
            if new or len(before) != len(current):
                self.seen.put(container, {"blobs": current})
        if published:
            self.emu.store["counters"].put("blob_sequencer", {"value": self._sequence})
        return published

    def _event(self, blob: BlobInfo) -> dict[str, Any]:
        self._sequence += 1
        api = "PutBlob"
        if blob.blob_type == "BlockBlob" and self.emu.blobs.committed_block_count(blob.container, blob.name) > 0:
            api = "PutBlockList"
        data = {
            "api": api,
            "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
            "eTag": blob.etag,
            "contentType": blob.content_type,
            "contentLength": blob.size,
            "blobType": blob.blob_type,
            "accessTier": "Default",  # the blob is on the account's default tier (Azurite has no other)
            "url": self.emu.blobs.blob_url(blob.container, blob.name),
            "sequencer": f"{self._sequence:032d}",
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        }
        return {
            "id": str(uuid.uuid4()),
            "topic": self.topic,
            "subject": f"/blobServices/default/containers/{blob.container}/blobs/{blob.name}",
            "eventType": BLOB_CREATED,
            "eventTime": arm.iso(),
            "data": data,
            "dataVersion": "",
            "metadataVersion": "1",
        }
