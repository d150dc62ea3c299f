"""The HTTP routes as plain functions, on fakes: scoring, OpenAI chat, webhook jobs, runs, teardown, health."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import orjson
import pytest

from shared.api import routes
from shared.api.http import Request, Response
from shared.handlers import on_score_job
from shared.records import MemoryRecordStore
from shared.runs import Run, RunState, RunStore
from shared.scoring.pool import HttpPool, PerLoop
from shared.scoring.usage import TokenCounter
from shared.services import Services
from shared.settings import Settings
from shared.webhooks.signing import verify
from tests.support.fake_endpoints import FakeOnlineEndpoints, control_plane
from tests.support.fake_scoring import FakeResolver, HttpxSender, Upstream
from tests.support.tokenizer import build_tokenizer_dir

SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLXR1bmVmbG93"
CHAT = {"messages": [{"role": "user", "content": "Capital of Peru?"}]}
BASE = "https://tuneflow.azurewebsites.net/api"


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, float]] = []

    def send(self, job_id: str, attempt: int = 1, delay_s: float = 0) -> None:
        self.sent.append((job_id, attempt, delay_s))


class Receiver:
    """A webhook receiver: verifies each delivery; answers from a script (default 204)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.deliveries: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        verify(SECRET, dict(request.headers), request.content)
        self.deliveries.append(request)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 204)


def make(env: dict[str, str] | None = None) -> Any:
    settings = Settings.from_env({"TUNEFLOW_STORAGE_CONNECTION": "UseDevelopmentStorage=true",
                                  "TUNEFLOW_EMULATOR_CONNECTION": "/nowhere/connection.json",
                                  "TUNEFLOW_WEBHOOK_SECRET": SECRET, "TUNEFLOW_MAX_REQUEST_KB": "4",
                                  "TUNEFLOW_WEBHOOK_BACKOFF_S": "2", "TUNEFLOW_WEBHOOK_ATTEMPTS": "3",
                                  **(env or {})})
    records = MemoryRecordStore()
    runs = RunStore(MemoryRecordStore())
    resolver = FakeResolver(models={"v1a2b-r1": "chat-ft:r1", "v9f8e-r2": "chat-ft:r2"})
    upstream = Upstream(resolver)
    receiver = Receiver()
    arm = FakeOnlineEndpoints()
    queue = FakeQueue()
    dns = {"hooks.example.com": ["93.184.215.14"], "intranet.example.com": ["10.0.0.8"]}

    ctx = Services(settings, records=records, runs=runs, resolver=resolver, control=control_plane(arm),
                   sender=PerLoop(lambda: HttpxSender(httpx.AsyncClient(transport=httpx.MockTransport(upstream)))),
                   webhook_pool=HttpPool(lambda: httpx.AsyncClient(transport=httpx.MockTransport(receiver))),
                   dns=lambda host, port: dns[host], queue=cast(Any, queue))
    return SimpleNamespace(api=ctx, records=records, runs=runs, resolver=resolver, upstream=upstream,
                           receiver=receiver, arm=arm, queue=queue)


def post(path: str, body: Any, **headers: str) -> Request:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Request("POST", f"{BASE}/{path}", {k.lower(): v for k, v in headers.items()}, {}, {}, raw)


def get(path: str, route_params: dict[str, str] | None = None, params: dict[str, str] | None = None) -> Request:
    return Request("GET", f"{BASE}/{path}", {}, params or {}, route_params or {}, b"")


def score(w: Any, body: Any, **headers: str) -> Response:
    return asyncio.run(routes.score(post("score", body, **headers), w.api))


def error_of(response: Response) -> Any:
    return response.json()["error"]


# ------------------------------------------------------------------------------------------ /score


def test_score_answers_output_model_and_deployment():
    w = make()
    w.upstream.script = [lambda r: httpx.Response(200, json={"output": "Lima."},
                                                  headers={"azureml-model-deployment": "v9f8e-r2"})]
    response = score(w, CHAT)
    assert response.status == 200
    assert response.json() == {"output": "Lima.", "model": "chat-ft:r2", "deployment": "v9f8e-r2"}


def test_score_errors_say_what_and_where():
    w = make()
    bad = score(w, b'{"messages": [{"role": "user", "content": "x"},]}')
    assert bad.status == 400 and error_of(bad)["code"] == "invalid_json" and "column" in error_of(bad)["message"]
    wrong = score(w, {"messages": [{"role": "user", "content": ["not text"]}]})
    assert wrong.status == 400 and error_of(wrong)["param"] == "messages[0].content[0]"
    big = score(w, {"messages": [{"role": "user", "content": "x" * 5000}]})
    assert big.status == 413 and error_of(big)["code"] == "body_too_large"
    declared = score(w, CHAT, **{"Content-Length": "10000000"})
    assert declared.status == 413
    assert w.upstream.requests == []  # nothing bad reached the endpoint


def test_score_without_an_endpoint_is_404():
    w = make()
    w.resolver.missing = True
    response = score(w, CHAT)
    assert response.status == 404 and error_of(response)["code"] == "endpoint_not_found"


def test_endpoint_busy_is_passed_on_with_retry_after():
    w = make({"TUNEFLOW_SCORING_RETRIES": "0"})
    w.upstream.script = [lambda r: httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow"})]
    response = score(w, CHAT)
    assert response.status == 429 and response.headers["Retry-After"] == "7"


def test_scoring_records_activity_for_idle_teardown():
    w = make()
    assert score(w, CHAT).status == 200
    w.api.activity.flush()
    assert w.api.activity.get("tuneflow-chat").last_scored is not None


def test_no_key_in_logs_or_answers_of_a_failing_call(caplog):
    w = make()
    secret = w.resolver.key = "Scoring-Key-That-Must-Not-Leak-42"
    w.upstream.script = [lambda r: httpx.Response(500, text=f"internal error; key was {secret}")]
    caplog.set_level(logging.DEBUG)
    response = score(w, CHAT)
    assert response.status == 502
    assert secret not in response.body.decode() and secret not in caplog.text


# ------------------------------------------------------------------------------------------ OpenAI


def chat(w: Any, body: Any) -> Response:
    return asyncio.run(routes.chat_completions(post("v1/chat/completions", body), w.api))


@pytest.mark.parametrize(("model", "pinned"), [
    ("v9f8e-r2", "v9f8e-r2"), ("chat-ft:r1", "v1a2b-r1"), ("tuneflow-chat", None), ("chat-ft", None),
    ("tuneflow", None),
])
def test_openai_model_selects_a_deployment_or_the_traffic_split(model, pinned):
    w = make()
    response = chat(w, {"model": model, **CHAT, "max_tokens": 20})
    assert response.status == 200
    assert w.upstream.requests[-1].headers.get("azureml-model-deployment") == pinned
    body = response.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"] == {
        "role": "assistant", "content": "hello there"}
    assert body["choices"][0]["finish_reason"] == "stop" and body["id"].startswith("chatcmpl-")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tokenizer_dir(tmp_path_factory.mktemp("tokenizer"))


def test_usage_is_omitted_unless_counted_with_the_models_tokenizer(tokenizer_dir: Path) -> None:
    plain = chat(make(), {"model": "tuneflow-chat", **CHAT})
    assert "usage" not in plain.json() and "x-tuneflow-usage" not in plain.headers  # nobody counted: no guess
    counted = chat(make({"TUNEFLOW_TOKENIZER_DIR": str(tokenizer_dir)}), {"model": "tuneflow-chat", **CHAT})
    usage = counted.json()["usage"]
    assert counted.headers["x-tuneflow-usage"] == "tokenizer"
    expected = TokenCounter(tokenizer_dir).usage(CHAT["messages"], "hello there")
    assert usage == expected and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0


def test_usage_the_deployment_reports_is_passed_on_as_its_own(tokenizer_dir: Path) -> None:
    w = make({"TUNEFLOW_TOKENIZER_DIR": str(tokenizer_dir)})
    reported = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    w.upstream.script = [lambda r: httpx.Response(200, json={"choices": [{"message": {"content": "Lima."}}],
                                                             "usage": reported})]
    response = chat(w, {"model": "tuneflow-chat", **CHAT})
    assert response.json()["usage"] == reported and response.headers["x-tuneflow-usage"] == "deployment"


def test_streamed_usage_is_counted_over_the_whole_answer(tokenizer_dir: Path) -> None:
    w = make({"TUNEFLOW_TOKENIZER_DIR": str(tokenizer_dir)})
    body = {"model": "tuneflow-chat", **CHAT, "stream": True, "stream_options": {"include_usage": True}}

    async def events() -> tuple[Response, list[Any]]:
        response = await routes.chat_completions(post("v1/chat/completions", body), w.api)
        assert response.stream is not None
        raw = b"".join([piece async for piece in response.stream])
        return response, [orjson.loads(line[6:]) for line in raw.split(b"\n\n") if line.startswith(b"data: {")]

    response, chunks = asyncio.run(events())
    assert response.headers["x-tuneflow-usage"] == "tokenizer"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert chunks[-1]["usage"] == TokenCounter(tokenizer_dir).usage(CHAT["messages"], text)


def test_openai_unknown_model_is_404_listing_what_exists():
    w = make()
    response = chat(w, {"model": "gpt-4o", **CHAT})
    assert response.status == 404 and error_of(response)["code"] == "model_not_found"
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and error["param"] == "model"  # OpenAI's shape
    assert "chat-ft:r2" in error["message"] and "tuneflow-chat" in error["message"] and w.upstream.requests == []
    for _ in range(20):  # unknown models do not each cost a control-plane lookup
        assert chat(w, {"model": "gpt-4o", **CHAT}).status == 404
    assert w.resolver.calls == 2  # the first resolution, and one look for a newer deployment


def test_openai_model_deployed_after_the_cache_was_filled_is_found():
    w = make()
    assert chat(w, {"model": "v9f8e-r2", **CHAT}).status == 200
    w.resolver.models["v7c6d-r3"] = "chat-ft:r3"
    response = chat(w, {"model": "chat-ft:r3", **CHAT})
    assert response.status == 200 and w.upstream.requests[-1].headers["azureml-model-deployment"] == "v7c6d-r3"


# ------------------------------------------------------------------------------------------ webhooks


def test_callback_needs_a_secret():
    w = make({"TUNEFLOW_WEBHOOK_SECRET": ""})
    response = score(w, {**CHAT, "callback_url": "https://hooks.example.com/in"})
    assert response.status == 501 and error_of(response)["code"] == "webhooks_disabled"


@pytest.mark.parametrize("url", ["http://hooks.example.com/in", "https://127.0.0.1/in",
                                 "https://169.254.169.254/latest", "https://intranet.example.com/in"])
def test_unsafe_callbacks_are_refused(url):
    w = make()
    response = score(w, {**CHAT, "callback_url": url})
    assert response.status == 400 and error_of(response)["code"] == "callback_refused"
    assert error_of(response)["param"] == "callback_url" and w.queue.sent == []


def submit(w: Any) -> str:
    response = score(w, {**CHAT, "callback_url": "https://hooks.example.com/in?t=abc"})
    assert response.status == 202
    job_id: str = response.json()["id"]
    assert response.headers["Location"] == f"/api/score/{job_id}" == response.json()["status_url"]
    assert w.queue.sent == [(job_id, 1, 0)]
    return job_id


def status(w: Any, job_id: str) -> Response:
    return routes.score_status(get(f"score/{job_id}", {"id": job_id}), w.api)


def test_webhook_job_is_scored_then_delivered_signed():
    w = make()
    job_id = submit(w)
    assert status(w, job_id).json()["status"] == "queued"
    assert asyncio.run(on_score_job(orjson.dumps({"id": job_id, "attempt": 1}).decode(), w.api)) == "delivered"
    (delivery,) = w.receiver.deliveries
    assert str(delivery.url) == "https://93.184.215.14/in?t=abc"  # the checked address itself
    assert delivery.headers["host"] == "hooks.example.com" and delivery.extensions["sni_hostname"] == "hooks.example.com"
    assert delivery.headers["webhook-id"] == job_id
    event = orjson.loads(delivery.content)
    assert event["type"] == "score.succeeded" and event["data"]["output"] == "hello there"
    shown = status(w, job_id).json()
    assert shown["status"] == "succeeded" and shown["result"]["output"] == "hello there"
    assert shown["delivery"]["state"] == "delivered" and shown["callback_url"] == "https://hooks.example.com/in"


def test_failed_delivery_is_retried_with_backoff_then_given_up():
    w = make()
    job_id = submit(w)
    w.receiver.statuses = [500, 503, 500]
    for attempt in (1, 2, 3):
        asyncio.run(on_score_job(orjson.dumps({"id": job_id, "attempt": attempt}).decode(), w.api))
    assert [s[1:] for s in w.queue.sent] == [(1, 0), (2, 2.0), (3, 4.0)]  # backoff doubles
    assert len(w.upstream.requests) == 1  # scored once, delivered three times
    ids = {d.headers["webhook-id"] for d in w.receiver.deliveries}
    assert ids == {job_id}
    delivery = status(w, job_id).json()["delivery"]
    assert delivery["state"] == "failed" and delivery["attempts"] == 3 and delivery["last_status"] == 500


def test_redelivered_messages_do_not_repeat_an_attempt():
    w = make()
    job_id = submit(w)
    w.receiver.statuses = [500]
    message = orjson.dumps({"id": job_id, "attempt": 1}).decode()
    assert asyncio.run(on_score_job(message, w.api)) == "retrying"
    assert asyncio.run(on_score_job(message, w.api)) == "duplicate"
    assert len(w.receiver.deliveries) == 1


def test_scoring_failure_is_delivered_as_score_failed():
    w = make()
    job_id = submit(w)
    w.upstream.script = [lambda r: httpx.Response(400, json={"message": "bad input"})]
    asyncio.run(on_score_job(orjson.dumps({"id": job_id}).decode(), w.api))
    event = orjson.loads(w.receiver.deliveries[0].content)
    assert event["type"] == "score.failed" and event["data"]["error"]["status"] == 400


def test_unknown_job_is_404():
    w = make()
    assert status(w, "0" * 32).status == 404 and status(w, "../etc").status == 404


# ------------------------------------------------------------------------------------------ runs, health


def add_run(w: Any, run_id: str, state: RunState, **fields: Any) -> None:
    w.runs.create(Run(run_id, state, "d.jsonl", ["d.jsonl"], "Phi-3", **fields))


def test_runs_list_filter_and_detail():
    w = make()
    add_run(w, "r1", RunState.DEPLOYED, endpoint="tuneflow-chat", deployment="v1a2b-r1", model="chat-ft:r1",
            job_name="tuneflow-r1", studio_url="https://ml.azure.com/runs/tuneflow-r1")
    add_run(w, "r2", RunState.REJECTED, summary="3 errors", last_error="no assistant message")
    listed = routes.list_runs(get("runs"), w.api).json()
    assert listed["count"] == 2 and {r["run_id"] for r in listed["runs"]} == {"r1", "r2"}
    only = routes.list_runs(get("runs", params={"state": "deployed"}), w.api).json()
    assert [r["run_id"] for r in only["runs"]] == ["r1"] and only["runs"][0]["studio_url"].endswith("tuneflow-r1")
    assert routes.list_runs(get("runs", params={"state": "BOGUS"}), w.api).status == 400
    assert routes.list_runs(get("runs", params={"limit": "0"}), w.api).status == 400
    detail = routes.get_run(get("runs/r2", {"id": "r2"}), w.api).json()
    assert detail["summary"] == "3 errors" and detail["last_error"] == "no assistant message"
    assert detail["history"][0]["state"] == "REJECTED"
    assert routes.get_run(get("runs/nope", {"id": "nope"}), w.api).status == 404
    assert routes.get_run(get("runs/x", {"id": "../x"}), w.api).status == 404


def test_runs_list_pages_with_a_cursor_and_searches_datasets():
    w = make()
    for i in range(7):
        w.runs.create(Run(f"p{i}", RunState.DEPLOYED if i % 2 else RunState.REJECTED, f"datasets/Team-{i % 3}/d.jsonl",
                          [], "azureml://registries/azureml/models/Phi-4-mini-instruct/versions/1",
                          created_at=f"2026-01-01T00:00:0{i}.000+00:00"))
    first = routes.list_runs(get("runs", params={"limit": "3"}), w.api).json()
    assert [r["run_id"] for r in first["runs"]] == ["p6", "p5", "p4"] and first["next_cursor"]
    assert first["runs"][0]["base_model"].endswith("Phi-4-mini-instruct/versions/1")
    rest = routes.list_runs(get("runs", params={"limit": "10", "cursor": first["next_cursor"]}), w.api).json()
    assert [r["run_id"] for r in rest["runs"]] == ["p3", "p2", "p1", "p0"] and rest["next_cursor"] is None
    found = routes.list_runs(get("runs", params={"q": "team-1", "state": "DEPLOYED"}), w.api).json()
    assert [r["run_id"] for r in found["runs"]] == ["p1"]
    bad = routes.list_runs(get("runs", params={"cursor": "not-one"}), w.api)
    assert bad.status == 400 and error_of(bad)["param"] == "cursor"
    assert routes.list_runs(get("runs", params={"q": "x" * 300}), w.api).status == 400


def test_run_report_and_events():
    w = make()
    add_run(w, "r3", RunState.REJECTED, report_path="reports/r3.json")
    w.records.create("reports/r3.json", b'{"valid": false, "errors": {}}')
    add_run(w, "r4", RunState.RECEIVED)
    assert routes.run_report(get("runs/r3/report", {"id": "r3"}), w.api).json()["valid"] is False
    missing = routes.run_report(get("runs/r4/report", {"id": "r4"}), w.api)
    assert missing.status == 404 and error_of(missing)["code"] == "report_not_found"
    events = routes.run_events(get("runs/r3/events", {"id": "r3"}), w.api).json()
    assert [e["type"] for e in events["events"]] == ["tuneflow.run.rejected"]
    assert events["events"][0]["id"] == "r3-0000" and events["events"][0]["delivery"] == "off"
    assert routes.run_events(get("runs/zz/events", {"id": "zz"}), w.api).status == 404


def test_health():
    w = make()
    body = routes.health(get("health"), w.api)
    assert body.status == 200 and body.json()["checks"]["storage"] == "ok"


# ------------------------------------------------------------------------------------------ teardown


def teardown(route: Any, request: Request, ctx: Services) -> Response:
    result: Response = route(request, ctx)
    return result


def delete(path: str, route_params: dict[str, str], **headers: str) -> Request:
    return Request("DELETE", f"{BASE}/{path}", {k.lower(): v for k, v in headers.items()}, {}, route_params, b"")


def test_teardown_key_is_checked_when_configured():
    w = make({"TUNEFLOW_TEARDOWN_KEY": "td-key"})
    w.arm.add("tuneflow-chat", {"blue": 100})
    req = {"name": "tuneflow-chat"}
    assert teardown(routes.teardown_endpoint, delete("endpoints/tuneflow-chat", req), w.api).status == 401
    wrong = teardown(routes.teardown_endpoint, delete("endpoints/tuneflow-chat", req, **{"x-functions-key": "fn"}), w.api)
    assert wrong.status == 401 and "tuneflow-chat" in w.arm.endpoints
    ok = teardown(routes.teardown_endpoint, delete("endpoints/tuneflow-chat", req, **{"x-tuneflow-teardown-key": "td-key"}),
                                  w.api)
    assert ok.status == 202 and ok.headers["Location"] == "/api/endpoints/tuneflow-chat/status"
    assert "tuneflow-chat" not in w.arm.endpoints


def test_teardown_is_idempotent_and_marks_runs():
    w = make()
    w.arm.add("tuneflow-chat", {"v1a2b-r1": 100})
    add_run(w, "r1", RunState.DEPLOYED, endpoint="tuneflow-chat", deployment="v1a2b-r1")
    req = {"name": "tuneflow-chat"}
    first = teardown(routes.teardown_endpoint, delete("endpoints/tuneflow-chat", req), w.api)
    second = teardown(routes.teardown_endpoint, delete("endpoints/tuneflow-chat", req), w.api)
    assert (first.status, second.status) == (202, 202)
    assert first.json()["runs_torn_down"] == ["r1"] and second.json()["state"] == "Deleted"
    assert w.runs.get("r1").state == RunState.TORN_DOWN
    gone = teardown(routes.endpoint_status, get("endpoints/tuneflow-chat/status", req), w.api).json()
    assert gone == {"endpoint": "tuneflow-chat", "exists": False, "state": "Deleted", "deployments": []}


def test_teardown_refuses_bad_names():
    w = make()
    response = teardown(routes.teardown_endpoint, delete("endpoints/x", {"name": "bad_name!"}), w.api)
    assert response.status == 400 and error_of(response)["param"] == "name"


def test_deployment_teardown_answers_202_with_its_status_url():
    w = make()
    w.arm.add("tuneflow-chat", {"blue": 50, "green": 50})
    params = {"name": "tuneflow-chat", "deployment": "blue"}
    response = teardown(routes.teardown_deployment, delete("endpoints/tuneflow-chat/deployments/blue", params), w.api)
    assert response.status == 202
    assert response.headers["Location"] == "/api/endpoints/tuneflow-chat/deployments/blue/status"
    after = teardown(routes.deployment_status, get("endpoints/tuneflow-chat/deployments/blue/status", params), w.api).json()
    assert after["state"] == "Deleted"


def test_endpoints_lists_what_tuneflow_manages_with_activity_and_idle_deadline():
    w = make({"TUNEFLOW_IDLE_TEARDOWN_MINUTES": "30"})
    w.arm.add("tuneflow-chat", {"v1a2b-r1": 100})
    w.arm.add("second-ep", {"v9f8e-r2": 100})
    w.arm.add("not-ours", {"blue": 100})  # no run of tuneflow's is on it: not listed
    add_run(w, "r2", RunState.DEPLOYED, endpoint="second-ep", deployment="v9f8e-r2")
    assert score(w, CHAT).status == 200  # a scoring call on the configured endpoint
    w.api.activity.flush()
    listed = routes.list_endpoints(get("endpoints"), w.api).json()
    by_name = {e["endpoint"]: e for e in listed["endpoints"]}
    assert set(by_name) == {"tuneflow-chat", "second-ep"} and listed["count"] == 2
    chat_ep = by_name["tuneflow-chat"]
    assert chat_ep["traffic"] == {"v1a2b-r1": 100} and chat_ep["deployments"][0]["name"] == "v1a2b-r1"
    scored = datetime.fromisoformat(chat_ep["last_scored"])
    assert datetime.fromisoformat(chat_ep["idle_teardown_at"]) - scored == timedelta(minutes=30)
    # never scored and its idle clock not started: listing does not start it
    assert by_name["second-ep"]["last_scored"] is None and by_name["second-ep"]["idle_teardown_at"] is None
    assert w.api.activity.peek("second-ep") is None


def cancel(w: Any, run_id: str, **headers: str) -> Response:
    request = Request("POST", f"{BASE}/runs/{run_id}/cancel", {k.lower(): v for k, v in headers.items()}, {},
                      {"id": run_id}, b"")
    result: Response = routes.cancel_run(request, w.api)
    return result


def test_cancel_asks_azure_ml_to_cancel_a_running_job_and_ends_the_run_canceled():
    w = make()
    add_run(w, "r5", RunState.RUNNING, job_name="tuneflow-r5")
    w.arm.jobs.add("tuneflow-r5")
    response = cancel(w, "r5")
    assert response.status == 202 and response.json()["job_cancel_requested"] is True
    assert response.headers["Location"] == "/api/runs/r5"
    assert w.arm.canceled == ["tuneflow-r5"] and w.runs.get("r5").state == RunState.CANCELED
    again = cancel(w, "r5")  # idempotent: nothing asked twice
    assert again.status == 200 and again.json()["state"] == "CANCELED" and w.arm.canceled == ["tuneflow-r5"]


def test_cancel_before_submission_needs_no_job():
    w = make()
    add_run(w, "r6", RunState.VALIDATING)
    assert cancel(w, "r6").status == 200 and w.arm.canceled == []
    run = w.runs.get("r6")
    assert run.state == RunState.CANCELED and "canceled by request" in (run.history[-1].note or "")


@pytest.mark.parametrize("state", [RunState.TRAINED, RunState.DEPLOYED, RunState.FAILED])
def test_runs_past_training_cannot_be_canceled(state: RunState):
    w = make()
    add_run(w, "r7", state)
    response = cancel(w, "r7")
    assert response.status == 409 and error_of(response)["code"] == "not_cancelable"
    assert "tear its endpoint" in error_of(response)["message"] and w.runs.get("r7").state == state


def test_cancel_of_an_unknown_run_is_404_and_needs_the_teardown_key_when_one_is_set():
    w = make({"TUNEFLOW_TEARDOWN_KEY": "td-key"})
    add_run(w, "r8", RunState.RUNNING, job_name="tuneflow-r8")
    assert cancel(w, "r8").status == 401 and w.runs.get("r8").state == RunState.RUNNING
    assert cancel(w, "nope", **{"x-tuneflow-teardown-key": "td-key"}).status == 404
    assert cancel(w, "r8", **{"x-tuneflow-teardown-key": "td-key"}).status == 200  # its job is gone in Azure ML
