"""A webhook receiver for Event Grid delivery tests: records every request and answers per a policy."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Policy:
    validate: bool = True  # answer the validation handshake correctly
    fail_first: int = 0  # answer this many notifications with 500 first
    always_fail: bool = False
    fail_count: int = 0
    fail_status: int = 500  # what a failing answer is
    delay_s: float = 0.0  # how long a notification's answer takes (after it is recorded)


@dataclass
class Webhook:
    server: ThreadingHTTPServer
    thread: threading.Thread
    policy: Policy = field(default_factory=Policy)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/events"

    def notifications(self, ok_only: bool = True) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.headers.get("aeg-event-type") == "Notification"
                    and (not ok_only or r.headers.get("x-answered") == "200")]

    def events(self) -> list[dict[str, Any]]:
        """Events delivered successfully, in arrival order (Event Grid schema: one per POST)."""
        out: list[dict[str, Any]] = []
        for r in self.notifications():
            out.extend(r.body if isinstance(r.body, list) else [r.body])
        return out

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if predicate(events):
                return events
            time.sleep(0.05)
        raise AssertionError(f"condition not met in {timeout}s; received {json.dumps(self.events())[:3000]}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_webhook(policy: Policy | None = None) -> Webhook:
    hook: Webhook

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def _record(self, method: str, body: Any, answered: int) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["x-answered"] = str(answered)
            with hook.lock:
                hook.received.append(Received(method, headers, body, time.monotonic()))

        # Each request is recorded before it is answered: the server is threaded, and the emulator's
        # next request can arrive as soon as this answer is out.
        def do_OPTIONS(self) -> None:  # CloudEvents abuse-protection handshake
            ok = hook.policy.validate
            self._record("OPTIONS", None, 200 if ok else 403)
            self.send_response(200 if ok else 403)
            if ok:
                self.send_header("WebHook-Allowed-Origin", self.headers.get("WebHook-Request-Origin", "*"))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            kind = self.headers.get("aeg-event-type")
            status, payload = 200, b""
            if kind == "SubscriptionValidation":
                if hook.policy.validate:
                    payload = json.dumps({"validationResponse": body[0]["data"]["validationCode"]}).encode()
                else:
                    status = 400
            else:
                with hook.lock:
                    if hook.policy.always_fail or hook.policy.fail_count < hook.policy.fail_first:
                        hook.policy.fail_count += 1
                        status = hook.policy.fail_status
            self._record("POST", body, status)
            if kind != "SubscriptionValidation" and hook.policy.delay_s:
                time.sleep(hook.policy.delay_s)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    hook = Webhook(server, thread, policy or Policy())
    thread.start()
    return hook
