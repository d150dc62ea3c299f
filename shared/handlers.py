"""Event entry points: parse an envelope, route it, and decide between retry and acknowledge.

A malformed event or a permanent failure is logged and acknowledged (retrying cannot fix it; a
permanent failure is already recorded on its run). A transient failure is re-raised so the host
answers with an error and Event Grid redelivers.
"""

from __future__ import annotations

import logging

from shared.errors import EventError
from shared.events import BLOB_CREATED, Envelope, EventGridEventLike, parse_blob_created
from shared.ingest import IngestResult
from shared.services import Services, services

log = logging.getLogger(__name__)


def on_blob_created(event: EventGridEventLike, svc: Services | None = None) -> IngestResult:
    try:
        envelope = Envelope.from_function_event(event)
        if envelope.event_type != BLOB_CREATED:
            log.info("ingest: ignoring %s event %s", envelope.event_type, envelope.id)
            return IngestResult("ignored", f"event type {envelope.event_type}")
        blob = parse_blob_created(envelope)
    except EventError as exc:
        log.warning("ingest: malformed event acknowledged without action: %s", exc)
        return IngestResult("ignored", str(exc))
    result = (svc or services()).ingestor.handle(blob)
    log.info("ingest: %s/%s → %s (%s)", blob.container, blob.blob_name, result.outcome, result.reason)
    return result
