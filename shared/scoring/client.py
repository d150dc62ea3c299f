"""Score an online endpoint: the request, retries, key refresh and what the answer means.

- 401/403 from the scoring URI: the key was rotated; resolve the endpoint again (once) and retry.
- 429/503: retry after ``Retry-After`` (or a short back-off) while the budget allows.
- The whole call, retries included, stays within ``TUNEFLOW_SCORING_TIMEOUT_S`` (< 230 s, the
  Functions HTTP limit), so tuneflow answers 504 before the platform cuts the connection.
- Failures become ``ScoringError`` with the status tuneflow answers: 404 nothing deployed, 400 the
  model refused the body, 429/503 throttled, 502 the endpoint failed, 504 it timed out.

No key, token or scoring header is ever logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from shared.errors import (
    EndpointNotFound,
    ScoringError,
    TransientError,
    TransportError,
    TransportTimeout,
    TuneflowError,
    UnrecognisedResponse,
)
from shared.scoring.http1 import Reply, StreamedReply
from shared.scoring.normalise import normalise
from shared.scoring.resolve import EndpointCache, EndpointInfo
from shared.telemetry import annotate, span

log = logging.getLogger(__name__)
MODEL_REFRESH_INTERVAL_S = 10.0  # an answer from a deployment unknown to the cache refreshes it, at most this often
MAX_BACKOFF_S = 8.0


class Sender(Protocol):
    """Sends one scoring request (``Http1Client``; tests use one over ``httpx.MockTransport``), whole or
    streamed."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Reply: ...

    async def stream(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> StreamedReply: ...


@dataclass(frozen=True)
class ScoreResult:
    output: str
    model: str | None
    deployment: str | None
    usage: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "model": self.model, "deployment": self.deployment}


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Scorer:
    def __init__(self, cache: EndpointCache, sender: Callable[[], Sender], *, timeout_s: float, retries: int,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 observe: Callable[[str, str | None, int, float], None] | None = None) -> None:
        self.cache = cache
        # (endpoint, deployment that answered, status, ms) of every final answer: a rollout's live evidence
        self.observe = observe or (lambda endpoint, deployment, status, ms: None)
        self._sender = sender
        self._timeout = timeout_s
        self._retries = retries
        self.sleep = sleep
        self._clock = clock
        self._model_refreshed: dict[str, float] = {}

    async def endpoint(self, name: str, stale: EndpointInfo | None = None) -> EndpointInfo:
        try:
            return await self.cache.get(name, stale=stale)
        except EndpointNotFound as exc:
            raise ScoringError(404, "endpoint_not_found",
                               f"no endpoint is deployed: {exc.message}; nothing can be scored") from None
        except TransientError as exc:
            raise ScoringError(503, "control_plane_unavailable",
                               f"could not look up endpoint {name!r}: {exc.message}", retry_after=5) from None

    async def score(self, endpoint: str, payload: bytes, deployment: str | None = None) -> ScoreResult:
        with span("score", endpoint=endpoint, deployment=deployment):
            result = await self._score(endpoint, payload, deployment)
            annotate(deployment=result.deployment, model=result.model)
            return result

    async def _score(self, endpoint: str, payload: bytes, deployment: str | None) -> ScoreResult:
        deadline = self._clock() + self._timeout
        info = await self.endpoint(endpoint)
        refreshed = False
        attempt = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ScoringError(504, "upstream_timeout", f"endpoint {endpoint!r} did not answer within "
                                   f"{self._timeout:g} s (TUNEFLOW_SCORING_TIMEOUT_S)")
            headers = {"Authorization": f"Bearer {info.key}", "Content-Type": "application/json",
                       "Accept": "application/json"}
            if deployment:
                headers["azureml-model-deployment"] = deployment
            started = self._clock()
            try:
                response = await self._sender().post(info.scoring_uri, payload, headers, remaining)
            except TransportTimeout:
                self.observe(endpoint, deployment, 504, (self._clock() - started) * 1000)
                log.warning("scoring %s: timed out after %.1f s", endpoint, self._timeout)
                raise ScoringError(504, "upstream_timeout", f"endpoint {endpoint!r} did not answer within "
                                   f"{self._timeout:g} s (TUNEFLOW_SCORING_TIMEOUT_S)") from None
            except TransportError as exc:
                log.warning("scoring %s: transport error: %s", endpoint, exc)
                raise ScoringError(502, "upstream_unreachable",
                                   f"endpoint {endpoint!r} could not be reached ({exc})") from None
            status = response.status
            if status in (401, 403) and not refreshed:
                log.info("scoring %s: %d from the scoring URI; refreshing its key", endpoint, status)
                refreshed = True
                info = await self.endpoint(endpoint, stale=info)
                continue
            if status in (429, 503) and attempt < self._retries:
                delay = retry_after(response.headers.get("retry-after"))
                delay = min(MAX_BACKOFF_S, 0.5 * 2**attempt) if delay is None else delay
                if self._clock() + delay < deadline - 1.0:
                    attempt += 1
                    log.info("scoring %s: %d; retry %d in %.1f s", endpoint, status, attempt, delay)
                    await self.sleep(delay)
                    continue
            served = response.headers.get("azureml-model-deployment") or deployment
            self.observe(endpoint, served, status, (self._clock() - started) * 1000)
            return await self._result(endpoint, info, response, deployment)

    async def _result(self, endpoint: str, info: EndpointInfo, response: Reply,
                      pinned: str | None) -> ScoreResult:
        status = response.status
        if 200 <= status < 300:
            try:
                output = normalise(response.content, response.headers.get("content-type", ""))
            except UnrecognisedResponse as exc:
                raise ScoringError(502, "unrecognised_response", f"endpoint {endpoint!r}: {exc}") from None
            served = response.headers.get("azureml-model-deployment") or pinned
            model = await self._model(endpoint, info, served)
            return ScoreResult(output.text, model, served, output.usage)
        raise self.failure(endpoint, info, response, pinned)

    def failure(self, endpoint: str, info: EndpointInfo, response: Reply, pinned: str | None) -> ScoringError:
        """What tuneflow answers for a deployment's non-2xx answer (its message, with the key redacted)."""
        status = response.status
        detail = _redact(_upstream_message(response), info.key)
        log.warning("scoring %s: the endpoint answered %d: %s", endpoint, status, detail)
        wait = retry_after(response.headers.get("retry-after"))
        if status in (400, 422):
            return ScoringError(400, "rejected_by_model", f"the deployment refused the request: {detail}")
        if status == 404:
            code = "deployment_not_found" if pinned else "no_deployment"
            return ScoringError(404, code, f"endpoint {endpoint!r}: {detail}")
        if status == 413:
            return ScoringError(413, "body_too_large", f"the deployment refused the body as too large: {detail}")
        if status in (408, 504):
            return ScoringError(504, "upstream_timeout", f"endpoint {endpoint!r} timed out: {detail}")
        if status in (429, 503):
            code = "throttled" if status == 429 else "unavailable"
            return ScoringError(status, code, f"endpoint {endpoint!r} is busy ({status}): {detail}", retry_after=wait)
        if status in (401, 403):
            return ScoringError(502, "upstream_auth", f"endpoint {endpoint!r} refused tuneflow's key even after a "
                               "refresh")
        return ScoringError(502, "upstream_error", f"endpoint {endpoint!r} failed ({status}): {detail}")

    async def _model(self, endpoint: str, info: EndpointInfo, deployment: str | None) -> str | None:
        if deployment is None:
            return None
        if deployment not in info.models:  # created after the cache was filled?
            info = await self.refreshed(endpoint, info)
        return info.models.get(deployment)

    async def refreshed(self, endpoint: str, info: EndpointInfo) -> EndpointInfo:
        """``info`` looked up again — at most once per MODEL_REFRESH_INTERVAL_S per endpoint, so requests
        naming unknown deployments or models cannot turn into a control-plane call each."""
        now = self._clock()
        if now - self._model_refreshed.get(endpoint, -MODEL_REFRESH_INTERVAL_S) < MODEL_REFRESH_INTERVAL_S:
            return info
        self._model_refreshed[endpoint] = now
        try:
            return await self.cache.get(endpoint, stale=info)
        except TuneflowError:
            return info


def _upstream_message(response: Reply) -> str:
    text = response.content[:2000]
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text.decode("utf-8", errors="replace").strip()[:300] or response.reason or str(response.status)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        message = data.get("message") or error or data.get("detail")
        if message:
            return str(message)[:300]
    return str(data)[:300]


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
