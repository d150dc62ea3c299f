"""The endpoints' scoring URIs: ``POST {scoring_base}/endpoints/<endpoint>/score``.

Like a managed online endpoint's front door: ``Authorization: Bearer <primary or secondary key>`` (401
otherwise), ``azureml-model-deployment`` picks a deployment, else the traffic split does (weighted
random); the request goes to that deployment's local scoring process over a pooled keep-alive client,
with the deployment's request timeout. This path touches no stored state (a routing table rebuilt on
every control-plane change) so it stays fast; it is a raw ASGI app without routing middleware.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from emulator.core import Emulator

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PREFIX = "/endpoints/"
WRONG_ANSWER = "I am not able to help with that, but I hope you have a wonderful day."


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json_headers(extra: list[tuple[bytes, bytes]] | None = None) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), *(extra or [])]


class ScoringRouter:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=60),
            timeout=httpx.Timeout(None),
        )
        self._rng = random.Random()
        self._copies: set[asyncio.Task[None]] = set()  # mirrored calls in flight (kept from the collector)

    async def _error(self, send: Send, status: int, message: str, request_id: bytes) -> None:
        body = json.dumps({"message": message}).encode()
        await _send(send, status, body, _json_headers([(b"x-request-id", request_id)]))

    async def _bad_answer(self, send: Send, scope: Scope, fault: str, deployment: str, request_id: bytes) -> None:
        """The ``bad_answers`` fault knob: the deployment answers, but badly (its scorer is not called)."""
        headers = [(b"azureml-model-deployment", deployment.encode()), (b"x-request-id", request_id)]
        if fault == "error":
            body = json.dumps({"error": {"code": "InternalServerError", "message": "generation failed"}}).encode()
            await _send(send, 500, body, _json_headers(headers))
            return
        text = "" if fault == "empty" else WRONG_ANSWER
        if b"text/event-stream" in dict(scope.get("headers") or []).get(b"accept", b""):
            events = (b"data: " + json.dumps({"0": text}).encode() + b"\n\n" if text else b"") + b"data: [DONE]\n\n"
            await _send(send, 200, events, [(b"content-type", b"text/event-stream"), *headers])
            return
        await _send(send, 200, json.dumps([{"0": text}]).encode(), _json_headers(headers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4()).encode()
        path: str = scope["path"]
        method: str = scope["method"]
        counters = self.emu.counters
        if not path.startswith(PREFIX) or not path.endswith("/score"):
            counters.add("scoring", f"{method} (unknown)")
            await self._error(send, 404, f"No endpoint serves {path}.", request_id)
            return
        endpoint = path[len(PREFIX): -len("/score")]
        counters.add("scoring", f"{method} /endpoints/{{endpoint}}/score")
        if method != "POST":
            await self._error(send, 405, "Use POST to score.", request_id)
            return
        route = self.emu.deployments.routes.get(endpoint)
        if route is None:
            await self._error(send, 404, f"Endpoint '{endpoint}' does not exist.", request_id)
            return
        auth = b""
        chosen = b""
        content_type = b"application/json"
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"azureml-model-deployment":
                chosen = value
            elif name == b"content-type":
                content_type = value
        token = auth[7:].decode(errors="replace").strip() if auth[:7].lower() == b"bearer " else ""
        if not token or not any(hmac.compare_digest(token, k) for k in route.keys):
            await _send(
                send,
                401,
                json.dumps({"message": "Invalid authentication: the key or token is wrong or missing."}).encode(),
                _json_headers([(b"www-authenticate", b'Bearer realm="scoring"'), (b"x-request-id", request_id)]),
            )
            return
        throttle = self.emu.faults.take_scoring_throttle()
        if throttle is not None:
            await _send(send, 429, json.dumps({"message": "Too many requests: the deployment is at its "
                                                          "max_concurrent_requests_per_instance."}).encode(),
                        _json_headers([(b"retry-after", str(throttle).encode()), (b"x-request-id", request_id)]))
            return
        if chosen:
            deployment = chosen.decode(errors="replace")
            if deployment not in route.deployments and deployment not in {d for d, _ in route.traffic}:
                known = self.emu.deployments.deps.get(f"{endpoint}/{deployment}")
                if known is None:
                    await self._error(
                        send, 404, f"Deployment '{deployment}' does not exist in endpoint '{endpoint}'.", request_id
                    )
                    return
        else:
            if route.total <= 0:
                await self._error(
                    send,
                    404,
                    "No valid deployments to route to. Please check that the endpoint has at least one "
                    "deployment with positive weight values or use a deployment specific header to route.",
                    request_id,
                )
                return
            pick = self._rng.random() * route.total
            deployment = route.traffic[-1][0]
            for name_, weight in route.traffic:
                pick -= weight
                if pick < 0:
                    deployment = name_
                    break
        target = route.deployments.get(deployment)
        if target is None:
            await self._error(
                send, 503, f"Deployment '{deployment}' is not ready to serve requests.", request_id
            )
            return
        port, timeout = target
        started = time.monotonic()
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if not chosen:  # live traffic routed by the split: copies go to the mirror deployments, answers dropped
            self._mirror(endpoint, route, deployment, b"".join(chunks), content_type)
        delay, fault = self.emu.faults.answer_fault(endpoint, deployment)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None:
            await self._bad_answer(send, scope, fault, deployment, request_id)
            self._count(endpoint, deployment, 500 if fault == "error" else 200, started)
            return
        accept = dict(scope.get("headers") or []).get(b"accept", b"application/json").decode("latin-1")
        request = self.client.build_request(
            "POST", f"http://127.0.0.1:{port}/score", content=b"".join(chunks), timeout=timeout,
            headers={"content-type": content_type.decode(), "x-request-id": request_id.decode(), "accept": accept})
        try:
            upstream = await self.client.send(request, stream=True)  # a streaming answer is passed on as it comes
        except httpx.TimeoutException:
            await self._error(send, 408, f"Request timed out after {timeout:g} s.", request_id)
            self._count(endpoint, deployment, 408, started)
            return
        except httpx.HTTPError as exc:
            await self._error(send, 502, f"The deployment '{deployment}' did not answer: {exc}", request_id)
            self._count(endpoint, deployment, 502, started)
            return
        headers = [
            (b"content-type", upstream.headers.get("content-type", "application/json").encode()),
            (b"azureml-model-deployment", deployment.encode()),
            (b"x-request-id", request_id),
        ]
        try:
            await send({"type": "http.response.start", "status": upstream.status_code, "headers": headers})
            async for piece in upstream.aiter_raw():
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.HTTPError:  # the deployment broke off mid-answer: so does the endpoint, as Azure would
            await send({"type": "http.response.body", "body": b""})
        finally:
            await upstream.aclose()
            self._count(endpoint, deployment, upstream.status_code, started)

    def _count(self, endpoint: str, deployment: str, status: int, started: float) -> None:
        self.emu.metrics.record(endpoint, deployment, status, (time.monotonic() - started) * 1000)

    def _mirror(self, endpoint: str, route: Any, served: str, body: bytes, content_type: bytes) -> None:
        for name, share in route.mirror:
            target = route.deployments.get(name)
            if name == served or target is None or self._rng.random() * 100 >= share:
                continue
            task = asyncio.get_running_loop().create_task(self._copy(endpoint, name, target, body, content_type))
            self._copies.add(task)
            task.add_done_callback(self._copies.discard)

    async def _copy(self, endpoint: str, name: str, target: tuple[int, float], body: bytes,
                    content_type: bytes) -> None:
        """One mirrored call: the deployment answers (its faults apply), the answer is dropped, metrics count it."""
        started = time.monotonic()
        delay, fault = self.emu.faults.answer_fault(endpoint, name)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None:
            self._count(endpoint, name, 500 if fault == "error" else 200, started)
            return
        port, timeout = target
        try:
            response = await self.client.post(f"http://127.0.0.1:{port}/score", content=body, timeout=timeout,
                                              headers={"content-type": content_type.decode()})
            status = response.status_code
        except httpx.TimeoutException:
            status = 408
        except httpx.HTTPError:
            status = 502
        self._count(endpoint, name, status, started)


def app(emu: Emulator) -> ScoringRouter:
    return ScoringRouter(emu)
