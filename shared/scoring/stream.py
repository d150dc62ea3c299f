"""A streamed scoring call: the deployment's answer passed on piece by piece, as it is generated.

The request asks for ``text/event-stream``. A deployment that streams answers with server-sent events
``data: {"0": "<text>"}`` … ``data: [DONE]`` (the local emulator does); one that does not (Azure ML's
MLflow chat deployments) answers JSON in one piece, which becomes one piece here. Everything that can
fail before the first piece — resolution, a rotated key, throttling, a refusal — fails as a plain
``ScoringError`` (a normal JSON answer); a failure after it arrives as an ``error`` piece.

It goes over the scoring path's own HTTP/1.1 client (``Http1Client.stream``), as plain scoring does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson

from shared.errors import ScoringError, TransportError, TransportTimeout, UnrecognisedResponse
from shared.scoring.client import MAX_BACKOFF_S, Scorer, retry_after
from shared.scoring.http1 import Reply, StreamedReply
from shared.scoring.normalise import normalise

log = logging.getLogger(__name__)


class StreamSender(Protocol):
    async def stream(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> StreamedReply: ...


@dataclass
class Streamed:
    """An answer being streamed: who serves it (known before the first piece), and its pieces."""

    model: str | None
    deployment: str | None
    pieces: AsyncIterator[str]


async def open_stream(scorer: Scorer, sender: Callable[[], StreamSender], endpoint: str, payload: bytes,
                      deployment: str | None, *, timeout_s: float, retries: int) -> Streamed:
    info = await scorer.endpoint(endpoint)
    refreshed, attempt = False, 0
    while True:
        headers = {"Authorization": f"Bearer {info.key}", "Content-Type": "application/json",
                   "Accept": "text/event-stream, application/json"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        started = time.monotonic()
        try:
            reply = await sender().stream(info.scoring_uri, payload, headers, timeout_s)
        except TransportTimeout:
            raise ScoringError(504, "upstream_timeout", f"endpoint {endpoint!r} did not start answering within "
                               f"{timeout_s:g} s (TUNEFLOW_SCORING_TIMEOUT_S)") from None
        except TransportError as exc:
            raise ScoringError(502, "upstream_unreachable", f"endpoint {endpoint!r} could not be reached ({exc})") \
                from None
        status = reply.status
        if status not in (401, 403):  # time to the answer's start: what a streaming caller waits for
            scorer.observe(endpoint, reply.headers.get("azureml-model-deployment") or deployment, status,
                           (time.monotonic() - started) * 1000)
        if 200 <= status < 300:
            served = reply.headers.get("azureml-model-deployment") or deployment
            model = info.models.get(served) if served else None
            return Streamed(model, served, _pieces(endpoint, reply))
        body = await _read_all(endpoint, reply)
        if status in (401, 403) and not refreshed:
            refreshed = True
            info = await scorer.endpoint(endpoint, stale=info)
            continue
        if status in (429, 503) and attempt < retries:
            attempt += 1
            delay = retry_after(reply.headers.get("retry-after"))
            await scorer.sleep(min(MAX_BACKOFF_S, 0.5 * 2**attempt) if delay is None else delay)
            continue
        raise scorer.failure(endpoint, info, Reply(status, reply.headers, body, reply.reason), deployment)


async def _read_all(endpoint: str, reply: StreamedReply) -> bytes:
    try:
        return b"".join([piece async for piece in reply.body])
    except TransportError as exc:
        raise ScoringError(502, "upstream_broke_off", f"endpoint {endpoint!r} broke off its answer ({exc})") from None


async def _pieces(endpoint: str, reply: StreamedReply) -> AsyncIterator[str]:
    content_type = reply.headers.get("content-type", "")
    if "text/event-stream" not in content_type:
        try:
            text = normalise(await _read_all(endpoint, reply), content_type).text
        except UnrecognisedResponse as exc:
            raise ScoringError(502, "unrecognised_response", f"endpoint {endpoint!r}: {exc}") from None
        if text:
            yield text
        return
    pending = b""
    try:
        async for data in reply.body:
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.startswith(b"data:"):
                    continue  # comments, event names, blank separators
                event = line[5:].strip()
                if event == b"[DONE]":
                    # read the body to its end (the chunked terminator follows at once): the connection then
                    # goes back to the pool, where closing it here would cost the next stream a TLS handshake
                    async for _ in reply.body:
                        pass
                    return
                yield _piece(endpoint, event)
    except TransportError as exc:
        raise ScoringError(502, "upstream_broke_off", f"endpoint {endpoint!r} broke off its answer ({exc})") from None
    finally:
        await reply.body.aclose()  # type: ignore[attr-defined]  # a no-op when read to the end; else closes it


def _piece(endpoint: str, data: bytes) -> str:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ScoringError(502, "unrecognised_response", f"endpoint {endpoint!r} streamed an event that is not "
                           "JSON") from None
    if isinstance(event, dict) and isinstance(event.get("error"), dict):
        message = str(event["error"].get("message") or event["error"].get("code") or "failed")[:300]
        raise ScoringError(502, "upstream_error", f"endpoint {endpoint!r} failed while answering: {message}")
    if isinstance(event, dict) and isinstance(event.get("0"), str):
        return str(event["0"])
    try:
        return normalise(data).text
    except UnrecognisedResponse as exc:
        raise ScoringError(502, "unrecognised_response", f"endpoint {endpoint!r}: {exc}") from None
