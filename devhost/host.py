"""The ASGI application: the Functions host's external HTTP surface.

  /<routePrefix>/<route>                  HTTP triggers (routePrefix from host.json, default "api")
  /runtime/webhooks/EventGrid             Event Grid trigger webhook (system key eventgrid_extension)
  /runtime/webhooks/blobs                 Event Grid-sourced blob trigger webhook (system key blobs_extension)
  /admin/host/status, /admin/host/ping    host state
  /admin/functions[/<name>]               function metadata (GET) and manual invocation (POST)

A raw ASGI callable rather than a framework router: the HTTP-function path does only what the host
does (route match, key check, body read with the 100 MB limit, convert, call), which keeps
devhost's own cost per request in the tens of microseconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func
from azure.functions.http import HttpRequest

from devhost import __version__
from devhost.bindings import Storage, event_grid_value, queue_value, timer_value
from devhost.config import HostConfig, is_disabled
from devhost.discovery import (
    BLOB_TRIGGER,
    EVENT_GRID_TRIGGER,
    HTTP_TRIGGER,
    QUEUE_TRIGGER,
    SUPPORTED_TRIGGERS,
    TIMER_TRIGGER,
    FunctionSpec,
)
from devhost.invoker import Invoker, Outcome
from devhost.keys import Keys
from devhost.routes import RouteEntry, RouteTable, compile_route
from devhost.timers import TimerRunner
from devhost.webhooks import BlobEventProcessor, WebhookReply, deliver_event_grid, handshake

log = logging.getLogger("devhost")

MAX_REQUEST_BODY = 100 * 1024 * 1024  # the host's (Kestrel's) 100 MB request body limit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_JSON = [(b"content-type", b"application/json; charset=utf-8")]


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    head: bool = False,
) -> None:
    # Always a Content-Length, as the host sends (uvicorn would otherwise fall back to chunked).
    all_headers = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers, lower-cased, repeated ones joined with ', ' (as the host hands them over)."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _query(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        out[k] = f"{out[k]},{v}" if k in out else v  # StringValues.ToString() joins with ','
    return out


def _key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    return headers.get("x-functions-key") or query.get("code")


def _url(scope: Scope, headers: Mapping[str, str]) -> str:
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    raw = scope.get("raw_path") or scope["path"].encode()
    qs = scope.get("query_string", b"")
    return f"{scope.get('scheme', 'http')}://{host}{raw.decode('latin-1')}" + (f"?{qs.decode('latin-1')}" if qs else "")


def _replay(body: bytes, then: Receive) -> Receive:
    """An ASGI ``receive`` that hands over a body already read (once), then the client's own messages
    (its disconnect, when it goes away)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return receive


def _streams_request(scope: Scope, body: bytes, route_values: Mapping[str, str], receive: Receive) -> Any:
    from starlette.requests import Request

    return Request({**scope, "path_params": dict(route_values)}, _replay(body, receive))


def _is_asgi_response(value: object) -> bool:
    try:
        from starlette.responses import Response
    except ImportError:
        return False
    return isinstance(value, Response)


def response_parts(value: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A function's HTTP result as the worker + host turn it into a response."""
    if value is None:  # no response set: the host answers 200 with no body
        return 200, [], b""
    if isinstance(value, str):
        return 200, list(_TEXT), value.encode("utf-8")
    if isinstance(value, func.HttpResponse):
        headers: list[tuple[bytes, bytes]] = []
        has_type = False
        for name, v in list(value.headers.items()):
            low = name.lower()
            if low == "content-type":
                has_type = True
            if low in ("content-length", "transfer-encoding"):
                continue
            headers.append((low.encode("latin-1"), str(v).encode("latin-1")))
        if not has_type:
            ct = f"{value.mimetype}; charset={value.charset}" if value.mimetype.startswith("text/") else value.mimetype
            headers.append((b"content-type", ct.encode("latin-1")))
        return int(value.status_code), headers, value.get_body()
    raise TypeError(f"an HTTP function must return func.HttpResponse or str, not {type(value).__name__}")


class DevHost:
    def __init__(
        self,
        specs: list[FunctionSpec],
        *,
        keys: Keys,
        config: HostConfig,
        environ: Mapping[str, str],
        invoker: Invoker,
        storage: Storage,
        timers: Mapping[str, TimerRunner],
        insecure_webhooks: bool = False,
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.keys = keys
        self.config = config
        self.environ = environ
        self.invoker = invoker
        self.storage = storage
        self.timers = timers
        self.insecure_webhooks = insecure_webhooks
        self.blob_events = BlobEventProcessor(storage, invoker)
        self.started = time.monotonic()
        self.prefix = f"/{config.route_prefix}/" if config.route_prefix else "/"
        self.routes: RouteTable[FunctionSpec] = RouteTable(
            RouteEntry(compile_route(s.http.route), s.http.methods, s) for s in specs if s.http is not None
        )
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ ASGI entry point

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        lower = raw.lower()
        try:
            if lower.startswith("/admin/"):
                await self._admin(scope, receive, send, raw)
            elif lower.startswith("/runtime/webhooks/"):
                await self._webhook(scope, receive, send, lower[len("/runtime/webhooks/") :].rstrip("/"))
            elif lower.startswith(self.prefix) or (lower + "/") == self.prefix:
                await self._http_function(scope, receive, send, raw[len(self.prefix) :])
            else:
                await _respond(send, 404)
        except _TooLarge:
            await _respond(send, 413, b"Request body too large", list(_TEXT))
        except _Disconnected:
            return

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ HTTP triggers

    async def _http_function(self, scope: Scope, receive: Receive, send: Send, sub_path: str) -> None:
        method = scope["method"]
        entry, route_values, path_matched = self.routes.resolve(sub_path.partition("?")[0], method)
        if entry is None:
            if path_matched:
                log.info(
                    "404 for %s %s: the route exists but does not accept %s (the host answers 404 too)",
                    method,
                    scope["path"],
                    method,
                )
            await _respond(send, 404)
            return
        spec = entry.target
        http = spec.http
        assert http is not None
        headers = _headers(scope)
        query = _query(scope)
        if is_disabled(spec.name, self.environ) and not self.keys.is_master(_key(headers, query)):
            await _respond(send, 404)  # like the host: a disabled function is 404 unless called with admin rights
            return
        if http.auth_level != "anonymous":
            key = _key(headers, query)
            ok = self.keys.is_master(key) if http.auth_level == "admin" else self.keys.allows_function(spec.name, key)
            if not ok:
                await _respond(send, 401)
                return
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_REQUEST_BODY:
            raise _TooLarge
        body = await _read_body(receive, MAX_REQUEST_BODY)
        request: Any
        if http.streams:  # HTTP streams: the function gets the raw exchange (route values in path_params)
            request = _streams_request(scope, body, route_values, receive)
        else:
            request = HttpRequest(
                method,
                _url(scope, headers),
                headers=headers,
                params=query,
                route_params=route_values,
                body_type="bytes",
                body=body,
            )
        outcome = await self.invoker.invoke(
            spec,
            request,
            reason="HTTP request",
            binding_data={**query, **route_values},
            trace_parent=headers.get("traceparent", ""),
        )
        if not outcome.succeeded:
            await _respond(send, 500)
            return
        value = outcome.returned if http.output_name == "$return" else (outcome.outputs or {}).get(http.output_name)
        if http.streams and _is_asgi_response(value):
            assert value is not None
            await value(scope, receive, send)  # a StreamingResponse goes out chunk by chunk, as it is made
            return
        try:
            status, out_headers, out_body = response_parts(value)
        except (TypeError, ValueError) as e:
            log.error("Functions.%s: %s", spec.name, e)
            await _respond(send, 500)
            return
        await _respond(send, status, out_body, out_headers, head=method == "HEAD")

    # ------------------------------------------------------------------ webhooks

    async def _webhook(self, scope: Scope, receive: Receive, send: Send, which: str) -> None:
        if which not in ("eventgrid", "blobs"):
            await _respond(send, 404)
            return
        method = scope["method"]
        if method not in ("POST", "OPTIONS"):
            await _respond(send, 405, headers=[(b"allow", b"POST, OPTIONS")])
            return
        headers = _headers(scope)
        query = _query(scope)
        system_key = "eventgrid_extension" if which == "eventgrid" else "blobs_extension"
        if not self.insecure_webhooks and not self.keys.allows_system(system_key, _key(headers, query)):
            await _respond(send, 401)
            return
        body = await _read_body(receive, MAX_REQUEST_BODY)
        name = query.get("functionName", "")
        reply = await (
            self._event_grid(method, headers, body, name)
            if which == "eventgrid"
            else self._blobs(method, headers, body, name)
        )
        await _respond(
            send,
            reply.status,
            reply.body,
            [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers],
        )

    async def _event_grid(self, method: str, headers: Mapping[str, str], body: bytes, name: str) -> WebhookReply:
        spec = self.specs.get(name)
        if spec is None or spec.trigger_type != EVENT_GRID_TRIGGER or is_disabled(name, self.environ):
            known = [s.name for s in self.specs.values() if s.trigger_type == EVENT_GRID_TRIGGER]
            return WebhookReply.text(404, f"cannot find function: '{name}', available function names: {known}")
        reply = handshake(method, headers, body)
        if reply is not None:
            if reply.status == 200 and method == "POST":
                log.info("perform handshake with eventGrid for function: %s", name)
            return reply
        return await deliver_event_grid(spec, self.invoker, body)

    async def _blobs(self, method: str, headers: Mapping[str, str], body: bytes, name: str) -> WebhookReply:
        reply = handshake(method, headers, body)
        if reply is not None:
            return reply
        short = name[len("Host.Functions.") :] if name.startswith("Host.Functions.") else None
        spec = self.specs.get(short) if short else None
        if spec is None or spec.trigger_type != BLOB_TRIGGER or is_disabled(spec.name, self.environ):
            # The host accepts the events and drops them later ("function not found"); say so loudly.
            log.warning(
                "blobs webhook: no Event Grid blob trigger named %r "
                "(use functionName=Host.Functions.<name>); events dropped",
                name,
            )
            return WebhookReply(202)
        return self.blob_events.accept(spec, body)

    # ------------------------------------------------------------------ admin API

    def _function_metadata(self, spec: FunctionSpec, base: str) -> dict[str, Any]:
        doc = spec.metadata()
        doc["isDisabled"] = is_disabled(spec.name, self.environ)
        doc["invoke_url_template"] = function_url(spec, base, self.config)
        return doc

    async def _admin(self, scope: Scope, receive: Receive, send: Send, raw: str) -> None:
        path = raw.partition("?")[0].rstrip("/")
        lower = path.lower()
        method = scope["method"]
        headers = _headers(scope)
        if lower == "/admin/host/ping" and method in ("GET", "POST"):
            await _respond(send, 200)
            return
        if not self.keys.is_master(_key(headers, _query(scope))):
            await _respond(send, 401)
            return
        base = _url(scope, headers).split("/admin/", 1)[0]
        if lower == "/admin/host/status" and method == "GET":
            doc = {
                "id": self.environ.get("WEBSITE_SITE_NAME", "devhost"),
                "state": "Running",
                "version": f"devhost {__version__}",
                "processUptime": int((time.monotonic() - self.started) * 1000),
                "instanceId": str(os.getpid()),
                "functions": sorted(self.specs),
            }
            await _respond(send, 200, json.dumps(doc).encode(), list(_JSON))
            return
        if lower == "/admin/functions" and method == "GET":
            docs = [self._function_metadata(s, base) for s in self.specs.values()]
            await _respond(send, 200, json.dumps(docs).encode(), list(_JSON))
            return
        if lower.startswith("/admin/functions/"):
            name = path[len("/admin/functions/") :]
            spec = self.specs.get(name)
            if spec is None:
                await _respond(send, 404)
                return
            if method == "GET":
                await _respond(send, 200, json.dumps(self._function_metadata(spec, base)).encode(), list(_JSON))
                return
            if method == "POST":
                body = await _read_body(receive, MAX_REQUEST_BODY)
                await self._admin_invoke(send, spec, body, wait=_query(scope).get("wait", "").lower() == "true")
                return
        await _respond(send, 404)

    async def _admin_invoke(self, send: Send, spec: FunctionSpec, body: bytes, *, wait: bool) -> None:
        if spec.trigger_type == HTTP_TRIGGER or spec.trigger_type not in SUPPORTED_TRIGGERS:
            await _respond(
                send,
                400,
                f"{spec.name} is not invocable here: call its URL instead".encode()
                if spec.trigger_type == HTTP_TRIGGER
                else b"trigger type not supported by devhost",
                list(_TEXT),
            )
            return
        try:
            doc = json.loads(body or b"{}")
            text = doc.get("input", "") if isinstance(doc, dict) else None
            if not isinstance(text, str):
                raise ValueError("'input' must be a string")
        except ValueError as e:
            await _respond(send, 400, f'body must be {{"input": "<string>"}}: {e}'.encode(), list(_TEXT))
            return
        task = asyncio.create_task(self.invoke_manually(spec, text))
        if not wait:
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            await _respond(send, 202)
            return
        outcome = await task
        doc = {
            "id": outcome.invocation_id,
            "status": "Succeeded" if outcome.succeeded else "Failed",
            "durationMs": round(outcome.duration_ms, 3),
            "error": outcome.error_text or None,
        }
        await _respond(send, 200 if outcome.succeeded else 500, json.dumps(doc).encode(), list(_JSON))

    async def invoke_manually(self, spec: FunctionSpec, text: str) -> Outcome:
        """POST /admin/functions/<name>: the input string is the trigger payload, as in the host."""
        reason = "This function was programmatically called via the host APIs."
        try:
            if spec.trigger_type == TIMER_TRIGGER:
                runner = self.timers.get(spec.name)
                if runner is not None:
                    return await runner.fire(reason)
                return await self.invoker.invoke(spec, timer_value(None), reason=reason)
            if spec.trigger_type == EVENT_GRID_TRIGGER:
                event = json.loads(text)
                return await self.invoker.invoke(spec, event_grid_value(spec, event), reason=reason)
            if spec.trigger_type == QUEUE_TRIGGER:
                body = text.encode("utf-8")
                value = queue_value(spec, body, message_id=f"manual-{time.time_ns()}", dequeue_count=1)
                return await self.invoker.invoke(spec, value, reason=reason)
            if spec.trigger_type == BLOB_TRIGGER:
                container, _, blob = text.strip("/").partition("/")
                conn = self.storage.connection(spec.trigger, f"function {spec.name!r}")
                ok = await self.blob_events.run_blob(
                    spec,
                    conn=conn,
                    container=container,
                    blob=blob,
                    binding_data={"BlobTrigger": f"{container}/{blob}"},
                    reason=reason,
                )
                return Outcome(ok, "-", 0.0)
        except Exception as e:
            log.error("Functions.%s: manual invocation failed before the function ran: %s", spec.name, e)
            return Outcome(False, "-", 0.0, error=e)
        raise AssertionError(spec.trigger_type)

    async def stop(self) -> None:
        await self.blob_events.stop()
        for task in list(self._background):
            task.cancel()


def function_url(spec: FunctionSpec, base: str, config: HostConfig) -> str:
    if spec.http is not None:
        prefix = f"/{config.route_prefix}" if config.route_prefix else ""
        return f"{base}{prefix}/{spec.http.route.strip('/')}"
    if spec.trigger_type == EVENT_GRID_TRIGGER:
        return f"{base}/runtime/webhooks/EventGrid?functionName={spec.name}"
    if spec.trigger_type == BLOB_TRIGGER and str(spec.trigger.get("source") or "").lower() == "eventgrid":
        return f"{base}/runtime/webhooks/blobs?functionName=Host.Functions.{spec.name}"
    return f"{base}/admin/functions/{spec.name}"
