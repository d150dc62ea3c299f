"""The quality gate in the deployment state machine: evaluation chunks from the work queue, promotion,
GATED, resumption, and the lease that keeps two workers off one evaluation (fake ARM and scoring; the
whole flow through the emulator is tests/e2e/test_gate.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from types import SimpleNamespace

import httpx
import orjson
import pytest

from shared.evaluation import runner
from shared.handlers import on_work
from shared.lifecycle.model_events import on_model_registered
from shared.lifecycle.reconcile import reconcile
from shared.runs import RunState
from tests.support.fake_endpoints import FakeOnlineEndpoints
from tests.support.fake_queue import FakeQueue
from tests.support.fake_workspace import FakeWorkspace
from tests.support.lifecycle import RUN_ID, deploy_ready, model_event, services

OTHER = "cccccccccccccccccccc"
CAPITALS = [("France", "Paris"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Chile", "Santiago"), ("Japan", "Tokyo"),
            ("Egypt", "Cairo"), ("Greece", "Athens"), ("Canada", "Ottawa"), ("Norway", "Oslo"), ("Italy", "Rome")]


def row(country: str, capital: str) -> bytes:
    return orjson.dumps({"messages": [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": f"What is the capital of {country}?"},
        {"role": "assistant", "content": f"The capital of {country} is {capital}."}]})


def right(_: str, body: dict) -> str:
    question = body["input_data"]["input_string"][-1]["content"]
    country = question.removeprefix("What is the capital of ").rstrip("?")
    capital = dict(CAPITALS).get(country)
    return f"The capital of {country} is {capital}." if capital else "Hello."  # the smoke test asks 2 + 2


@pytest.fixture
def world():
    fake = SimpleNamespace(workspace=FakeWorkspace(), arm=FakeOnlineEndpoints(), work=FakeQueue(),
                           test_split=[row(c, cap) for c, cap in CAPITALS])
    fake.add_job = fake.workspace.add_job
    fake.arm.answer = right
    return services(fake, TUNEFLOW_GATE_ENABLED="true"), fake


def work(ctx, fake) -> list[str]:
    """Deliver the work queue's deploy messages until none is left (what the queue trigger does)."""
    outcomes = []
    while fake.work.sent:
        message, _ = fake.work.sent.pop(0)
        outcomes.append(asyncio.run(on_work(json.dumps(message), ctx)))
    return outcomes


def deployed_first(ctx, fake) -> str:
    deploy_ready(ctx, fake)
    assert on_model_registered(ctx, model_event("model_registered_camel")) == "DEPLOYING"
    work(ctx, fake)
    first = ctx.runs.get(RUN_ID)
    assert first.state == RunState.DEPLOYED
    return str(first.deployment)


def second(ctx, fake) -> None:
    deploy_ready(ctx, fake, OTHER)
    on_model_registered(ctx, model_event("model_registered_camel", modelVersion=OTHER,
                                         modelTags={"tuneflow.run_id": OTHER}))


def test_an_event_never_evaluates_it_hands_the_evaluation_to_the_work_queue(world):
    ctx, fake = world
    deploy_ready(ctx, fake)
    assert on_model_registered(ctx, model_event("model_registered_camel")) == "DEPLOYING"
    assert len(fake.arm.invocations) == 1  # the smoke test only
    assert [m for m, _ in fake.work.sent] == [{"kind": "deploy", "run_id": RUN_ID}]
    assert work(ctx, fake) == ["DEPLOYED"]
    run = ctx.runs.get(RUN_ID)
    assert run.evaluation["verdict"]["promote"] and run.evaluation["verdict"]["serving"] is None
    assert run.evaluation["examples"] == 10 and run.evaluation["scores"]["candidate"]["exact_match"] == 1.0
    assert set(run.evaluation["deployments"]) == {"candidate"}
    assert run.evaluation["samples"][0]["reference"] == "The capital of France is Paris."
    assert len(fake.arm.invocations) == 1 + 10
    assert all(i["deployment"] == run.deployment for i in fake.arm.invocations)


def test_a_worse_candidate_is_gated_and_the_serving_deployment_keeps_all_traffic(world):
    ctx, fake = world
    first = deployed_first(ctx, fake)
    fake.arm.invocations.clear()

    def worse(deployment: str, body: dict) -> str:
        return right(deployment, body) if deployment == first else "The capital is Oslo."

    fake.arm.answer = worse
    second(ctx, fake)
    assert ctx.runs.get(OTHER).state == RunState.DEPLOYING and fake.arm.traffic("tuneflow-chat") == {first: 100}
    work(ctx, fake)
    gated = ctx.runs.get(OTHER)
    assert gated.state == RunState.GATED, gated.last_error
    verdict = gated.evaluation["verdict"]
    assert verdict["rule"] == "min_delta" and not verdict["promote"] and verdict["serving"] == 1.0
    assert "below the serving deployment's 1.000" in gated.history[-1].note
    assert fake.arm.traffic("tuneflow-chat") == {first: 100}
    assert list(fake.arm.deployments) == [("tuneflow-chat", first)]  # the candidate is deleted
    scored = {i["deployment"] for i in fake.arm.invocations}
    assert scored == {first, gated.deployment}  # the same prompts through both, each by its header
    assert ctx.runs.get(RUN_ID).state == RunState.DEPLOYED


def test_a_better_candidate_is_promoted_and_retires_the_first(world):
    ctx, fake = world
    first = deployed_first(ctx, fake)
    fake.arm.answer = lambda d, b: right(d, b) if d != first else "Paris."
    second(ctx, fake)
    work(ctx, fake)
    promoted = ctx.runs.get(OTHER)
    assert promoted.state == RunState.DEPLOYED
    scores = promoted.evaluation["scores"]
    assert scores["candidate"]["token_f1"] > scores["serving"]["token_f1"]
    assert ctx.runs.get(RUN_ID).state == RunState.RETIRED
    assert fake.arm.traffic("tuneflow-chat") == {promoted.deployment: 100}


def test_a_candidate_that_errors_is_gated_on_its_error_rate(world):
    ctx, fake = world
    fake.arm.answer = lambda d, b: ("x" if fake.arm.invocations.__len__() < 2 else
                                    httpx.Response(500, json={"message": "generation failed"}))
    deploy_ready(ctx, fake)
    on_model_registered(ctx, model_event("model_registered_camel"))
    work(ctx, fake)
    run = ctx.runs.get(RUN_ID)
    assert run.state == RunState.GATED and run.evaluation["verdict"]["rule"] == "max_error_rate"
    assert run.evaluation["scores"]["candidate"]["error_rate"] > 0.5


def test_gate_disabled_by_the_manifest_is_todays_smoke_test_only(world):
    ctx, fake = world
    deploy_ready(ctx, fake)
    ctx.runs.update(RUN_ID, lambda r: r.config.update(gate_enabled=False) or True)
    assert on_model_registered(ctx, model_event("model_registered_camel")) == "DEPLOYED"
    assert len(fake.arm.invocations) == 1 and not fake.work.sent
    assert ctx.runs.get(RUN_ID).evaluation["verdict"]["rule"] == "disabled"


def test_an_interrupted_evaluation_resumes_where_it_stopped_and_scores_each_example_once(world):
    ctx, fake = world
    ctx.settings = ctx.settings.__class__(**{**ctx.settings.__dict__, "eval_chunk_seconds": 1.0,
                                             "eval_concurrency": 1})
    slow_calls = []

    def slow(deployment: str, body: dict) -> str:
        slow_calls.append(body)
        time.sleep(0.35)
        return right(deployment, body)

    fake.arm.answer = slow
    deploy_ready(ctx, fake)
    on_model_registered(ctx, model_event("model_registered_camel"))
    fake.work.sent.clear()  # the worker "crashes": its message is lost; the reconciler picks the run up
    reconcile(ctx)
    partial, _ = runner.Evaluation(ctx.records, RUN_ID).read()
    done = len(partial["outcomes"]["candidate"])
    assert 0 < done < 10 and "scores" not in partial and "lease" not in partial
    assert ctx.runs.get(RUN_ID).state == RunState.DEPLOYING
    assert [m for m, _ in fake.work.sent] == [{"kind": "deploy", "run_id": RUN_ID}]  # it handed on
    work(ctx, fake)
    assert ctx.runs.get(RUN_ID).state == RunState.DEPLOYED
    assert len(slow_calls) == 1 + 10  # the smoke test, then each example exactly once across the chunks


def test_a_live_lease_keeps_a_second_worker_off_the_evaluation(world):
    ctx, fake = world
    started, release = threading.Event(), threading.Event()

    def held(deployment: str, body: dict) -> str:
        if body["input_data"]["parameters"]["max_new_tokens"] != 32:  # not the smoke test
            started.set()
            release.wait(5)
        return right(deployment, body)

    fake.arm.answer = held
    deploy_ready(ctx, fake)
    on_model_registered(ctx, model_event("model_registered_camel"))
    fake.work.sent.clear()
    run = ctx.runs.get(RUN_ID)
    first = threading.Thread(target=lambda: runner.advance(ctx, run, ctx.settings, None))
    first.start()
    assert started.wait(5)
    calls = len(fake.arm.invocations)
    assert runner.advance(ctx, run, ctx.settings, None) is None  # leased: nothing scored twice
    assert len(fake.arm.invocations) == calls
    release.set()
    first.join(10)
    report, _ = runner.Evaluation(ctx.records, RUN_ID).read()
    assert runner.complete(report) and len(report["outcomes"]["candidate"]) == 10


def test_deploy_messages_for_runs_that_moved_on_or_never_existed_are_acknowledged(world):
    ctx, fake = world
    deployed_first(ctx, fake)
    calls = len(fake.arm.invocations)
    for message in ({"kind": "deploy", "run_id": RUN_ID}, {"kind": "deploy", "run_id": "f" * 20},
                    {"kind": "deploy", "run_id": "../x"}, {"kind": "deploy"}):
        assert asyncio.run(on_work(json.dumps(message), ctx)) == "ignored"
    assert len(fake.arm.invocations) == calls
