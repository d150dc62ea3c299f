"""One delivery of a webhook (a score job's outcome, a run's transition): signed, to the checked address, bounded.

A receiver cannot make an attempt hang or bloat the host: one total deadline covers resolving,
connecting, sending and reading (``DELIVERY_TIMEOUT_S``: a receiver trickling a byte at a time cannot
stretch it, as a per-read timeout would let it), and at most ``MAX_ANSWER_BYTES`` of its answer are
read (enough to log) before the connection is closed. The retry schedule lives in ``worker.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from shared.errors import CallbackRefused
from shared.webhooks import signing, ssrf
from shared.webhooks.jobs import SUCCEEDED, ScoreJob

if TYPE_CHECKING:
    import httpx

    from shared.settings import Settings

log = logging.getLogger(__name__)
BACKOFF_CAP_S = 3600.0
DELIVERY_TIMEOUT_S = 15.0  # the whole attempt: every address tried, connect, send and read
MAX_ANSWER_BYTES = 4096  # of the receiver's answer; the rest is never read
USER_AGENT = "tuneflow-webhooks/1"


def backoff(settings: Settings, attempts_made: int) -> float:
    return float(min(BACKOFF_CAP_S, settings.webhook_backoff_s * 2 ** max(0, attempts_made - 1)))


def event_body(job: ScoreJob) -> bytes:
    data: dict[str, Any] = {"id": job.id, "status": job.status}
    if job.status == SUCCEEDED:
        data.update(job.result or {})
    else:
        data["error"] = job.error
    kind = "score.succeeded" if job.status == SUCCEEDED else "score.failed"
    return orjson.dumps({"type": kind, "timestamp": job.updated_at, "data": data})


def new_webhook_client() -> httpx.AsyncClient:
    import httpx

    # No keep-alive: requests go to a pinned IP with the name only in SNI and Host, and a pooled
    # connection must never be reused for a different name. No proxies from the environment either.
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0, max_connections=64),
                             timeout=httpx.Timeout(DELIVERY_TIMEOUT_S, connect=5.0),
                             follow_redirects=False, trust_env=False)


class Deliverer:
    def __init__(self, settings: Settings, client: Callable[[], httpx.AsyncClient],
                 resolver: ssrf.Resolver = ssrf.system_resolver) -> None:
        self._settings = settings
        self._client = client
        self._resolver = resolver

    async def deliver(self, job: ScoreJob,
                      timeout_s: float = DELIVERY_TIMEOUT_S) -> tuple[bool, int | None, str | None]:
        """One attempt: (delivered, the receiver's status, what went wrong), within ``timeout_s`` in all."""
        return await self.post(job.callback_url, job.id, event_body(job), timeout_s)

    async def post(self, url: str, message_id: str, body: bytes,
                   timeout_s: float = DELIVERY_TIMEOUT_S) -> tuple[bool, int | None, str | None]:
        """One signed attempt of any webhook (``message_id`` is its ``webhook-id``: receivers dedupe on it)."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._attempt(url, message_id, body)
        except TimeoutError:
            return False, None, f"the receiver did not answer within {timeout_s:g} s"

    async def _attempt(self, url: str, message_id: str, body: bytes) -> tuple[bool, int | None, str | None]:
        import httpx

        s = self._settings
        try:
            # resolved and checked again now: the name may point somewhere else than when it was given
            target, addresses = await asyncio.to_thread(
                ssrf.check, url, allow_http=s.webhook_allow_http,
                allow_private=s.webhook_allow_private, resolver=self._resolver)
        except CallbackRefused as exc:
            return False, None, exc.message
        headers = {**signing.headers(str(s.webhook_secret), message_id, body), "Content-Type": "application/json",
                   "User-Agent": USER_AGENT, "Host": target.host_header}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" and not target.literal else {}
        problem = "no address to call"
        for address in addresses[:3]:
            request = self._client().build_request("POST", target.pinned_url(address), content=body,
                                                   headers=headers, extensions=extensions)
            try:
                response = await self._client().send(request, stream=True)
                try:
                    await _read_at_most(response, MAX_ANSWER_BYTES)
                finally:
                    await response.aclose()  # the rest of a large answer is never read
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__} calling the receiver"
                continue
            if 200 <= response.status_code < 300:
                return True, response.status_code, None
            return False, response.status_code, f"the receiver answered {response.status_code}"
        return False, None, problem


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """Up to ``limit`` bytes of the answer, for the log; stops reading there."""
    if response.is_stream_consumed:  # already in memory (an in-process transport): nothing left to bound
        return response.content[:limit]
    kept = bytearray()
    async for piece in response.aiter_raw():
        kept += piece[: limit - len(kept)]
        if len(kept) >= limit:
            break
    return bytes(kept)


