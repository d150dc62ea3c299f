"""The scoring client against a fake endpoint (httpx.MockTransport) and a fake resolver."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from shared.errors import ScoringError
from shared.scoring.client import Scorer, retry_after
from shared.scoring.pool import PerLoop
from shared.scoring.resolve import EndpointCache
from tests.support.fake_scoring import FakeResolver, HttpxSender, Upstream

T = TypeVar("T")
BODY = orjson.dumps({"input_data": {"input_string": [{"role": "user", "content": "hi"}], "parameters": {}}})


def make(resolver: FakeResolver | None = None, *, timeout: float = 30, retries: int = 2,
         ttl: float = 300) -> tuple[Scorer, FakeResolver, Upstream, list[float]]:
    resolver = resolver or FakeResolver()
    upstream = Upstream(resolver)
    sender = PerLoop(lambda: HttpxSender(httpx.AsyncClient(transport=httpx.MockTransport(upstream))))
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    scorer = Scorer(EndpointCache(resolver, ttl=ttl), sender.get, timeout_s=timeout, retries=retries, sleep=sleep)
    return scorer, resolver, upstream, sleeps


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_scores_and_reports_model_and_deployment():
    scorer, _, upstream, _ = make()
    result = run(scorer.score("tuneflow-chat", BODY))
    assert (result.output, result.model, result.deployment) == ("hello there", "chat-ft:1", "blue")
    sent = upstream.requests[0]
    assert sent.content == BODY and sent.headers["content-type"] == "application/json"
    assert "azureml-model-deployment" not in sent.headers  # traffic rules decide


def test_pinned_deployment_goes_in_the_header():
    scorer, _, upstream, _ = make(FakeResolver(models={"blue": "chat-ft:1", "green": "chat-ft:2"}))
    result = run(scorer.score("tuneflow-chat", BODY, deployment="green"))
    assert upstream.requests[0].headers["azureml-model-deployment"] == "green"
    assert (result.deployment, result.model) == ("green", "chat-ft:2")


def test_endpoint_is_resolved_once_then_cached_across_calls():
    scorer, resolver, _, _ = make()

    async def many() -> None:
        for _ in range(20):
            await scorer.score("tuneflow-chat", BODY)

    run(many())
    assert resolver.calls == 1


def test_concurrent_first_calls_share_one_resolution():
    resolver = FakeResolver()
    resolver.delay = 0.05
    scorer, _, upstream, _ = make(resolver)

    async def burst() -> list[Any]:
        return await asyncio.gather(*(scorer.score("tuneflow-chat", BODY) for _ in range(32)))

    results = run(burst())
    assert len(results) == 32 and resolver.calls == 1 and len(upstream.requests) == 32


def test_cache_expires_after_ttl():
    now = [0.0]
    resolver = FakeResolver()
    upstream = Upstream(resolver)
    sender = PerLoop(lambda: HttpxSender(httpx.AsyncClient(transport=httpx.MockTransport(upstream))))
    scorer = Scorer(EndpointCache(resolver, ttl=300, clock=lambda: now[0]), sender.get, timeout_s=30, retries=0)

    async def go() -> None:
        await scorer.score("tuneflow-chat", BODY)
        now[0] = 299
        await scorer.score("tuneflow-chat", BODY)
        assert resolver.calls == 1
        now[0] = 301
        await scorer.score("tuneflow-chat", BODY)

    run(go())
    assert resolver.calls == 2


def test_rotated_key_is_refreshed_once_and_the_call_succeeds():
    scorer, resolver, upstream, _ = make()
    run(scorer.score("tuneflow-chat", BODY))
    resolver.key = "key-two"  # rotated on the endpoint
    result = run(scorer.score("tuneflow-chat", BODY))
    assert result.output == "hello there"
    assert resolver.calls == 2
    assert [r.headers["authorization"] for r in upstream.requests[1:]] == ["Bearer key-one", "Bearer key-two"]


def test_persistent_401_is_a_502_after_one_refresh():
    scorer, resolver, upstream, _ = make()
    upstream.resolver = FakeResolver(key="something-else")  # the endpoint accepts no key we can get
    with pytest.raises(ScoringError) as err:
        run(scorer.score("tuneflow-chat", BODY))
    assert err.value.status == 502 and err.value.code == "upstream_auth"
    assert resolver.calls == 2 and len(upstream.requests) == 2


def test_429_is_retried_after_retry_after():
    scorer, _, upstream, sleeps = make()
    upstream.script = [lambda r: httpx.Response(429, headers={"Retry-After": "3"}, json={"message": "slow down"})]
    assert run(scorer.score("tuneflow-chat", BODY)).output == "hello there"
    assert sleeps == [3.0]


def test_503_retries_are_bounded_and_then_answered_with_retry_after():
    scorer, _, upstream, sleeps = make(retries=2)
    busy = lambda r: httpx.Response(503, json={"message": "busy"})  # noqa: E731
    upstream.script = [busy, busy, busy, busy]
    with pytest.raises(ScoringError) as err:
        run(scorer.score("tuneflow-chat", BODY))
    assert err.value.status == 503 and len(upstream.requests) == 3 and sleeps == [0.5, 1.0]


def test_retry_after_beyond_the_budget_is_not_waited_for():
    scorer, _, upstream, sleeps = make(timeout=10)
    upstream.script = [lambda r: httpx.Response(429, headers={"Retry-After": "60"}, json={"message": "later"})]
    with pytest.raises(ScoringError) as err:
        run(scorer.score("tuneflow-chat", BODY))
    assert err.value.status == 429 and err.value.retry_after == 60 and sleeps == []


def test_timeout_is_a_504():
    scorer, _, upstream, _ = make()

    def hang(request):
        raise httpx.ReadTimeout("timed out", request=request)

    upstream.script = [hang]
    with pytest.raises(ScoringError) as err:
        run(scorer.score("tuneflow-chat", BODY))
    assert err.value.status == 504 and "TUNEFLOW_SCORING_TIMEOUT_S" in err.value.message


@pytest.mark.parametrize(("status", "expected", "code"), [
    (400, 400, "rejected_by_model"), (422, 400, "rejected_by_model"), (404, 404, "no_deployment"),
    (408, 504, "upstream_timeout"), (500, 502, "upstream_error"), (502, 502, "upstream_error"),
])
def test_endpoint_failures_map_to_clear_statuses(status, expected, code):
    scorer, _, upstream, _ = make(retries=0)
    upstream.script = [lambda r: httpx.Response(status, json={"message": f"upstream says {status}"})]
    with pytest.raises(ScoringError) as err:
        run(scorer.score("tuneflow-chat", BODY))
    assert (err.value.status, err.value.code) == (expected, code)
    assert f"upstream says {status}" in err.value.message


def test_unreadable_answer_is_a_502():
    scorer, _, upstream, _ = make()
    upstream.script = [lambda r: httpx.Response(200, json={"weird": 1})]
    with pytest.raises(ScoringError) as err:
        run(scorer.score("tuneflow-chat", BODY))
    assert err.value.status == 502 and err.value.code == "unrecognised_response"


def test_missing_endpoint_is_a_404_and_is_not_looked_up_again_at_once():
    resolver = FakeResolver()
    resolver.missing = True
    scorer, _, upstream, _ = make(resolver)
    for _ in range(5):
        with pytest.raises(ScoringError) as err:
            run(scorer.score("tuneflow-chat", BODY))
        assert err.value.status == 404 and err.value.code == "endpoint_not_found"
    assert resolver.calls == 1 and upstream.requests == []


def test_deployment_unknown_to_the_cache_refreshes_it_for_the_model():
    scorer, resolver, upstream, _ = make()
    run(scorer.score("tuneflow-chat", BODY))
    resolver.models["green"] = "chat-ft:2"  # deployed since
    upstream.script = [lambda r: httpx.Response(200, json={"output": "hi"}, headers={"azureml-model-deployment": "green"})]
    result = run(scorer.score("tuneflow-chat", BODY))
    assert (result.deployment, result.model) == ("green", "chat-ft:2") and resolver.calls == 2


def test_no_key_in_any_log_line_or_error(caplog):
    secret = "SeCrEt-KeY-0123456789abcdef"
    scorer, resolver, upstream, _ = make(FakeResolver(key=secret))
    upstream.script = [lambda r: httpx.Response(500, json={"message": f"echoing your key {secret}"})]
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore2", "shared"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    with pytest.raises(ScoringError) as err:
        run(scorer.score("tuneflow-chat", BODY))
    assert secret not in err.value.message and "***" in err.value.message
    resolver.key = "rotated-" + secret
    run(scorer.score("tuneflow-chat", BODY))  # a refresh, a retry, a success: all logged
    assert caplog.records, "expected the scoring path to log something"
    assert secret not in caplog.text


def test_retry_after_parsing():
    assert retry_after("7") == 7.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
