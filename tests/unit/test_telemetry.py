"""A scoring call is one span naming its endpoint and the deployment that answered, and no secret in it."""

from __future__ import annotations

import asyncio

import httpx

from shared.scoring.client import Scorer
from shared.scoring.pool import PerLoop
from shared.scoring.resolve import EndpointCache
from shared.telemetry import span
from tests.support.fake_scoring import FakeResolver, HttpxSender, Upstream
from tests.support.telemetry import every_attribute_value, exporter, spans


def test_a_scoring_call_is_a_span_naming_the_deployment_that_answered() -> None:
    exporter().clear()
    resolver = FakeResolver(key="secret-endpoint-key")
    upstream = Upstream(resolver)
    upstream.script = [lambda r: httpx.Response(200, json=[{"0": "Lima."}], headers={"azureml-model-deployment": "blue"})]
    sender = PerLoop(lambda: HttpxSender(httpx.AsyncClient(transport=httpx.MockTransport(upstream))))
    scorer = Scorer(EndpointCache(resolver, 60), sender.get, timeout_s=5, retries=0)
    result = asyncio.run(scorer.score("tuneflow-chat", b'{"input_data": {}}'))
    (scored,) = spans("tuneflow.score")
    assert scored.attributes is not None
    assert scored.attributes["tuneflow.endpoint"] == "tuneflow-chat"
    assert scored.attributes["tuneflow.deployment"] == result.deployment == "blue"
    assert not any("secret-endpoint-key" in v or "Bearer" in v for v in every_attribute_value())


def test_spans_carry_only_the_values_given() -> None:
    exporter().clear()
    with span("probe", run_id="abc123", endpoint=None, deployment=""):
        pass
    (probe,) = spans("tuneflow.probe")
    assert dict(probe.attributes or {}) == {"tuneflow.run_id": "abc123"}
