"""Event Grid: webhook subscriptions, at-least-once delivery with retries, and a custom topic endpoint.

Delivery follows the service: the validation handshake before the first event
(``SubscriptionValidationEvent`` for Event Grid schema subscribers, the CloudEvents ``OPTIONS``
abuse-protection handshake for CloudEvents subscribers), one event per POST, ``aeg-*`` headers, retries
on Azure's schedule (10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, then hourly, on the emulator's scaled
clock), a 30 s answer window, no retry of 400/401/403/413, dead-lettering after the maximum attempts or the
time to live (to a blob container when the subscription names one, as Azure lays it out). Events retried
later overtake newer ones, as on Azure. Pending deliveries are persisted, so a restart loses none.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import arm

if TYPE_CHECKING:
    from emulator.core import Emulator

log = logging.getLogger("emulator.eventgrid")

EG_SCHEMA = "EventGridSchema"
CE_SCHEMA = "CloudEventSchemaV1_0"
KEEP = 5000  # delivery records and topic events kept in memory for the admin API
# Azure's documented retry schedule after each failed attempt (DELIVERY.md), then hourly; in Azure's seconds.
RETRY_SCHEDULE_S = (10, 30, 60, 5 * 60, 10 * 60, 30 * 60, 60 * 60)
# Webhook answers Event Grid never retries: dead-lettered (or dropped) at once.
NEVER_RETRIED = frozenset({400, 401, 403, 413})


def retry_delay_s(attempts_made: int) -> float:
    """Seconds (of Azure's time) before the next attempt, after ``attempts_made`` failed ones."""
    return float(RETRY_SCHEDULE_S[min(attempts_made, len(RETRY_SCHEDULE_S)) - 1])


@dataclass
class Subscription:
    name: str
    endpoint: str
    included_event_types: list[str] | None = None
    subject_begins_with: str | None = None
    subject_ends_with: str | None = None
    event_delivery_schema: str = EG_SCHEMA
    max_delivery_attempts: int | None = None
    event_time_to_live_minutes: float | None = None
    dead_letter_container: str | None = None
    source: str = "config"
    validated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any, source: str) -> Subscription:
        if not isinstance(raw, dict):
            raise ValueError("a subscription must be a JSON object")
        name, endpoint = raw.get("name"), raw.get("endpoint")
        if not isinstance(name, str) or not name:
            raise ValueError("subscription 'name' is required")
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"subscription {name!r}: 'endpoint' must be an http(s) webhook URL")
        types = raw.get("included_event_types")
        if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) for t in types)):
            raise ValueError(f"subscription {name!r}: 'included_event_types' must be a list of strings")
        schema = raw.get("event_delivery_schema", EG_SCHEMA)
        if schema not in (EG_SCHEMA, CE_SCHEMA):
            raise ValueError(f"subscription {name!r}: event_delivery_schema must be {EG_SCHEMA} or {CE_SCHEMA}")
        attempts = raw.get("max_delivery_attempts")
        if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int)
                                     or not 1 <= attempts <= 30):
            raise ValueError(f"subscription {name!r}: max_delivery_attempts must be an integer from 1 to 30")
        ttl = raw.get("event_time_to_live_minutes")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 1440):
            raise ValueError(f"subscription {name!r}: event_time_to_live_minutes must be an integer from 1 to 1440")
        dead_letter = raw.get("dead_letter_container")
        if dead_letter is not None and (not isinstance(dead_letter, str) or not dead_letter):
            raise ValueError(f"subscription {name!r}: dead_letter_container must be a container name")
        return cls(
            name=name,
            endpoint=endpoint,
            included_event_types=types or None,
            subject_begins_with=raw.get("subject_begins_with") or None,
            subject_ends_with=raw.get("subject_ends_with") or None,
            event_delivery_schema=schema,
            max_delivery_attempts=attempts,
            event_time_to_live_minutes=ttl,
            dead_letter_container=dead_letter,
            source=source,
        )

    def matches(self, event_type: str, subject: str) -> bool:
        if self.included_event_types and event_type.lower() not in {
            t.lower() for t in self.included_event_types
        }:
            return False
        subj = subject.lower()
        if self.subject_begins_with and not subj.startswith(self.subject_begins_with.lower()):
            return False
        return not (self.subject_ends_with and not subj.endswith(self.subject_ends_with.lower()))

    def public(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("extra", None)
        return doc


def load_events_config(path: Path) -> list[Subscription]:
    """The ``--events-config`` file: a JSON list of subscriptions (or ``{"subscriptions": [...]}``)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(raw, dict):
        raw = raw.get("subscriptions", [])
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a JSON list of subscriptions")
    subs = [Subscription.parse(item, "config") for item in raw]
    names = [s.name for s in subs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: subscription names must be unique")
    return subs


def eg_to_cloud(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event["id"],
        "source": event.get("topic", ""),
        "subject": event.get("subject", ""),
        "type": event["eventType"],
        "time": event.get("eventTime"),
        "datacontenttype": "application/json",
        "data": event.get("data"),
    }


def cloud_to_eg(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event["id"],
        "topic": event.get("source", ""),
        "subject": event.get("subject") or "",
        "eventType": event["type"],
        "eventTime": event.get("time") or arm.iso(),
        "data": event.get("data"),
        "dataVersion": event.get("dataschema") or "1.0",
        "metadataVersion": "1",
    }


class EventGrid:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.subs: dict[str, Subscription] = {}
        self.pending = emu.store["eg_pending"]
        self.state = emu.store["eg_subscriptions"]
        self.deliveries: dict[str, deque[dict[str, Any]]] = {}
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.topic_events: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.published: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self._queues: dict[str, asyncio.Queue[str]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._reorder: list[tuple[str, dict[str, Any]]] = []
        self._reorder_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._late: set[asyncio.Future[tuple[bool, int, str]]] = set()  # attempts answered after the window
        self._validating: dict[str, asyncio.Lock] = {}
        self._seq = 0

    # ------------------------------------------------------------------------ subscriptions

    async def start(self) -> None:
        # The answer window is applied around each attempt; the client itself waits as long as a handler runs.
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0), verify=False)
        config_subs = load_events_config(self.emu.cfg.events_config) if self.emu.cfg.events_config else []
        for sub in config_subs:
            self._install(sub)
        for name, doc in self.state.items():
            if doc.get("source") == "admin" and name not in self.subs:
                self._install(Subscription.parse(doc, "admin"))
        for key, doc in self.pending.items():
            if doc["sub"] in self.subs:
                self._queues[doc["sub"]].put_nowait(key)
            else:
                self.pending.delete(key)

    async def stop(self) -> None:
        for task in list(self._workers.values()):
            task.cancel()
        if self._reorder_task:
            self._reorder_task.cancel()
        for task in list(self._workers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._workers.clear()
        if self._client:
            await self._client.aclose()

    def _install(self, sub: Subscription) -> None:
        saved = self.state.get(sub.name)
        # A subscription stays validated across restarts while its endpoint is unchanged.
        sub.validated = bool(saved and saved.get("validated") and saved.get("endpoint") == sub.endpoint)
        self.subs[sub.name] = sub
        self.state.put(sub.name, sub.public())
        self.deliveries.setdefault(sub.name, deque(maxlen=KEEP))
        if sub.name not in self._queues:
            self._queues[sub.name] = asyncio.Queue()
        if sub.name not in self._workers:
            self._workers[sub.name] = asyncio.get_running_loop().create_task(
                self._worker(sub.name), name=f"eventgrid:{sub.name}"
            )

    def upsert(self, sub: Subscription) -> Subscription:
        self._install(sub)
        return sub

    def remove(self, name: str) -> bool:
        sub = self.subs.pop(name, None)
        self.state.delete(name)
        task = self._workers.pop(name, None)
        if task:
            task.cancel()
        self._queues.pop(name, None)
        for key, doc in self.pending.items():
            if doc["sub"] == name:
                self.pending.delete(key)
        return sub is not None

    # ------------------------------------------------------------------------ publishing

    def system_event(
        self, topic: str, event_type: str, subject: str, data: dict[str, Any], data_version: str = "2"
    ) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "topic": topic,
            "subject": subject,
            "eventType": event_type,
            "eventTime": arm.iso(),
            "data": data,
            "dataVersion": data_version,
            "metadataVersion": "1",
        }

    def publish(self, event: dict[str, Any], schema: str = EG_SCHEMA) -> None:
        """Fan an event out to every matching subscription (thread-safe: hops onto the loop)."""
        loop = self.emu.loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._publish(event, schema)
        else:
            loop.call_soon_threadsafe(self._publish, event, schema)

    def _publish(self, event: dict[str, Any], schema: str) -> None:
        event_type = event["eventType"] if schema == EG_SCHEMA else event["type"]
        subject = event.get("subject") or ""
        self.published.append({"schema": schema, "event": event, "published_at": arm.iso()})
        faults = self.emu.faults.current
        for sub in list(self.subs.values()):
            if not sub.matches(event_type, subject):
                continue
            for _ in range(1 + max(0, int(faults.event_duplicates))):
                if faults.event_out_of_order:
                    self._reorder.append((sub.name, {"schema": schema, "event": event}))
                    if self._reorder_task is None or self._reorder_task.done():
                        self._reorder_task = asyncio.get_running_loop().create_task(
                            self._flush_reordered(faults.event_reorder_window_s)
                        )
                else:
                    self._enqueue(sub.name, schema, event)

    async def _flush_reordered(self, window: float) -> None:
        await asyncio.sleep(window)
        batch, self._reorder = self._reorder, []
        for sub_name, item in reversed(batch):  # newest first: the opposite of publication order
            if sub_name in self.subs:
                self._enqueue(sub_name, item["schema"], item["event"])

    def _enqueue(self, sub_name: str, schema: str, event: dict[str, Any]) -> None:
        self._seq += 1
        key = f"{time.time_ns():020d}-{self._seq:08d}"
        self.pending.put(key, {"sub": sub_name, "schema": schema, "event": event, "attempt": 0,
                               "enqueued": arm.iso(), "enqueued_at": time.time()})
        self._queues[sub_name].put_nowait(key)

    # ------------------------------------------------------------------------ delivery

    def _attempts(self, sub: Subscription) -> int:
        return sub.max_delivery_attempts or self.emu.cfg.delivery_attempts

    async def _worker(self, sub_name: str) -> None:
        queue = self._queues[sub_name]
        while True:
            key = await queue.get()
            sub = self.subs.get(sub_name)
            doc = self.pending.get(key)
            if sub is None or doc is None:
                continue
            ok, status, detail = await self._deliver_within_window(sub, doc)
            attempt = doc["attempt"] + 1
            event = doc["event"]
            record = {
                "id": event["id"],
                "eventType": event.get("eventType") or event.get("type"),
                "subject": event.get("subject"),
                "attempt": attempt,
                "status": status,
                "ok": ok,
                "time": arm.iso(),
                "detail": detail,
            }
            if ok:
                record["event"] = event
            self.deliveries[sub_name].append(record)
            if ok:
                self.pending.delete(key)
                continue
            reason = self._give_up_reason(sub, doc, attempt, status)
            if reason:
                self.pending.delete(key)
                self._dead_letter(sub, event, attempt, status, detail, reason=reason)
                continue
            self.pending.put(key, {**doc, "attempt": attempt})
            delay = self.emu.cfg.scaled(retry_delay_s(attempt))
            asyncio.get_running_loop().call_later(delay, self._requeue, sub_name, key)

    async def _deliver_within_window(self, sub: Subscription, doc: dict[str, Any]) -> tuple[bool, int, str]:
        """One attempt, judged after ``delivery_timeout``: no answer by then is a failure and the event is
        retried, while the first request goes on (a Functions host keeps running the function)."""
        attempt = asyncio.ensure_future(self._deliver(sub, doc))
        window = self.emu.cfg.delivery_timeout
        try:
            return await asyncio.wait_for(asyncio.shield(attempt), window)
        except TimeoutError:
            self._late.add(attempt)
            attempt.add_done_callback(self._late.discard)
            return False, 0, f"no answer within {window:g} s"
        except Exception as exc:
            return False, 0, f"{type(exc).__name__}: {exc}"

    def _give_up_reason(self, sub: Subscription, doc: dict[str, Any], attempt: int, status: int) -> str | None:
        """Why this event is delivered no more, or None to retry it (Azure's rules, DELIVERY.md)."""
        if status in NEVER_RETRIED:
            return "UndeliverableDueToClientError"
        if attempt >= self._attempts(sub):
            return "MaxDeliveryAttemptsExceeded"
        age = time.time() - float(doc.get("enqueued_at", time.time()))
        next_try = age + self.emu.cfg.scaled(retry_delay_s(attempt))
        if next_try > self.emu.cfg.scaled(self._ttl_minutes(sub) * 60):
            return "TimeToLiveExceeded"
        return None

    def _ttl_minutes(self, sub: Subscription) -> float:
        return sub.event_time_to_live_minutes or self.emu.cfg.event_ttl_minutes

    def _dead_letter(self, sub: Subscription, event: dict[str, Any], attempt: int, status: int, detail: str, *,
                     reason: str) -> None:
        now = time.gmtime()
        letter = {
            **event,
            "deadLetterReason": reason,
            "deliveryAttempts": attempt,
            "lastDeliveryOutcome": detail,
            "lastHttpStatusCode": status,
            "publishTime": event.get("eventTime") or event.get("time"),
            "lastDeliveryAttemptTime": arm.iso(),
        }
        self.dead_letters.append({"subscription": sub.name, "event": event, "attempts": attempt, "lastStatus": status,
                                  "deadLetterReason": reason, "lastDeliveryOutcome": detail, "time": arm.iso()})
        log.warning("dead-lettered event %s for %s after %d attempts: %s", event.get("id"), sub.name, attempt, reason)
        if sub.dead_letter_container:
            # <SUBSCRIPTION>/<y>/<m>/<d>/<h>/<id>.json, not zero-padded, UTC: where Azure writes them
            name = (f"{sub.name.upper()}/{now.tm_year}/{now.tm_mon}/{now.tm_mday}/{now.tm_hour}/"
                    f"{uuid.uuid4()}.json")
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._write_dead_letter, sub.dead_letter_container, name, letter))
            self._late.add(task)
            task.add_done_callback(self._late.discard)

    def _write_dead_letter(self, container: str, name: str, letter: dict[str, Any]) -> tuple[bool, int, str]:
        try:
            self.emu.blobs.ensure_container(container)
            self.emu.blobs.put(container, name, json.dumps([letter]).encode())
        except Exception as exc:  # Azure drops a dead letter it cannot write; say so
            log.warning("could not write dead letter %s to %s: %s", name, container, exc)
        return True, 0, ""

    def _requeue(self, sub_name: str, key: str) -> None:
        queue = self._queues.get(sub_name)
        if queue is not None:
            queue.put_nowait(key)

    async def _validate(self, sub: Subscription) -> tuple[bool, str]:
        assert self._client is not None
        if sub.event_delivery_schema == CE_SCHEMA:
            resp = await self._client.request(
                "OPTIONS",
                sub.endpoint,
                headers={"WebHook-Request-Origin": "eventgrid.azure.net", "WebHook-Request-Rate": "120"},
            )
            allowed = resp.headers.get("WebHook-Allowed-Origin", "")
            ok = resp.status_code == 200 and allowed in ("*", "eventgrid.azure.net")
            return ok, f"CloudEvents handshake: HTTP {resp.status_code}, WebHook-Allowed-Origin={allowed!r}"
        code = str(uuid.uuid4()).upper()
        event = {
            "id": str(uuid.uuid4()),
            "topic": f"/subscriptions/{self.emu.cfg.subscription_id}",
            "subject": "",
            "data": {
                "validationCode": code,
                "validationUrl": f"{self.emu.base_url}/_emulator/eventgrid/validate?name={sub.name}&code={code}",
            },
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": arm.iso(),
            "metadataVersion": "1",
            "dataVersion": "1",
        }
        resp = await self._client.post(
            sub.endpoint,
            content=json.dumps([event]),
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "aeg-event-type": "SubscriptionValidation",
                "aeg-subscription-name": sub.name.upper(),
                "aeg-data-version": "1",
                "aeg-metadata-version": "1",
                "aeg-delivery-count": "0",
            },
        )
        try:
            answer = resp.json().get("validationResponse")
        except (ValueError, AttributeError):
            answer = None
        ok = resp.status_code == 200 and isinstance(answer, str) and answer.upper() == code
        return ok, f"validation handshake: HTTP {resp.status_code}, validationResponse={answer!r}"

    async def _deliver(self, sub: Subscription, doc: dict[str, Any]) -> tuple[bool, int, str]:
        assert self._client is not None
        async with self._validating.setdefault(sub.name, asyncio.Lock()):
            if not sub.validated:
                ok, detail = await self._validate(sub)
                if not ok:
                    return False, 0, detail
                sub.validated = True
                self.state.put(sub.name, sub.public())
        event = doc["event"]
        headers = {
            "aeg-event-type": "Notification",
            "aeg-subscription-name": sub.name.upper(),
            "aeg-delivery-count": str(doc["attempt"]),
            "aeg-metadata-version": "1",
        }
        if sub.event_delivery_schema == CE_SCHEMA:
            payload: Any = event if doc["schema"] == CE_SCHEMA else eg_to_cloud(event)
            headers["Content-Type"] = "application/cloudevents+json; charset=utf-8"
        else:
            eg = event if doc["schema"] == EG_SCHEMA else cloud_to_eg(event)
            payload = [eg]
            headers["Content-Type"] = "application/json; charset=utf-8"
            headers["aeg-data-version"] = str(eg.get("dataVersion", ""))
        resp = await self._client.post(sub.endpoint, content=json.dumps(payload), headers=headers)
        ok = 200 <= resp.status_code < 300
        return ok, resp.status_code, f"HTTP {resp.status_code}"

    def delivered(self, sub_name: str | None = None) -> dict[str, list[dict[str, Any]]]:
        names = [sub_name] if sub_name else list(self.deliveries)
        return {n: list(self.deliveries.get(n, ())) for n in names}


# ---------------------------------------------------------------------------- custom topic endpoint


def _check_sas_token(token: str, key: str) -> bool:
    if "&s=" not in token:
        return False
    unsigned, _, signature = token.rpartition("&s=")
    digest = hmac.new(base64.b64decode(key), unsigned.encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), unquote(signature)):
        return False
    for part in unsigned.split("&"):
        if part.startswith("e="):
            expiry = unquote(part[2:])
            try:
                from datetime import UTC, datetime

                when = datetime.fromisoformat(expiry)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return when > datetime.now(UTC)
            except ValueError:
                return True
    return True


def _validate_topic_event(event: Any, cloud: bool) -> str | None:
    if not isinstance(event, dict):
        return "each event must be a JSON object"
    required = ("id", "source", "type", "specversion") if cloud else (
        "id", "subject", "eventType", "eventTime", "data", "dataVersion"
    )
    missing = [k for k in required if k not in event or (event[k] in (None, "") and k != "subject")]
    if missing:
        schema = "CloudEvents" if cloud else "Event Grid"
        return f"{schema} event {event.get('id', '?')!r} is missing required properties: {', '.join(missing)}"
    return None


async def topic_events(request: Request) -> Response:
    emu: Emulator = request.app.state.emu
    key = emu.identity["topic_key"]
    given = request.headers.get("aeg-sas-key")
    token = request.headers.get("aeg-sas-token")
    authorized = (given is not None and hmac.compare_digest(given, key)) or (
        token is not None and _check_sas_token(token, key)
    )
    if not authorized:
        return arm.error(
            401,
            "Unauthorized",
            "The request authorization key is not authorized for this topic (aeg-sas-key or aeg-sas-token).",
        )
    content_type = request.headers.get("content-type", "")
    cloud = "cloudevents" in content_type
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        return arm.error(400, "BadRequest", f"The request body is not valid JSON: {exc}")
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list) or not body:
        return arm.error(400, "BadRequest", "The request body must be a non-empty JSON array of events.")
    if not cloud and all(isinstance(e, dict) and "specversion" in e for e in body):
        cloud = True  # CloudEvents sent with a plain JSON content type
    for event in body:
        problem = _validate_topic_event(event, cloud)
        if problem:
            return arm.error(400, "BadRequest", problem)
    schema = CE_SCHEMA if cloud else EG_SCHEMA
    topic = f"{emu.ws_id.split('/providers/')[0]}/providers/Microsoft.EventGrid/topics/tuneflow-local"
    for received in body:
        emu.events.topic_events.append({"schema": schema, "event": received, "received_at": arm.iso()})
        # Event Grid stamps the topic on Event Grid schema events published without one.
        emu.events.publish(received if cloud or "topic" in received else {**received, "topic": topic}, schema)
    return Response(status_code=200)


def routes() -> list[Route]:
    return [Route("/api/events", topic_events, methods=["POST"])]
