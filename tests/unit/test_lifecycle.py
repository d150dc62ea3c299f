"""Lifecycle state machine against an in-memory workspace and a fake ARM for endpoints (the emulator
tests cover the real SDK and REST paths)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shared.lifecycle.deployment import smoke_request
from shared.lifecycle.model_events import on_model_registered
from shared.lifecycle.names import deployment_name_for
from shared.lifecycle.reconcile import reconcile
from shared.lifecycle.registration import on_run_event
from shared.runs import Run, RunState
from tests.support.lifecycle import RUN_ID, deploy_ready, make_world, model_event, run_event, services, submitted


@pytest.fixture
def world():
    return make_world()


def test_running_then_completed_registers_one_model_with_tags(world):
    ctx, fake = world
    submitted(ctx)
    fake.add_job(f"tuneflow-{RUN_ID}", "Completed")
    assert on_run_event(ctx, run_event("run_status_running_camel")) == "running"
    assert ctx.runs.get(RUN_ID).state == RunState.RUNNING
    on_run_event(ctx, run_event("run_completed_camel"))
    on_run_event(ctx, run_event("run_completed_camel"))  # duplicate delivery
    run = ctx.runs.get(RUN_ID)
    assert run.state == RunState.REGISTERED and run.model == f"Phi-3-mini-4k-instruct-ft:{RUN_ID}"
    assert fake.workspace.model_creates == 1
    model = fake.workspace.models[("Phi-3-mini-4k-instruct-ft", RUN_ID)]
    assert model.path == f"azureml://jobs/tuneflow-{RUN_ID}/outputs/trained_model"
    assert model.tags["tuneflow.run_id"] == RUN_ID and model.tags["metrics.eval_loss"] == "1.25"
    assert model.type == "mlflow_model"
    # a late Running event changes nothing
    on_run_event(ctx, run_event("run_status_running_camel"))
    assert ctx.runs.get(RUN_ID).state == RunState.REGISTERED


def test_failed_job_records_its_message(world):
    ctx, fake = world
    submitted(ctx)
    fake.add_job(f"tuneflow-{RUN_ID}", "Failed", error="CUDA out of memory in finetune step")
    on_run_event(ctx, run_event("run_status_failed_pascal"))
    run = ctx.runs.get(RUN_ID)
    assert run.state == RunState.FAILED and "CUDA out of memory" in run.last_error


def test_child_steps_other_experiments_and_unknown_runs_change_nothing(world):
    ctx, fake = world
    submitted(ctx)
    for name in ("run_completed_child_step", "run_completed_other_experiment"):
        assert on_run_event(ctx, run_event(name)) == "ignored"
    assert on_run_event(ctx, run_event("run_completed_camel", runId="tuneflow-3f2a9c0d1e5b7a8c6d4f",
                                       runTags={})) == "ignored"
    assert ctx.runs.get(RUN_ID).state == RunState.SUBMITTED and fake.workspace.model_creates == 0


def test_model_registered_deploys_blue_green(world):
    ctx, fake = world
    deploy_ready(ctx, fake)
    state = on_model_registered(ctx, model_event("model_registered_camel"))
    run = ctx.runs.get(RUN_ID)
    assert state == "DEPLOYED" and run.state == RunState.DEPLOYED
    assert run.endpoint == "tuneflow-chat" and run.deployment == deployment_name_for(*run.model.rsplit(":", 1))
    (created,) = fake.arm.puts("/onlineEndpoints/tuneflow-chat/deployments/")
    assert fake.arm.endpoints["tuneflow-chat"]["properties"]["authMode"] == "Key"
    assert fake.arm.traffic("tuneflow-chat") == {run.deployment: 100}
    props = created["properties"]
    assert props["livenessProbe"]["initialDelay"] == "PT600S" and props["requestSettings"]["requestTimeout"] == "PT90S"
    assert props["model"].endswith(f"/workspaces/w/models/Phi-3-mini-4k-instruct-ft/versions/{RUN_ID}")
    assert created["tags"]["tuneflow.run_id"] == RUN_ID and created["sku"]["capacity"] == 1
    (smoke,) = fake.arm.invocations
    assert smoke["deployment"] == run.deployment and "What is 2 plus 2?" in smoke["body"]
    assert smoke["auth"] == "Bearer pk"
    assert [t.state for t in run.history][-3:] == ["REGISTERED", "DEPLOYING", "DEPLOYED"]


def test_each_deployment_step_is_a_span_naming_run_endpoint_and_deployment(world):
    from tests.support.telemetry import every_attribute_value, exporter, spans

    ctx, fake = world
    deploy_ready(ctx, fake)
    exporter().clear()
    on_model_registered(ctx, model_event("model_registered_camel"))
    run = ctx.runs.get(RUN_ID)
    steps = spans("tuneflow.deploy")
    assert steps and all((s.attributes or {}).get("tuneflow.run_id") == RUN_ID for s in steps)
    assert (steps[-1].attributes or {})["tuneflow.deployment"] == run.deployment
    assert (steps[-1].attributes or {})["tuneflow.endpoint"] == "tuneflow-chat"
    assert (steps[-1].attributes or {})["tuneflow.outcome"] == "DEPLOYED"
    assert not any(v == "pk" or "Bearer" in v for v in every_attribute_value())  # the endpoint key stays out


def test_second_model_replaces_the_first_and_retires_its_run(world):
    ctx, fake = world
    deploy_ready(ctx, fake)
    on_model_registered(ctx, model_event("model_registered_camel"))
    first = ctx.runs.get(RUN_ID)
    other = "aaaaaaaaaaaaaaaaaaaa"
    deploy_ready(ctx, fake, other)
    on_model_registered(ctx, model_event("model_registered_camel", modelVersion=other,
                                         modelTags={"tuneflow.run_id": other}))
    second = ctx.runs.get(other)
    assert second.state == RunState.DEPLOYED and ctx.runs.get(RUN_ID).state == RunState.RETIRED
    assert ("DELETE", f"/onlineEndpoints/tuneflow-chat/deployments/{first.deployment}") in fake.arm.calls
    assert list(fake.arm.deployments) == [("tuneflow-chat", second.deployment)]


def test_failed_smoke_test_rolls_back_and_keeps_the_previous_deployment(world):
    ctx, fake = world
    deploy_ready(ctx, fake)
    on_model_registered(ctx, model_event("model_registered_camel"))
    previous = ctx.runs.get(RUN_ID).deployment
    other = "bbbbbbbbbbbbbbbbbbbb"
    deploy_ready(ctx, fake, other)
    fake.arm.smoke_answer = []
    on_model_registered(ctx, model_event("model_registered_camel", modelVersion=other,
                                         modelTags={"tuneflow.run_id": other}))
    failed = ctx.runs.get(other)
    assert failed.state == RunState.DEPLOY_FAILED and "smoke test failed" in failed.last_error
    assert fake.arm.traffic("tuneflow-chat") == {previous: 100}
    assert list(fake.arm.deployments) == [("tuneflow-chat", previous)]
    assert ctx.runs.get(RUN_ID).state == RunState.DEPLOYED


def test_failed_provisioning_rolls_back(world):
    ctx, fake = world
    deploy_ready(ctx, fake)
    fake.arm.fail_deployments = True
    on_model_registered(ctx, model_event("model_registered_camel"))
    run = ctx.runs.get(RUN_ID)
    assert run.state == RunState.DEPLOY_FAILED and "failed to provision" in run.last_error
    assert ("DELETE", f"/onlineEndpoints/tuneflow-chat/deployments/{run.deployment}") in fake.arm.calls


def test_long_operations_are_left_to_the_reconciler(world):
    ctx, fake = world
    fake.arm.auto_complete = False
    deploy_ready(ctx, fake)
    assert on_model_registered(ctx, model_event("model_registered_camel")) == "DEPLOYING"
    assert ctx.runs.get(RUN_ID).state == RunState.DEPLOYING and not fake.arm.deployments
    fake.arm.finish()  # the endpoint is up; the deployment is started by the next pass
    reconcile(ctx)
    assert ctx.runs.get(RUN_ID).state == RunState.DEPLOYING and fake.arm.deployments
    fake.arm.finish()
    outcome = reconcile(ctx)
    assert ctx.runs.get(RUN_ID).state == RunState.DEPLOYED and outcome["DEPLOYED"] == 1


def test_reconciler_recovers_a_lost_run_completed_event(world):
    ctx, fake = world
    submitted(ctx)
    fake.add_job(f"tuneflow-{RUN_ID}", "Completed")
    reconcile(ctx)  # no event at all: the job's status is read
    assert ctx.runs.get(RUN_ID).state == RunState.DEPLOYED and fake.workspace.model_creates == 1


def test_unrelated_models_are_not_deployed_and_auto_deploy_tags_are(world):
    ctx, fake = world
    assert on_model_registered(ctx, model_event("model_registered_unrelated")) == "ignored"
    assert not fake.arm.deployments
    fake.workspace.models[("Phi-3-mini-4k-instruct-ft", "3")] = SimpleNamespace(type="mlflow_model", tags={})
    assert on_model_registered(ctx, model_event("model_registered_pascal_int_version")) == "DEPLOYED"
    (run,) = list(ctx.runs.list())
    assert run.model == "Phi-3-mini-4k-instruct-ft:3" and run.dataset == "(registered outside tuneflow)"


def test_a_forged_auto_deploy_event_creates_nothing(world):
    ctx, fake = world
    # tagged for auto-deploy, but no such model: no run record, no endpoint, no deployment
    assert on_model_registered(ctx, model_event("model_registered_pascal_int_version")) == "ignored"
    assert list(ctx.runs.list()) == [] and fake.arm.endpoints == {} and fake.arm.calls == []
    fake.workspace.models[("Phi-3-mini-4k-instruct-ft", "3")] = SimpleNamespace(type="custom_model", tags={})
    assert on_model_registered(ctx, model_event("model_registered_pascal_int_version")) == "ignored"
    assert list(ctx.runs.list()) == [] and fake.arm.calls == []


def test_a_model_event_naming_another_runs_model_is_ignored(world):
    ctx, fake = world
    deploy_ready(ctx, fake)  # registered Phi-3-mini-4k-instruct-ft:<RUN_ID>
    forged = model_event("model_registered_camel", modelVersion="999")
    assert on_model_registered(ctx, forged) == "ignored"
    assert ctx.runs.get(RUN_ID).state == RunState.REGISTERED and fake.arm.calls == []


def test_one_bad_run_never_stops_the_reconciler(world):
    ctx, fake = world
    submitted(ctx, "a" * 20)  # its job is gone: FAILED with the reason, at once
    submitted(ctx, "b" * 20)  # the next run still converges
    fake.add_job(f"tuneflow-{'b' * 20}", "Running")
    outcome = reconcile(ctx)
    gone = ctx.runs.get("a" * 20)
    assert gone.state == RunState.FAILED and "no longer exists" in gone.last_error
    assert ctx.runs.get("b" * 20).state == RunState.RUNNING
    assert outcome["error"] == 1 and outcome["FAILED"] == 1 and outcome["RUNNING"] == 1


def test_a_run_failing_transiently_is_given_up_after_a_bounded_number_of_passes(world, monkeypatch):
    from shared.errors import TransientError
    from shared.lifecycle import reconcile as reconciler

    ctx, fake = world
    submitted(ctx)

    def down(name):
        raise TransientError("Azure ML answered 503: busy")

    fake.workspace.ws.jobs.get = down
    monkeypatch.setattr(reconciler, "MAX_STALLED_PASSES", 3)
    reconcile(ctx)
    reconcile(ctx)
    run = ctx.runs.get(RUN_ID)
    assert run.state == RunState.SUBMITTED and run.stalled_passes == 2 and "503" in run.last_error
    reconcile(ctx)
    run = ctx.runs.get(RUN_ID)
    assert run.state == RunState.FAILED and "gave up after 3 failed passes" in run.last_error


def test_a_pass_that_succeeds_resets_the_stall_count(world):
    from shared.errors import TransientError

    ctx, fake = world
    submitted(ctx)
    real = fake.workspace.ws.jobs.get
    fake.workspace.ws.jobs.get = lambda name: (_ for _ in ()).throw(TransientError("busy"))
    reconcile(ctx)
    assert ctx.runs.get(RUN_ID).stalled_passes == 1
    fake.workspace.ws.jobs.get = real
    fake.add_job(f"tuneflow-{RUN_ID}", "Running")
    reconcile(ctx)
    assert ctx.runs.get(RUN_ID).stalled_passes == 0 and ctx.runs.get(RUN_ID).state == RunState.RUNNING


def test_instance_type_must_be_allowed_for_inference(world):
    ctx, fake = world
    ctx = services(fake, TUNEFLOW_INSTANCE_TYPE="Standard_DS3_v2")
    deploy_ready(ctx, fake)
    on_model_registered(ctx, model_event("model_registered_camel"))
    run = ctx.runs.get(RUN_ID)
    assert run.state == RunState.DEPLOY_FAILED and "inference_compute_allow_list" in run.last_error
    assert not fake.arm.deployments


def test_names_fit_azure_rules():
    import re
    for version in ("3", RUN_ID, "1.0.0", "x" * 80):
        name = deployment_name_for("Phi-3-mini-4k-instruct-ft", version)
        assert 3 <= len(name) <= 32 and re.fullmatch(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?", name), name
    assert smoke_request(None)["input_data"]["input_string"] == [{"role": "user", "content": "Say hello."}]
    assert smoke_request(b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "con')[
        "input_data"]["input_string"][0]["content"] == "Say hello."


def test_a_manifest_run_deploys_to_its_own_endpoint_with_its_instances_and_tags(world):
    ctx, fake = world
    run = submitted(ctx)
    config = {"endpoint": "support-chat", "instance_count": 2, "model_name": "Phi-3-mini-4k-instruct-ft-support",
              "idle_teardown_minutes": 15.0}
    def chosen(r: Run) -> bool:
        r.config, r.tags = config, {"team": "s"}
        return True

    ctx.runs.update(run.run_id, chosen)
    fake.add_job(f"tuneflow-{RUN_ID}", "Completed")
    on_run_event(ctx, run_event("run_completed_camel"))
    reconcile(ctx)  # the model's registered event could drive it as well
    run = ctx.runs.get(RUN_ID)
    assert run.state == RunState.DEPLOYED and run.endpoint == "support-chat"
    assert run.model == f"Phi-3-mini-4k-instruct-ft-support:{RUN_ID}"
    assert fake.workspace.models[("Phi-3-mini-4k-instruct-ft-support", RUN_ID)].tags["team"] == "s"
    (created,) = fake.arm.puts("/onlineEndpoints/support-chat/deployments/")
    assert created["sku"]["capacity"] == 2
    assert fake.arm.endpoints["support-chat"]["tags"]["tuneflow.idle_teardown_minutes"] == "15"


def test_deploy_never_keeps_the_run_registered(world):
    ctx, fake = world
    run = submitted(ctx)
    def never(r: Run) -> bool:
        r.deploy = "never"
        return True

    ctx.runs.update(run.run_id, never)
    fake.add_job(f"tuneflow-{RUN_ID}", "Completed")
    on_run_event(ctx, run_event("run_completed_camel"))
    reconcile(ctx)
    assert ctx.runs.get(RUN_ID).state == RunState.REGISTERED and not fake.arm.puts("/onlineEndpoints/")


def test_a_deployment_its_quota_cannot_hold_fails_at_once_and_creates_nothing(world):
    from tests.support.fake_quota import usage, vm_size

    ctx, fake = world
    fake.workspace.compute.sizes = [vm_size("Standard_NC24ads_A100_v4", "standardNCADSA100v4Family", 24)]
    fake.workspace.compute.usages = [usage("standardNCADSA100v4Family", 96, 96)]
    deploy_ready(ctx, fake)
    reconcile(ctx)
    run = ctx.runs.get(RUN_ID)
    assert run.state == RunState.DEPLOY_FAILED
    assert run.last_error == ("not deployed: the deployment needs 24 cores of family standardNCADSA100v4Family "
                              "(Standard_NC24ads_A100_v4 × 1); 96 of 96 in use")
    assert not fake.arm.puts("/onlineEndpoints/")
