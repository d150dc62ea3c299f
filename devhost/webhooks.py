"""The Event Grid webhooks of the Functions host.

`/runtime/webhooks/EventGrid?functionName=<name>` (Event Grid extension):
  `aeg-event-type: SubscriptionValidation` -> 200 `{"validationResponse": code}`;
  `aeg-event-type: Notification` -> every event runs the function (in parallel); 202 when all
  succeed, 500 (body: the error) when any fails, so Event Grid redelivers the whole batch;
  `Unsubscribe` -> 202; no or another `aeg-event-type` -> 400; unknown function -> 404.
  An Event Grid-schema body is an array; a CloudEvents body is one object or an array.
  OPTIONS with `WebHook-Request-Origin` is the CloudEvents abuse-protection handshake.

`/runtime/webhooks/blobs?functionName=Host.Functions.<name>` (blob extension, source=EventGrid):
  same handshake; each event is queued and the webhook answers 202 at once. The blob is then read
  (whole, like the host) and the function runs; a failing run is retried up to 5 times and then
  recorded on the `webjobs-blobtrigger-poison` queue, as the host's internal blob queue does.
  A missing blob, or one outside the trigger's path pattern, is skipped (logged), not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from devhost.bindings import Storage, blob_value, event_grid_value, path_pattern, read_blob, split_blob_url
from devhost.config import resolve_app_settings
from devhost.discovery import FunctionSpec
from devhost.invoker import Invoker

log = logging.getLogger("devhost")

BLOB_ATTEMPTS = 5
BLOB_POISON_QUEUE = "webjobs-blobtrigger-poison"


@dataclass
class WebhookReply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, doc: Any) -> WebhookReply:
        return cls(status, json.dumps(doc).encode(), (("content-type", "application/json; charset=utf-8"),))

    @classmethod
    def text(cls, status: int, text: str) -> WebhookReply:
        return cls(status, text.encode(), (("content-type", "text/plain; charset=utf-8"),))


def _parse_events(body: bytes) -> list[dict[str, Any]] | WebhookReply:
    try:
        doc = json.loads(body or b"null")
    except ValueError as e:
        return WebhookReply.text(400, f"request body is not JSON: {e}")
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
        return WebhookReply.text(400, "request body must be a JSON object or an array of objects")
    return doc


def handshake(method: str, headers: Mapping[str, str], body: bytes) -> WebhookReply | None:
    """The validation handshakes; None when the request carries events to deliver."""
    if method == "OPTIONS":
        origin = headers.get("webhook-request-origin")
        if not origin:
            return WebhookReply.text(400, "CloudEvents validation request without WebHook-Request-Origin")
        return WebhookReply(200, headers=(("webhook-allowed-origin", origin), ("webhook-allowed-rate", "*")))
    kind = headers.get("aeg-event-type", "").lower()
    if kind == "subscriptionvalidation":
        events = _parse_events(body)
        if isinstance(events, WebhookReply):
            return events
        data = events[0].get("data") if events else None
        if isinstance(data, str):  # CloudEvents subscription events carry data as a JSON string
            try:
                data = json.loads(data)
            except ValueError:
                data = None
        code = data.get("validationCode") if isinstance(data, dict) else None
        if not isinstance(code, str):
            return WebhookReply.text(400, "SubscriptionValidation event without data.validationCode")
        return WebhookReply.json(200, {"validationResponse": code})
    if kind == "unsubscribe":
        return WebhookReply(202)
    if kind != "notification":
        return WebhookReply.text(
            400,
            "missing or unknown aeg-event-type header (Event Grid sends Notification or SubscriptionValidation)",
        )
    return None


async def deliver_event_grid(spec: FunctionSpec, invoker: Invoker, body: bytes) -> WebhookReply:
    events = _parse_events(body)
    if isinstance(events, WebhookReply):
        return events

    async def one(event: dict[str, Any]) -> tuple[bool, str]:
        try:
            value = event_grid_value(spec, event)
        except Exception as e:
            return False, f"event {event.get('id')!r} could not be converted: {e}"
        outcome = await invoker.invoke(
            spec,
            value,
            reason=f"EventGrid trigger fired (event id {event.get('id')})",
            binding_data={"data": event.get("data")},
            trace_parent=str(event.get("traceparent") or ""),
        )
        return outcome.succeeded, outcome.error_text

    results = await asyncio.gather(*(one(e) for e in events))
    failed = [text for ok, text in results if not ok]
    if failed:
        return WebhookReply.text(500, failed[0])
    return WebhookReply(202)


class BlobEventProcessor:
    def __init__(self, storage: Storage, invoker: Invoker) -> None:
        self.storage = storage
        self.invoker = invoker
        self._tasks: set[asyncio.Task[None]] = set()

    def accept(self, spec: FunctionSpec, body: bytes) -> WebhookReply:
        events = _parse_events(body)
        if isinstance(events, WebhookReply):
            return events
        for event in events:
            task = asyncio.create_task(self._run(spec, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return WebhookReply(202)

    async def _run(self, spec: FunctionSpec, event: Mapping[str, Any]) -> None:
        where = f"function {spec.name!r} blob trigger"
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str):
            log.warning("%s: event %s has no data.url; ignored", where, event.get("id"))
            return
        try:
            conn = self.storage.connection(spec.trigger, where)
            account_url = self.storage.blob_service(conn).url
            container, blob = split_blob_url(url, account_url)
            path = resolve_app_settings(str(spec.trigger["path"]), self.storage.environ, where)
        except Exception as e:
            log.error("%s: cannot handle event %s: %s", where, event.get("id"), e)
            return
        match = path_pattern(path).fullmatch(f"{container}/{blob}")
        if match is None:
            log.info("%s: blob %s/%s does not match path %r; skipped", where, container, blob, path)
            return
        binding_data: dict[str, Any] = {k: v for k, v in match.groupdict().items() if not k.startswith("__")}
        binding_data.update({"BlobTrigger": f"{container}/{blob}", "Uri": url})
        await self.run_blob(
            spec,
            conn=conn,
            container=container,
            blob=blob,
            binding_data=binding_data,
            reason=f"New blob detected ({url})",
        )

    async def run_blob(
        self,
        spec: FunctionSpec,
        *,
        conn: str,
        container: str,
        blob: str,
        binding_data: dict[str, Any],
        reason: str,
    ) -> bool:
        for attempt in range(1, BLOB_ATTEMPTS + 1):
            try:
                content, props, uri = await asyncio.to_thread(read_blob, self.storage, conn, container, blob)
            except ResourceNotFoundError:
                log.info("function %r: blob %s/%s no longer exists; skipped", spec.name, container, blob)
                return True
            value = blob_value(spec, spec.trigger_name, content, path=f"{container}/{blob}", uri=uri, properties=props)
            outcome = await self.invoker.invoke(spec, value, reason=reason, binding_data=binding_data)
            if outcome.succeeded:
                return True
            log.warning(
                "function %r: blob %s/%s failed (attempt %d of %d)",
                spec.name,
                container,
                blob,
                attempt,
                BLOB_ATTEMPTS,
            )
        await asyncio.to_thread(self._poison, conn, spec.name, container, blob)
        return False

    def _poison(self, conn: str, function: str, container: str, blob: str) -> None:
        message = json.dumps(
            {
                "Type": "BlobTrigger",
                "FunctionId": f"Host.Functions.{function}",
                "BlobType": "BlockBlob",
                "ContainerName": container,
                "BlobName": blob,
            }
        )
        log.error(
            "function %r: blob %s/%s failed %d times; recorded on queue %r",
            function,
            container,
            blob,
            BLOB_ATTEMPTS,
            BLOB_POISON_QUEUE,
        )
        try:
            client = self.storage.queue(conn, BLOB_POISON_QUEUE)
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            client.send_message(message)
        except Exception as e:
            log.error("could not write to %r: %s", BLOB_POISON_QUEUE, e)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
