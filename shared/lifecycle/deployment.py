"""Blue/green deployment of a registered model onto the stable endpoint.

The new deployment is created with 0% traffic; once it is Succeeded a smoke test scores a sample of
the run's test split through it (``azureml-model-deployment``). With the gate on (the default) it is
then evaluated on the run's test split beside the deployment that serves (``shared.evaluation``), in
chunks run from the work queue or the reconciler, never from an Event Grid delivery; a candidate the
gate refuses is deleted and its run ends GATED. Traffic moves to a promoted candidate in one update
(or in canary steps: ``shared.lifecycle.rollout``), and only then are the previous deployments
deleted. A failure at any point deletes the new deployment and leaves the previous one serving
everything.

Every step is derived from Azure's live state, so ``progress`` can be called any number of times
(events, the reconciler) and long-running operations are started, waited on for a bounded time,
and otherwise left for the next call — a function never outlives its timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from shared.azureml import tags
from shared.azureml.preflight import fetch_base_model, inference_size_problem
from shared.endpoints.control import DeploymentSpec, Operation, provisioning_state, traffic_of
from shared.errors import TuneflowError
from shared.lifecycle import base_deployment, rollout
from shared.lifecycle.names import deployment_name_for
from shared.lifecycle.rollout import DEPLOY
from shared.manifest import settings_for
from shared.runs import Run, RunState
from shared.telemetry import annotate, span

if TYPE_CHECKING:
    from shared.services import Services
    from shared.settings import Settings

log = logging.getLogger(__name__)
SUCCEEDED, FAILED = "succeeded", "failed"
MAX_STEPS = 8  # progress() keeps going while each step completes within the wait budget
WAIT_S = 30.0  # the longest one step waits on a long-running operation; the rest is the reconciler's
SMOKE_TIMEOUT_S = 60.0


def start(ctx: Services, run: Run, evaluate: bool = False) -> Run:
    """REGISTERED → DEPLOYING (after checking the instance type and quota), then make what progress we can.

    A run whose manifest says ``"deploy": "never"`` stays REGISTERED: the model is the product.
    ``evaluate``: this caller may spend an evaluation chunk (the work queue, the reconciler); else a
    work message asks for it."""
    if run.state == RunState.REGISTERED and run.model and run.deploy != "never":
        s = settings_for(ctx.settings, run.config)
        problem = instance_type_problem(ctx, s) or quota_problem(ctx, s)
        if problem:
            ctx.runs.advance(run.run_id, RunState.DEPLOYING, endpoint=s.endpoint)
            return ctx.runs.advance(run.run_id, RunState.DEPLOY_FAILED, note=problem, last_error=problem)
        name, version = run.model.rsplit(":", 1)
        run = ctx.runs.advance(run.run_id, RunState.DEPLOYING, endpoint=s.endpoint,
                               deployment=deployment_name_for(name, version))
    if run.state == RunState.DEPLOYING:
        return progress(ctx, run, evaluate)
    return run


def instance_type_problem(ctx: Services, s: Settings) -> str | None:
    try:
        model_tags = fetch_base_model(ctx.ml.registry_for(s.registry), s).tags or {}
    except TuneflowError as exc:  # the base model may be archived by now: deploying is still fine
        log.info("could not read %s's inference_compute_allow_list (%s); not checking", s.base_model, exc)
        return None
    return inference_size_problem(model_tags, s.instance_type, s.base_model, "instance type")


def quota_problem(ctx: Services, s: Settings) -> str | None:
    """A deployment that cannot get its cores would time out provisioning: refuse it at once instead
    (checked once, before the run's deployment exists, so its own cores are never counted)."""
    from shared.azureml.quota import quota_problem as short_of

    short = short_of(ctx.ml.workspace, s.instance_type, s.instance_count)
    return f"not deployed: the deployment {short}" if short else None


def progress(ctx: Services, run: Run, evaluate: bool = False) -> Run:
    for _ in range(MAX_STEPS):
        if run.state != RunState.DEPLOYING:
            return run
        with span("deploy", run_id=run.run_id, endpoint=run.endpoint, deployment=run.deployment):
            advanced, run = _step(ctx, run, evaluate)
            annotate(outcome=run.state.value)
        if not advanced:
            return run
    return run


def _step(ctx: Services, run: Run, evaluate: bool) -> tuple[bool, Run]:
    """One step towards DEPLOYED; (True, run) when it is worth trying the next one right away."""
    control = ctx.control
    endpoint_name, deployment_name = str(run.endpoint), str(run.deployment)
    endpoint = control.endpoint(endpoint_name)
    if endpoint is None:
        return _wait(ctx, control.create_endpoint(endpoint_name, description="tuneflow chat endpoint",
                                                  tags=endpoint_tags(ctx, run))), run
    if provisioning_state(endpoint) == FAILED:
        return False, _failed(ctx, run, f"endpoint {endpoint_name} is in a failed state", delete=False)
    if provisioning_state(endpoint) != SUCCEEDED:
        return False, run
    deployment = control.deployment(endpoint_name, deployment_name)
    if deployment is None:
        return _wait(ctx, control.create_deployment(deployment_spec(ctx, run))), run
    if provisioning_state(deployment) == FAILED:
        return False, _failed(ctx, run, f"deployment {deployment_name} failed to provision")
    if provisioning_state(deployment) != SUCCEEDED:
        return False, run
    if traffic_of(endpoint).get(deployment_name, 0) != 100:
        if not _promoted(run):
            return _judge(ctx, run, endpoint, evaluate)
        s = settings_for(ctx.settings, run.config)
        serving = serving_deployment(endpoint, deployment_name)
        if s.rollout_strategy == rollout.CANARY and (serving or run.rollout):
            return rollout.canary(ctx, run, endpoint, str(serving), s)
        if s.rollout_strategy == rollout.MIRROR and (serving or run.rollout):
            return rollout.mirror(ctx, run, endpoint, str(serving), s)
        operation = control.set_traffic(endpoint, {deployment_name: 100})
        log.info("run %s: traffic on %s → %s", run.run_id, endpoint_name, deployment_name)
        return _wait(ctx, operation), run
    _retire_previous(ctx, run, endpoint_name, deployment_name)
    return False, ctx.runs.advance(run.run_id, RunState.DEPLOYED, note=f"{deployment_name} takes 100%")


def _promoted(run: Run) -> bool:
    return bool(run.evaluation and run.evaluation.get("verdict", {}).get("promote"))


def serving_deployment(endpoint: Mapping[str, Any], candidate: str) -> str | None:
    """The deployment taking most of the endpoint's traffic, other than ``candidate``."""
    others = [(weight, name) for name, weight in traffic_of(endpoint).items() if name != candidate and weight > 0]
    return max(others)[1] if others else None


def _judge(ctx: Services, run: Run, endpoint: Mapping[str, Any], evaluate: bool) -> tuple[bool, Run]:
    """Smoke test, then (gate on) one evaluation chunk; (True, run) once the candidate is promoted."""
    from shared.evaluation import runner

    s = settings_for(ctx.settings, run.config)
    started = runner.Evaluation(ctx.records, run.run_id).read()[0] if s.gate_enabled else None
    if started is None:
        reason = smoke_test(ctx, run)  # once: a deployment that cannot answer at all is not worth evaluating
        if reason:
            return False, _failed(ctx, run, f"smoke test failed: {reason}")
    if not s.gate_enabled:
        return True, ctx.runs.update(run.run_id, lambda r: _set_evaluation(r, {"verdict": {
            "promote": True, "rule": "disabled", "reason": "the gate is off: smoke test only"}}))
    serving = serving_deployment(endpoint, str(run.deployment))
    if not evaluate:  # an Event Grid delivery: the report is started, its chunks run from the work queue
        if not s.eval_compare_base:
            runner.begin(ctx, run, s, serving)
        ctx.work.send_json({"kind": DEPLOY, "run_id": run.run_id})
        return False, run
    base = (started or {}).get("deployments", {}).get(runner.BASE)
    if started is None and s.eval_compare_base:
        base = base_deployment.ensure(ctx, run, s)
        if base == base_deployment.WAITING:
            ctx.work.send_json({"kind": DEPLOY, "run_id": run.run_id}, delay_s=10)
            return False, run
    report = runner.advance(ctx, run, s, serving, base)
    if isinstance(report, str):
        if report == runner.MORE:
            ctx.work.send_json({"kind": DEPLOY, "run_id": run.run_id})  # the next chunk
        return False, run
    if base:
        base_deployment.drop(ctx, run)  # its answers are in the report: it costs an instance for nothing now
    unavailable = ((ctx.runs.get(run.run_id) or run).evaluation or {}).get("base_unavailable")
    summary = {**evaluation_summary(s, report), "training": training_losses(ctx, run),
               **({"base_unavailable": unavailable} if unavailable else {})}
    if summary["verdict"]["promote"]:
        log.info("run %s: promoted: %s", run.run_id, summary["verdict"]["reason"])
        return True, ctx.runs.update(run.run_id, lambda r: _set_evaluation(r, summary))
    return False, _gated(ctx, run, summary)


def evaluation_summary(s: Settings, report: dict[str, Any]) -> dict[str, Any]:
    """What the run record keeps of its evaluation: the scores, the verdict and a few answers."""
    from shared.evaluation import decide, runner

    scores = runner.scores_of(report)
    verdict = decide(s, scores[runner.CANDIDATE], scores.get(runner.SERVING))
    outcomes = report["outcomes"]
    samples = []
    for example in report["examples"][:3]:
        key = str(example["index"])
        samples.append({"prompt": example["prompt"][-1]["content"][:300], "reference": example["reference"][:300],
                        **{role: (done.get(key) or {}).get("answer") for role, done in outcomes.items()}})
    return {"report": runner.report_key(report["run_id"]), "examples": len(report["examples"]),
            "deployments": report["deployments"], "scores": report["scores"], "verdict": verdict.to_dict(),
            "samples": samples, "finished_at": report.get("finished_at")}


def training_losses(ctx: Services, run: Run) -> dict[str, float]:
    """The job's own final losses, as registration tagged them on the model (``metrics.*``)."""
    from shared.azureml.sdk import azure_errors

    name, version = str(run.model).rsplit(":", 1)
    try:
        with azure_errors(f"reading model {run.model}"):
            model_tags = ctx.ml.workspace.models.get(name, version=version).tags or {}
    except Exception as exc:  # the comparison stands without them
        log.info("run %s: no training metrics for the evaluation (%s)", run.run_id, exc)
        return {}
    found = {}
    for key in ("train_loss", "eval_loss", "base_eval_loss", "train_steps", "stopped_early_at_step", "best_step"):
        try:
            found[key] = float(model_tags[f"metrics.{key}"])
        except (KeyError, TypeError, ValueError):
            continue
    return found


def _set_evaluation(run: Run, summary: dict[str, Any]) -> bool:
    if run.evaluation == summary:
        return False
    run.evaluation = summary
    return True


def _gated(ctx: Services, run: Run, summary: dict[str, Any]) -> Run:
    """Not promoted: the candidate goes; what serves keeps all of its traffic (it never lost any)."""
    try:
        ctx.control.delete_deployment(str(run.endpoint), str(run.deployment))
    except Exception as exc:  # best effort: it takes no traffic either way, and teardown finds it
        log.warning("run %s: could not delete %s: %s", run.run_id, run.deployment, exc)
    reason = str(summary["verdict"]["reason"])
    log.warning("run %s: gated: %s", run.run_id, reason)
    return ctx.runs.advance(run.run_id, RunState.GATED, note=reason, evaluation=summary, last_error=reason)


def endpoint_tags(ctx: Services, run: Run) -> dict[str, str]:
    """tuneflow's mark on endpoints it manages, and the idle-teardown minutes the run's manifest chose for it."""
    found = {"tuneflow": "true"}
    minutes = run.config.get("idle_teardown_minutes")
    if isinstance(minutes, int | float) and minutes != ctx.settings.idle_teardown_minutes:
        found[tags.IDLE_MINUTES] = f"{minutes:g}"
    return found


def _wait(ctx: Services, operation: Operation | None) -> bool:
    """Wait a bounded time for a long-running operation; True when it finished (the outcome is read
    from live state on the next step, whatever it was)."""
    try:
        ctx.control.wait(operation, WAIT_S)
    except TuneflowError as exc:
        log.info("long-running operation not followed to its end: %s", exc)
        return False
    return True


def deployment_spec(ctx: Services, run: Run) -> DeploymentSpec:
    s = settings_for(ctx.settings, run.config)
    name, version = str(run.model).rsplit(":", 1)
    return DeploymentSpec(
        endpoint=str(run.endpoint), name=str(run.deployment), model_id=ctx.control.model_id(name, version),
        instance_type=s.instance_type, instance_count=s.instance_count, request_timeout_ms=s.request_timeout_ms,
        liveness_initial_delay_s=s.liveness_initial_delay, tags={tags.RUN_ID: run.run_id, tags.MODEL: str(run.model)})


def smoke_request(sample: bytes | None) -> dict[str, Any]:
    """An Azure ML chat request from one test-split row: the conversation up to its last user turn."""
    messages = [{"role": "user", "content": "Say hello."}]
    try:
        row = orjson.loads(sample) if sample else {}
    except orjson.JSONDecodeError:  # a row longer than the sample read: use the default prompt
        row = {}
    if isinstance(row, dict):
        turns = [m for m in row.get("messages", []) if isinstance(m, dict)]
        while turns and turns[-1].get("role") == "assistant":
            turns.pop()
        if turns:
            messages = [{"role": m["role"], "content": m["content"]} for m in turns]
    return {"input_data": {"input_string": messages, "parameters": {"max_new_tokens": 32, "do_sample": False}}}


def smoke_test(ctx: Services, run: Run) -> str | None:
    """Score one sample through the new deployment only; None when it answered with text."""
    from shared.scoring.normalise import normalise

    body = smoke_request(ctx.read_test_sample(run.test_path) if run.test_path else None)
    try:
        answer = ctx.control.invoke(str(run.endpoint), str(run.deployment), orjson.dumps(body), SMOKE_TIMEOUT_S)
        text = normalise(answer).text
    except Exception as exc:  # whatever went wrong, the deployment did not answer
        return str(exc)[:300]
    if not text.strip():
        return "the deployment returned an empty answer"
    return None


def _failed(ctx: Services, run: Run, reason: str, delete: bool = True) -> Run:
    """Roll back: the broken deployment goes, the previous one keeps all traffic."""
    if delete:
        try:
            ctx.control.delete_deployment(str(run.endpoint), str(run.deployment))
        except Exception as exc:  # best effort: the deployment takes no traffic either way
            log.warning("run %s: could not delete %s: %s", run.run_id, run.deployment, exc)
    log.error("run %s: deployment failed: %s", run.run_id, reason)
    return ctx.runs.advance(run.run_id, RunState.DEPLOY_FAILED, note=reason, last_error=reason)


def _retire_previous(ctx: Services, run: Run, endpoint_name: str, keep: str) -> None:
    for other in ctx.control.deployments(endpoint_name):
        name = str(other.get("name"))
        if name != keep:
            log.info("deleting previous deployment %s from %s", name, endpoint_name)
            ctx.control.delete_deployment(endpoint_name, name)
    for previous in ctx.runs.list([RunState.DEPLOYED]):
        if previous.run_id != run.run_id and previous.endpoint == endpoint_name and previous.state == RunState.DEPLOYED:
            ctx.runs.advance(previous.run_id, RunState.RETIRED, note=f"replaced by {keep}")
