"""A fake endpoint resolver, a fake scoring URI (an httpx transport handler) and a ``Sender`` over httpx,
for scoring unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

import httpx

from shared.errors import EndpointNotFound, TransportError, TransportTimeout
from shared.scoring.http1 import Reply, StreamedReply
from shared.scoring.resolve import EndpointInfo

URI = "https://tuneflow-chat.eastus2.inference.ml.azure.com/score"


class FakeResolver:
    """Serves the endpoint's *current* key, like listKeys; counts control-plane resolutions."""

    def __init__(self, key: str = "key-one", models: dict[str, str | None] | None = None) -> None:
        self.key = key
        self.models = models if models is not None else {"blue": "chat-ft:1"}
        self.calls = 0
        self.missing = False
        self.delay = 0.0

    async def resolve(self, name: str) -> EndpointInfo:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.missing:
            raise EndpointNotFound(f"endpoint {name!r} does not exist")
        return EndpointInfo(name, URI, self.key, dict(self.models), {"blue": 100})


class Upstream:
    """A scoring URI: checks the bearer key, answers what the test scripted (default: records orient)."""

    def __init__(self, resolver: FakeResolver) -> None:
        self.resolver = resolver
        self.requests: list[httpx.Request] = []
        self.script: list[Callable[[httpx.Request], httpx.Response]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {self.resolver.key}":
            return httpx.Response(401, json={"message": "Invalid authentication"})
        if self.script:
            return self.script.pop(0)(request)
        deployment = request.headers.get("azureml-model-deployment", "blue")
        return httpx.Response(200, json=[{"0": "hello there"}], headers={"azureml-model-deployment": deployment})


class HttpxSender:
    """The scoring path's ``Sender`` over an httpx client (``httpx.MockTransport`` in tests)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Reply:
        try:
            response = await self._client.post(url, content=body, headers=dict(headers),
                                               timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)))
        except httpx.TimeoutException:
            raise TransportTimeout(f"no complete answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__} during the exchange") from None
        return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content,
                     response.reason_phrase)

    async def stream(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> StreamedReply:
        request = self._client.build_request("POST", url, content=body, headers=dict(headers), timeout=timeout)
        response = await self._client.send(request, stream=True)

        async def pieces() -> AsyncIterator[bytes]:
            try:
                if response.is_stream_consumed:  # an in-memory answer (MockTransport): already read
                    yield response.content
                    return
                async for piece in response.aiter_raw():
                    yield piece
            finally:
                await response.aclose()

        return StreamedReply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, pieces(),
                             response.reason_phrase)
