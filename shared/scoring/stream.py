"""A streamed scoring call: the deployment's answer passed on piece by piece, as it is generated.

The request asks for ``text/event-stream``. A deployment that streams answers with server-sent events
``data: {"0": "<text>"}`` … ``data: [DONE]`` (the local emulator does); one that does not (Azure ML's
MLflow chat deployments) answers JSON in one piece, which becomes one piece here. Everything that can
fail before the first piece — resolution, a rotated key, throttling, a refusal — fails as a plain
``ScoringError`` (a normal JSON answer); a failure after it arrives as an ``error`` piece.

It goes over ``httpx`` rather than the hand-written HTTP/1.1 client, which reads whole bodies.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from shared.errors import ScoringError, UnrecognisedResponse
from shared.scoring.client import MAX_BACKOFF_S, Scorer, retry_after
from shared.scoring.http1 import Reply
from shared.scoring.normalise import normalise

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)


@dataclass
class Streamed:
    """An answer being streamed: who serves it (known before the first piece), and its pieces."""

    model: str | None
    deployment: str | None
    pieces: AsyncIterator[str]


async def open_stream(scorer: Scorer, client: Callable[[], httpx.AsyncClient], endpoint: str, payload: bytes,
                      deployment: str | None, *, timeout_s: float, retries: int) -> Streamed:
    import httpx

    info = await scorer.endpoint(endpoint)
    refreshed, attempt = False, 0
    while True:
        headers = {"Authorization": f"Bearer {info.key}", "Content-Type": "application/json",
                   "Accept": "text/event-stream, application/json"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        request = client().build_request("POST", info.scoring_uri, content=payload, headers=headers,
                                         timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)))
        try:
            response = await client().send(request, stream=True)
        except httpx.TimeoutException:
            raise ScoringError(504, "upstream_timeout", f"endpoint {endpoint!r} did not start answering within "
                               f"{timeout_s:g} s (TUNEFLOW_SCORING_TIMEOUT_S)") from None
        except httpx.HTTPError as exc:
            raise ScoringError(502, "upstream_unreachable",
                               f"endpoint {endpoint!r} could not be reached ({type(exc).__name__})") from None
        status = response.status_code
        if 200 <= status < 300:
            served = response.headers.get("azureml-model-deployment") or deployment
            model = info.models.get(served) if served else None
            return Streamed(model, served, _pieces(endpoint, response))
        body = await response.aread()
        await response.aclose()
        if status in (401, 403) and not refreshed:
            refreshed = True
            info = await scorer.endpoint(endpoint, stale=info)
            continue
        if status in (429, 503) and attempt < retries:
            attempt += 1
            delay = retry_after(response.headers.get("retry-after"))
            await scorer.sleep(min(MAX_BACKOFF_S, 0.5 * 2**attempt) if delay is None else delay)
            continue
        reply = Reply(status, {k.lower(): v for k, v in response.headers.items()}, body, response.reason_phrase)
        raise scorer.failure(endpoint, info, reply, deployment)


async def _pieces(endpoint: str, response: httpx.Response) -> AsyncIterator[str]:
    import httpx

    try:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            body = await response.aread()
            try:
                text = normalise(body, response.headers.get("content-type", "")).text
            except UnrecognisedResponse as exc:
                raise ScoringError(502, "unrecognised_response", f"endpoint {endpoint!r}: {exc}") from None
            if text:
                yield text
            return
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # comments, event names, blank separators
            data = line[5:].strip()
            if data == "[DONE]":
                return
            yield _piece(endpoint, data)
    except httpx.HTTPError as exc:
        raise ScoringError(502, "upstream_broke_off",
                           f"endpoint {endpoint!r} broke off its answer ({type(exc).__name__})") from None
    finally:
        await response.aclose()


def _piece(endpoint: str, data: str) -> str:
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
        return normalise(data.encode()).text
    except UnrecognisedResponse as exc:
        raise ScoringError(502, "unrecognised_response", f"endpoint {endpoint!r}: {exc}") from None
