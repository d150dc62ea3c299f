"""The quality gate in the deployment state machine: evaluation chunks from the work queue, promotion,
GATED, resumption, and the lease that keeps two workers off one evaluation (fake ARM and scoring; the
whole flow through the emulator is tests/e2e/test_gate.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
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


def gate_world(**env: str):
    """(services, fakes) with the gate on, a test split of capital questions and a deployment answering them."""
    fake = SimpleNamespace(workspace=FakeWorkspace(), arm=FakeOnlineEndpoints(), work=FakeQueue(),
                           test_split=[row(c, cap) for c, cap in CAPITALS])
    fake.add_job = fake.workspace.add_job
    fake.arm.answer = right
    return services(fake, TUNEFLOW_GATE_ENABLED="true", **env), fake


@pytest.fixture
def world():
    return gate_world()


def work(ctx, fake) -> list[str]:
    """Deliver the work queue's visible messages until none is left (what the queue trigger does); delayed
    ones stay queued."""
    outcomes = []
    while any(delay == 0 for _, delay in fake.work.sent):
        message, _ = fake.work.sent.pop(next(i for i, (_, delay) in enumerate(fake.work.sent) if delay == 0))
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
    assert run.evaluation["training"]["eval_loss"] == 1.25  # the job's own final metrics, from the model's tags
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
    ctx.settings = dataclasses.replace(ctx.settings, eval_chunk_seconds=1.0, eval_concurrency=1)
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
    ctx.settings = dataclasses.replace(ctx.settings, eval_concurrency=1)  # one call in flight: a stable count
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
    assert runner.advance(ctx, run, ctx.settings, None) == runner.BUSY  # leased: nothing scored twice
    assert len(fake.arm.invocations) == calls
    fake.work.sent.clear()
    assert asyncio.run(on_work(json.dumps({"kind": "deploy", "run_id": RUN_ID}), ctx)) == "DEPLOYING"
    assert len(fake.arm.invocations) == calls and fake.work.sent == []  # no message loop while it is busy
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


# ------------------------------------------------------------------------------------------ canary rollouts

CANARY = {"TUNEFLOW_ROLLOUT_STRATEGY": "canary", "TUNEFLOW_ROLLOUT_STEPS": "10,50,100",
          "TUNEFLOW_ROLLOUT_BAKE_MINUTES": "0.01", "TUNEFLOW_ROLLOUT_MIN_REQUESTS": "5"}


@pytest.fixture
def canary_world():
    return gate_world(**CANARY)


def live_calls(ctx, deployment: str, n: int, status: int = 200, ms: float = 80.0) -> None:
    for _ in range(n):
        ctx.live.observe("tuneflow-chat", deployment, status, ms)
    ctx.live.flush()


def canary_started(ctx, fake) -> tuple[str, str]:
    first = deployed_first(ctx, fake)  # nothing served before it: no canary, one switch
    assert ctx.runs.get(RUN_ID).rollout is None
    second(ctx, fake)
    work(ctx, fake)
    run = ctx.runs.get(OTHER)
    assert run.state == RunState.DEPLOYING and run.rollout["share"] == 10
    assert fake.arm.traffic("tuneflow-chat") == {first: 90, run.deployment: 10}
    return first, str(run.deployment)


def look(ctx) -> str:
    return asyncio.run(on_work(json.dumps({"kind": "deploy", "run_id": OTHER}), ctx))


def test_a_clean_canary_steps_through_each_share_and_finishes_deployed(canary_world):
    ctx, fake = canary_world
    first, candidate = canary_started(ctx, fake)
    (message, delay), = fake.work.sent
    assert message == {"kind": "deploy", "run_id": OTHER} and 0 < delay <= 5.0
    fake.work.sent.clear()
    assert look(ctx) == "DEPLOYING" and fake.arm.traffic("tuneflow-chat")[candidate] == 10  # still baking
    time.sleep(0.7)
    live_calls(ctx, candidate, 6)
    live_calls(ctx, first, 30)
    assert look(ctx) == "DEPLOYING"
    assert fake.arm.traffic("tuneflow-chat") == {first: 50, candidate: 50}
    time.sleep(0.7)
    assert look(ctx) == "DEPLOYED"
    run = ctx.runs.get(OTHER)
    assert fake.arm.traffic("tuneflow-chat") == {candidate: 100} and ctx.runs.get(RUN_ID).state == RunState.RETIRED
    assert [h["share"] for h in run.rollout["history"]] == [10, 50]
    assert all(h["outcome"] == "baked" for h in run.rollout["history"])


def test_an_erroring_canary_is_rolled_back_in_one_traffic_update(canary_world):
    ctx, fake = canary_world
    first, candidate = canary_started(ctx, fake)
    updates = sum(path == "/onlineEndpoints/tuneflow-chat" for method, path, _ in fake.arm.bodies if method == "PUT")
    time.sleep(0.1)
    live_calls(ctx, candidate, 8, status=500)
    live_calls(ctx, first, 40)
    assert look(ctx) == "ROLLED_BACK"  # before its bake is over: the first look after the errors
    run = ctx.runs.get(OTHER)
    assert "failed 8 of its 8 live calls" in run.last_error and "canary rolled back" in run.history[-1].note
    assert run.rollout["history"][-1]["candidate"]["errors"] == 8
    assert run.rollout["history"][-1]["serving"]["requests"] == 40
    assert sum(path == "/onlineEndpoints/tuneflow-chat" for method, path, _ in fake.arm.bodies
               if method == "PUT") == updates + 1  # one traffic update: back to the serving deployment
    assert fake.arm.traffic("tuneflow-chat") == {first: 100}
    assert list(fake.arm.deployments) == [("tuneflow-chat", first)]
    assert ctx.runs.get(RUN_ID).state == RunState.DEPLOYED


def test_a_slow_canary_is_rolled_back_on_its_p95_against_the_serving_one(canary_world):
    ctx, fake = canary_world
    first, candidate = canary_started(ctx, fake)
    time.sleep(0.1)
    live_calls(ctx, candidate, 10, ms=3000)
    live_calls(ctx, first, 10, ms=90)
    assert look(ctx) == "ROLLED_BACK"
    found = re.search(r"p95 latency ([\d.]+) ms is more than 1.5x the serving deployment's ([\d.]+) ms",
                      ctx.runs.get(OTHER).last_error)
    assert found and abs(float(found.group(1)) - 3000) < 300 and abs(float(found.group(2)) - 90) < 9


def test_too_few_calls_are_not_judged_and_checks_do_not_multiply(canary_world):
    ctx, fake = canary_world
    _, candidate = canary_started(ctx, fake)
    live_calls(ctx, candidate, 3, status=500)  # under rollout.min_requests: not evidence yet
    fake.work.sent.clear()
    for _ in range(3):
        reconcile(ctx)  # passes while a look is already scheduled ask for none
    assert fake.work.sent == [] and ctx.runs.get(OTHER).state == RunState.DEPLOYING


def test_rollout_settings_and_manifest_keys_are_checked():
    from shared.errors import ManifestError, SettingsError
    from shared.manifest import parse_manifest, run_config, settings_for
    from shared.settings import Settings

    base = {"TUNEFLOW_STORAGE_CONNECTION": "x"}
    assert Settings.from_env({**base, "TUNEFLOW_ROLLOUT_STEPS": "5, 25,100"}).rollout_steps == (5, 25, 100)
    for steps in ("50,10,100", "10,50", "0,100", "ten"):
        with pytest.raises(SettingsError, match="TUNEFLOW_ROLLOUT_STEPS"):
            Settings.from_env({**base, "TUNEFLOW_ROLLOUT_STEPS": steps})
    s = Settings.from_env(base)
    m = parse_manifest(b'{"rollout": {"strategy": "canary", "steps": [20, 100], "bake_minutes": 3, '
                       b'"max_error_rate": 0.01, "max_p95_ratio": 2, "min_requests": 50}}')
    mine = settings_for(s, run_config(s, m))
    assert (mine.rollout_strategy, mine.rollout_steps, mine.rollout_bake_minutes, mine.rollout_max_error_rate,
            mine.rollout_max_p95_ratio, mine.rollout_min_requests) == ("canary", (20, 100), 3.0, 0.01, 2.0, 50)
    with pytest.raises(ManifestError) as caught:
        parse_manifest(b'{"rollout": {"strategy": "blue", "steps": [50, 10], "max_p95_ratio": 0.5}}')
    problems = caught.value.problems
    assert any(p.startswith("rollout.strategy: expected one of 'immediate', 'canary'") for p in problems)
    assert any(p.startswith("rollout.steps: expected rising percentages") for p in problems)
    assert "rollout.max_p95_ratio: expected a number from 1 to 100, got 0.5" in problems


def test_compare_base_evaluates_the_base_model_on_its_own_deployment_then_deletes_it():
    ctx, fake = gate_world(TUNEFLOW_EVAL_COMPARE_BASE="true")
    fake.arm.answer = lambda d, b: "I do not know." if d.startswith("base-") else right(d, b)
    deploy_ready(ctx, fake)
    assert on_model_registered(ctx, model_event("model_registered_camel")) == "DEPLOYING"
    assert work(ctx, fake) == ["DEPLOYED"]
    run = ctx.runs.get(RUN_ID)
    base = f"base-{RUN_ID[:16]}"
    (created,) = fake.arm.puts(f"/deployments/{base}")
    assert created["properties"]["model"] == "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/7"
    assert created["tags"] == {"tuneflow.base_of": RUN_ID}
    assert run.evaluation["deployments"] == {"candidate": run.deployment, "base": base}
    scores = run.evaluation["scores"]
    assert scores["base"]["token_f1"] < scores["candidate"]["token_f1"] and scores["base"]["examples"] == 10
    assert run.evaluation["verdict"]["serving"] is None  # the base informs; it is not what the gate compares with
    assert list(fake.arm.deployments) == [("tuneflow-chat", run.deployment)]  # the base deployment is gone


# ------------------------------------------------------------------------------------------ mirror rollouts

MIRROR = {"TUNEFLOW_ROLLOUT_STRATEGY": "mirror", "TUNEFLOW_ROLLOUT_MIRROR_PERCENT": "20",
          "TUNEFLOW_ROLLOUT_BAKE_MINUTES": "0.01", "TUNEFLOW_ROLLOUT_MIN_REQUESTS": "5"}


def mirror_started(ctx, fake) -> tuple[str, str]:
    first = deployed_first(ctx, fake)
    second(ctx, fake)
    work(ctx, fake)
    run = ctx.runs.get(OTHER)
    props = fake.arm.endpoints["tuneflow-chat"]["properties"]
    assert run.state == RunState.DEPLOYING and run.rollout["strategy"] == "mirror"
    assert props["traffic"] == {first: 100} and props["mirrorTraffic"] == {run.deployment: 20}
    return first, str(run.deployment)


def test_a_clean_mirror_bakes_on_monitor_metrics_then_switches_and_clears_the_mirror():
    ctx, fake = gate_world(**MIRROR)
    first, candidate = mirror_started(ctx, fake)
    fake.arm.monitor = {candidate: {"2xx": 12, "p95": 90.0}, first: {"2xx": 60, "p95": 80.0}}
    time.sleep(0.7)
    assert look(ctx) == "DEPLOYED"
    props = fake.arm.endpoints["tuneflow-chat"]["properties"]
    assert props["traffic"] == {candidate: 100} and props["mirrorTraffic"] == {}
    (baked,) = ctx.runs.get(OTHER).rollout["history"]
    assert baked["outcome"] == "baked" and baked["candidate"]["requests"] == 12 and baked["source"] == "Azure Monitor"
    assert ctx.runs.get(RUN_ID).state == RunState.RETIRED


def test_a_mirror_whose_candidate_fails_is_rolled_back_and_no_caller_saw_it():
    ctx, fake = gate_world(**MIRROR)
    first, candidate = mirror_started(ctx, fake)
    fake.arm.monitor = {candidate: {"2xx": 2, "5xx": 8, "p95": 90.0}, first: {"2xx": 60, "p95": 80.0}}
    assert look(ctx) == "ROLLED_BACK"
    props = fake.arm.endpoints["tuneflow-chat"]["properties"]
    assert props["traffic"] == {first: 100} and props["mirrorTraffic"] == {}
    run = ctx.runs.get(OTHER)
    assert "failed 8 of its 10 live calls" in run.last_error and run.history[-1].note.startswith("mirror rolled back")
    assert list(fake.arm.deployments) == [("tuneflow-chat", first)]
