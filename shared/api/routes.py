"""The HTTP API's routes as plain functions: ``(Request, Services) -> Response``.

``functions/api.py`` only converts ``func.HttpRequest``/``func.HttpResponse``; everything else is here,
testable without the Functions runtime. Scoring routes are ``async`` (they wait on the network and
must not hold one of the worker's few threads); management routes are plain functions that the
host runs on its thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from shared.api.http import Request, Response, http_answer, json_response
from shared.api.streaming import live_chunks, sse_response
from shared.api.validation import chat_call, is_name, parse_json, score_call
from shared.errors import ApiError, InputError, ScoringError, TransientError
from shared.integers import parse_int
from shared.runs import Run, RunEntry, RunState
from shared.scoring import models as catalog
from shared.scoring.models import ModelEntry
from shared.scoring.resolve import EndpointInfo
from shared.scoring.stream import open_stream
from shared.services import Services, services
from shared.webhooks import ssrf
from shared.webhooks.jobs import ScoreJob, is_job_id

log = logging.getLogger(__name__)
T = TypeVar("T")
Handler = Callable[[Request, Services], Response]
AsyncHandler = Callable[[Request, Services], Awaitable[Response]]


def route(fn: Handler) -> Callable[[Request, Services | None], Response]:
    @functools.wraps(fn)
    def wrapper(request: Request, ctx: Services | None = None) -> Response:
        try:
            response = fn(request, ctx or services())
        except Exception as exc:
            response = http_answer(exc)
        return _with_request_id(request, response)

    return wrapper


def async_route(fn: AsyncHandler) -> Callable[[Request, Services | None], Coroutine[Any, Any, Response]]:
    @functools.wraps(fn)
    async def wrapper(request: Request, ctx: Services | None = None) -> Response:
        try:
            response = await fn(request, ctx or services())
        except Exception as exc:
            response = http_answer(exc)
        return _with_request_id(request, response)

    return wrapper


_REQUEST_ID = re.compile(r"[!-~]{1,128}")


def _with_request_id(request: Request, response: Response) -> Response:
    """Every answer names its request (OpenAI's ``x-request-id``): the caller's id when it sent a sane one."""
    given = request.header("x-request-id") or ""
    response.headers.setdefault("x-request-id", given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex)
    return response


def _prefix(request: Request, first_segment: str) -> str:
    """The URL path up to the route (``/api``), whatever the host's routePrefix is."""
    path = urlsplit(request.url).path
    at = path.find(f"/{first_segment}")
    return path[:at] if at >= 0 else "/api"


def _name(value: str | None, what: str) -> str:
    if not value or not is_name(value):
        raise ApiError(400, f"{what} must be 3-32 letters, digits and dashes, starting with a letter "
                       f"(got {value!r})", code="invalid_name", param=what)
    return value


# ------------------------------------------------------------------------------------------ scoring


@async_route
async def score(request: Request, ctx: Services) -> Response:
    s = ctx.settings
    data = parse_json(request.body, s.max_request_kb * 1024, request.header("content-length"))
    call = score_call(request.body, data)
    if call.callback_url is not None:
        return await _submit(request, ctx, call.payload, call.callback_url, call.deployment)
    result = await ctx.scorer.score(s.endpoint, call.payload, call.deployment)
    ctx.activity.touch(s.endpoint)
    body = result.to_dict()
    if result.usage:
        body["usage"] = result.usage
    return json_response(200, body)


async def _submit(request: Request, ctx: Services, payload: bytes, callback_url: str,
                  deployment: str | None) -> Response:
    s = ctx.settings
    if not s.webhook_secret:
        raise ApiError(501, "callback_url is not accepted here: webhook callbacks are not configured "
                       "(TUNEFLOW_WEBHOOK_SECRET)", code="webhooks_disabled", param="callback_url")
    await asyncio.to_thread(ssrf.check, callback_url, allow_http=s.webhook_allow_http,
                            allow_private=s.webhook_allow_private, resolver=ctx.dns)
    job = ScoreJob.new(s.endpoint, payload, callback_url, deployment)
    await asyncio.to_thread(ctx.jobs.create, job)
    try:
        await asyncio.to_thread(ctx.queue.send, job.id)
    except Exception as exc:
        log.warning("score job %s could not be queued: %s", job.id, type(exc).__name__)
        await asyncio.to_thread(ctx.jobs.delete, job.id)
        raise TransientError("the scoring job could not be queued; try again") from None
    location = f"{_prefix(request, 'score')}/score/{job.id}"
    log.info("score job %s queued", job.id)
    return json_response(202, {"id": job.id, "status": "queued", "status_url": location}, {"Location": location})


@route
def score_status(request: Request, ctx: Services) -> Response:
    job_id = request.route_params.get("id", "")
    job = ctx.jobs.get(job_id) if is_job_id(job_id) else None
    if job is None:
        raise ApiError(404, f"no scoring job {job_id!r}", code="job_not_found", param="id")
    return json_response(200, job.public())


@async_route
async def chat_completions(request: Request, ctx: Services) -> Response:
    s = ctx.settings
    call = chat_call(parse_json(request.body, s.max_request_kb * 1024, request.header("content-length")))
    entry = await _model_entry(ctx, call.model)
    if call.stream:
        streamed = await open_stream(ctx.scorer, ctx.sender.get, entry.endpoint, call.payload,
                                     entry.deployment, timeout_s=s.scoring_timeout_s, retries=s.scoring_retries)
        ctx.activity.touch(entry.endpoint)
        headers = {"x-tuneflow-deployment": streamed.deployment} if streamed.deployment else {}
        counter = ctx.tokens if call.include_usage else None
        if counter is not None:
            headers["x-tuneflow-usage"] = "tokenizer"  # a streaming deployment reports no usage
        count = (lambda text: counter.usage(call.messages, text)) if counter is not None else None
        return sse_response(live_chunks(streamed.model or call.model, streamed.pieces, call.stop,
                                        include_usage=call.include_usage, count=count), headers)
    result = await ctx.scorer.score(entry.endpoint, call.payload, entry.deployment)
    ctx.activity.touch(entry.endpoint)
    text, finish = _cut_at_stop(result.output, call.stop)
    model = result.model or call.model
    headers = {"x-tuneflow-deployment": result.deployment} if result.deployment else {}
    body: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish, "logprobs": None}],
    }
    usage, source = _usage(ctx, call.messages, text, result.usage)
    if usage is not None:  # what the deployment counted, or a count with the model's tokenizer: never a guess
        body["usage"] = usage
        headers["x-tuneflow-usage"] = source
    return json_response(200, body, headers)


def _usage(ctx: Services, messages: tuple[dict[str, Any], ...], text: str,
           reported: dict[str, int] | None) -> tuple[dict[str, int] | None, str]:
    if reported:
        return reported, "deployment"
    counter = ctx.tokens
    return (counter.usage(messages, text), "tokenizer") if counter is not None else (None, "")


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, str]:
    """OpenAI's ``stop``, honoured here: the answer ends before the first stop sequence."""
    cuts = [i for i in (text.find(seq) for seq in stop) if i >= 0]
    return (text[:min(cuts)], "stop") if cuts else (text, "stop")


async def _model_entry(ctx: Services, model: str) -> ModelEntry:
    """Where ``model`` is served: the configured endpoint first (cached), then the other managed endpoints."""
    configured = ctx.settings.endpoint
    info = await _info(ctx, configured)
    if info is not None:
        found = catalog.match(info, model, default=True)
        if found is None:  # perhaps deployed after the cache was filled (looked up again at most every few s)
            info = await ctx.scorer.refreshed(configured, info)
            found = catalog.match(info, model, default=True)
        if found is not None:
            return found
    infos = [i for i in [info, *[await _info(ctx, n) for n in await _others(ctx)]] if i is not None]
    for other in infos[1:] if info is not None else infos:
        found = catalog.match(other, model)
        if found is not None:
            return found
    known = ", ".join(e.id for e in catalog.listed(infos)) or "none: nothing is deployed"
    raise ApiError(404, f"The model {model!r} does not exist; available models: {known}", code="model_not_found",
                   param="model")


async def _info(ctx: Services, endpoint: str) -> EndpointInfo | None:
    """The endpoint's resolved details, or None when it does not exist."""
    try:
        return await ctx.scorer.endpoint(endpoint)
    except ScoringError as exc:
        if exc.status == 404:
            return None
        raise


async def _others(ctx: Services) -> list[str]:
    names = await asyncio.to_thread(ctx.teardown.tuneflow_endpoints, ctx.settings.endpoint)
    return [n for n in names if n != ctx.settings.endpoint]


@async_route
async def list_models(request: Request, ctx: Services) -> Response:
    infos = [i for i in [await _info(ctx, ctx.settings.endpoint), *[await _info(ctx, n) for n in await _others(ctx)]]
             if i is not None]
    return json_response(200, {"object": "list", "data": [e.public() for e in catalog.listed(infos)]})


@async_route
async def get_model(request: Request, ctx: Services) -> Response:
    model = request.route_params.get("id", "")
    entry = await _model_entry(ctx, model)
    listed = {e.id: e for e in catalog.listed([i for i in [await _info(ctx, entry.endpoint)] if i is not None])}
    return json_response(200, (listed.get(entry.id) or entry).public())


# ------------------------------------------------------------------------------------------ runs, health


def _brief(entry: RunEntry) -> dict[str, Any]:
    return {"run_id": entry.run_id, "state": entry.state.value, "dataset": entry.dataset,
            "base_model": entry.base_model, "model": entry.model, "endpoint": entry.endpoint,
            "deployment": entry.deployment, "job_name": entry.job_name, "studio_url": entry.studio_url,
            "last_error": entry.last_error, "created_at": entry.created_at, "updated_at": entry.updated_at}


@route
def list_runs(request: Request, ctx: Services) -> Response:
    """A page of runs, newest first, from the listing's metadata alone (no run record is read)."""
    wanted: set[RunState] | None = None
    if request.params.get("state"):
        try:
            wanted = {RunState(v.strip().upper()) for v in request.params["state"].split(",") if v.strip()}
        except ValueError:
            raise ApiError(400, "state must be one or more of " + ", ".join(s.value for s in RunState),
                           code="invalid_value", param="state") from None
    try:
        limit = parse_int(request.params.get("limit", "100"), "limit", lo=1, hi=1000)
    except ValueError as exc:
        raise ApiError(400, str(exc), code="invalid_value", param="limit") from None
    search = request.params.get("q", "").strip().casefold()
    if len(search) > 256:
        raise ApiError(400, "q (a part of the dataset's name) must be at most 256 characters",
                       code="invalid_value", param="q")

    def keep(entry: RunEntry) -> bool:
        return (wanted is None or entry.state in wanted) and search in entry.dataset.casefold()

    filtered = wanted is not None or bool(search)
    try:
        entries, following = ctx.runs.timeline(limit, request.params.get("cursor") or None,
                                               keep if filtered else None)
    except InputError as exc:
        raise ApiError(400, f"cursor: {exc.message} (pass next_cursor as it came)", code="invalid_value",
                       param="cursor") from None
    return json_response(200, {"runs": [_brief(e) for e in entries], "count": len(entries),
                               "next_cursor": following})


def _run_of(request: Request, ctx: Services) -> Run:
    """The run the route's ``{id}`` names; 404 when there is none (or the id cannot be one)."""
    run_id = request.route_params.get("id", "")
    run = ctx.runs.find(run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id!r}", code="run_not_found", param="id")
    return run


@route
def get_run(request: Request, ctx: Services) -> Response:
    return json_response(200, _run_of(request, ctx).summary_dict())


@route
def run_metrics(request: Request, ctx: Services) -> Response:
    """The run's training metrics, every step, read from its job as Azure ML exposes them (MLflow)."""
    from shared.lifecycle import progress

    run = _run_of(request, ctx)
    if not run.job_name:
        raise ApiError(409, f"run {run.run_id} has no training job ({run.state}): no metrics to show",
                       code="no_training_job", param="id")
    found = progress.series(ctx.control, run.job_name)
    return json_response(200, {"run_id": run.run_id, "job_name": run.job_name, "state": run.state.value,
                               "progress": progress.summary(found), "series": found})


@route
def run_report(request: Request, ctx: Services) -> Response:
    """The run's validation report as ingest stored it (errors by code with examples, warnings, files)."""
    run = _run_of(request, ctx)
    record = ctx.records.read(run.report_path) if run.report_path else None
    if record is None:
        raise ApiError(404, f"run {run.run_id} has no validation report ({run.state})", code="report_not_found",
                       param="id")
    return Response(200, record.data, {"Content-Type": "application/json"})


@route
def run_events(request: Request, ctx: Services) -> Response:
    """The CloudEvents the run's transitions make (one per state it entered), and whether each reached the
    topic: ``sent``, ``queued`` (waiting in the outbox for a retry) or ``off`` (no topic configured)."""
    from shared.notify import event_type

    run = _run_of(request, ctx)
    notifier = ctx.notifier
    queued = notifier.queued(run.run_id) if notifier.enabled else set()
    events = [{"id": f"{run.run_id}-{i:04d}", "type": event_type(t.state.value), "time": t.at, "note": t.note,
               "delivery": "off" if not notifier.enabled else "queued" if i in queued else "sent"}
              for i, t in enumerate(run.history)]
    return json_response(200, {"run_id": run.run_id, "events": events, "topic": notifier.enabled,
                               "webhook": bool(run.notify_url)})


@route
def cancel_run(request: Request, ctx: Services) -> Response:
    from shared.lifecycle.cancel import cancel_run as cancel

    authorize_teardown(request, ctx)  # the same keys as teardown: a scoring key cannot stop training
    run, requested = cancel(ctx, request.route_params.get("id", ""))
    body = {**run.summary_dict(), "job_cancel_requested": requested}
    return json_response(202 if requested else 200, body,
                         {"Location": f"{_prefix(request, 'runs')}/runs/{run.run_id}"})


@route
def health(request: Request, ctx: Services) -> Response:
    s = ctx.settings
    checks: dict[str, Any] = {}
    healthy = True
    try:
        ctx.records.read("health/probe.json")
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"unavailable ({type(exc).__name__})"
        healthy = False
    checks["azureml"] = "configured" if s.azureml_configured else "not configured"
    healthy = healthy and s.azureml_configured
    info = ctx.cache.peek(s.endpoint)
    checks["endpoint"] = {"name": s.endpoint, "resolved": info is not None,
                          "deployments": sorted(info.models) if info else None}
    checks["webhooks"] = "enabled" if s.webhook_secret else "disabled"
    checks["idle_teardown_minutes"] = s.idle_teardown_minutes
    return json_response(200 if healthy else 503, {"status": "ok" if healthy else "degraded", "checks": checks})


# ------------------------------------------------------------------------------------------ teardown


def authorize_teardown(request: Request, ctx: Services) -> None:
    """With TUNEFLOW_TEARDOWN_KEY set the host lets the call through and tuneflow checks that key;
    without it the teardown functions are admin-level and the host has checked the master key."""
    expected = ctx.settings.teardown_key
    if not expected:
        return
    presented = (request.header("x-tuneflow-teardown-key") or request.header("x-functions-key")
                 or request.params.get("code"))
    if not presented:
        raise ApiError(401, "teardown needs the teardown key (x-tuneflow-teardown-key header)", code="unauthorized")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise ApiError(401, "this key does not allow teardown", code="unauthorized")


@route
def teardown_endpoint(request: Request, ctx: Services) -> Response:
    authorize_teardown(request, ctx)
    name = _name(request.route_params.get("name"), "name")
    outcome = ctx.teardown.endpoint(name, note=f"teardown requested: DELETE /endpoints/{name}")
    location = f"{_prefix(request, 'endpoints')}/endpoints/{name}/status"
    return json_response(202, {**outcome, "status_url": location}, {"Location": location})


@route
def teardown_deployment(request: Request, ctx: Services) -> Response:
    authorize_teardown(request, ctx)
    name = _name(request.route_params.get("name"), "name")
    deployment = _name(request.route_params.get("deployment"), "deployment")
    outcome = ctx.teardown.deployment(name, deployment,
                                      note=f"teardown requested: DELETE /endpoints/{name}/deployments/{deployment}")
    location = f"{_prefix(request, 'endpoints')}/endpoints/{name}/deployments/{deployment}/status"
    return json_response(202, {**outcome, "status_url": location}, {"Location": location})


@route
def endpoint_status(request: Request, ctx: Services) -> Response:
    name = _name(request.route_params.get("name"), "name")
    return json_response(200, ctx.teardown.endpoint_status(name))


@route
def list_endpoints(request: Request, ctx: Services) -> Response:
    """Every endpoint tuneflow manages: its deployments, traffic, models, last scoring call, idle deadline."""
    from shared.endpoints.idle import idle_deadline, idle_minutes, last_deployed

    items = []
    for name in ctx.teardown.tuneflow_endpoints(ctx.settings.endpoint):
        status = ctx.teardown.endpoint_status(name)
        if not status["exists"]:
            continue
        record = ctx.activity.peek(name)
        minutes, _ = idle_minutes(ctx.settings, status)
        deadline = idle_deadline(minutes, record, last_deployed(ctx.runs, name))
        items.append({**status, "last_scored": _iso(record.last_scored if record else None),
                      "idle_teardown_minutes": minutes, "idle_teardown_at": _iso(deadline)})
    return json_response(200, {"endpoints": items, "count": len(items)})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


@route
def deployment_status(request: Request, ctx: Services) -> Response:
    name = _name(request.route_params.get("name"), "name")
    deployment = _name(request.route_params.get("deployment"), "deployment")
    return json_response(200, ctx.teardown.deployment_status(name, deployment))
