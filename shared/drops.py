"""The drop ledger and its sweep: a dropped dataset is never lost, even when its BlobCreated event is.

Every BlobCreated that ingest handles to an outcome (whatever it is) is noted in the ledger: one record
per blob name under ``drops/``, its ETag in the record's metadata, so one listing reads the whole ledger.
The reconciler's timer then sweeps the drop container: a dataset blob older than
``TUNEFLOW_SWEEP_AFTER_MINUTES`` whose name and ETag the ledger lacks had its event lost (Event Grid gave
up, or the host was down past its retries), and is ingested as if the event had arrived — at most
``TUNEFLOW_SWEEP_MAX`` per pass. Ingest is idempotent, so a late event and the sweep converge on one run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson

from shared.events import BlobCreated
from shared.records import RecordStore, put
from shared.validation import detect_format

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

    from shared.ingest import IngestResult

log = logging.getLogger(__name__)
PREFIX = "drops/"


def _etag(value: str | None) -> str:
    """Event Grid sends ``0x8D…``, the blob API ``"0x8D…"``: compare them bare."""
    return (value or "").strip('"')


class DropLedger:
    def __init__(self, records: RecordStore) -> None:
        self._records = records

    @staticmethod
    def key(blob_name: str) -> str:
        return PREFIX + hashlib.sha256(blob_name.encode()).hexdigest()[:40] + ".json"

    def note(self, blob_name: str, etag: str | None, outcome: str) -> None:
        """Record that ``blob_name`` at ``etag`` was handled (the last outcome wins)."""
        key, meta = self.key(blob_name), {"etag": _etag(etag)}
        data = orjson.dumps({"blob": blob_name, "etag": _etag(etag), "outcome": outcome,
                             "at": datetime.now(UTC).isoformat(timespec="seconds")})
        if not put(self._records, key, data, meta, unchanged=lambda current: current.meta.get("etag") == meta["etag"]):
            log.warning("drop ledger: could not note %s (concurrent writers); the sweep may handle it again", blob_name)

    def seen(self) -> dict[str, str]:
        """key → ETag of every blob handled (one listing; no record is read)."""
        return {key: str(meta.get("etag", "")) for key, meta in self._records.entries(PREFIX)}


def sweep(drop: ContainerClient, ledger: DropLedger, handle: Callable[[BlobCreated], IngestResult], *,
          older_than: timedelta, limit: int, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    """Ingest up to ``limit`` dataset blobs that no event brought; returns how many were handled."""
    seen = ledger.seen()
    handled = 0
    for blob in drop.list_blobs():
        if handled >= limit:
            log.info("drop sweep: %d handled this pass (TUNEFLOW_SWEEP_MAX); the rest wait for the next", limit)
            break
        name, etag = str(blob.name), _etag(str(blob.etag))
        if detect_format(name) is None or seen.get(DropLedger.key(name)) == etag:
            continue
        modified = blob.last_modified
        if modified is not None and now() - modified < older_than:
            continue  # its event may still be on the way
        event = BlobCreated(event_id=f"sweep:{etag}", api="PutBlob", url=f"{drop.url}/{name}",
                            container=drop.container_name, blob_name=name, etag=etag,
                            content_length=int(blob.size) if blob.size is not None else None)
        try:
            result = handle(event)
        except Exception as exc:  # one blob never stops the sweep; the next pass tries it again
            log.warning("drop sweep: %s not ingested yet: %s: %s", name, type(exc).__name__, exc)
            continue
        log.warning("drop sweep: %s had no event; ingested → %s (%s)", name, result.outcome, result.reason)
        handled += 1
    return handled
