"""A fake endpoint resolver and a fake scoring URI (an httpx transport handler), for scoring unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from shared.errors import EndpointNotFound
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
