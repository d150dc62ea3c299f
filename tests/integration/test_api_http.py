"""The HTTP front door end to end, with real HTTP: devhost hosting function_app, the Azure ML emulator
(an endpoint deployed with the SDK; the emulator's fake scorer behind it) and Azurite (runs, score jobs,
the score-job queue).

Two devhosts share the emulator and Azurite: ``dh`` is permissive about webhook targets (the test's
receiver is plain http on 127.0.0.1) and uses the admin key for teardown; ``strict`` keeps the SSRF guard
on and has a separate teardown key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.runs import Run, RunState
from tests.support.api_stack import CHAT, MODEL, SECRET, TEARDOWN_KEY, Stack, deploy

pytestmark = [pytest.mark.integration, pytest.mark.emulator]


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    """Calls the permissive devhost with its function (host) key."""
    with httpx.Client(base_url=stack.dh.url, headers={"x-functions-key": stack.dh.function_key}, timeout=60) as c:
        yield c


def error_of(response: httpx.Response) -> dict[str, Any]:
    err: dict[str, Any] = response.json()["error"]
    return err


# ------------------------------------------------------------------------------------------ auth

ROUTES = [("POST", "/api/score"), ("GET", "/api/score/" + "0" * 32), ("POST", "/api/v1/chat/completions"),
          ("GET", "/api/runs"), ("GET", "/api/runs/abc"), ("GET", "/api/health"),
          ("GET", "/api/endpoints/some-ep/status"), ("GET", "/api/endpoints/some-ep/deployments/blue/status"),
          ("DELETE", "/api/endpoints/some-ep"), ("DELETE", "/api/endpoints/some-ep/deployments/blue")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_anonymous_and_wrong_keys_are_401(stack: Stack, method: str, path: str) -> None:
    for host in (stack.dh, stack.strict):
        anonymous = httpx.request(method, host.url + path, json=CHAT if method == "POST" else None)
        assert anonymous.status_code == 401, (host.url, path, anonymous.text)
        wrong = httpx.request(method, host.url + path, headers={"x-functions-key": "not-a-key"})
        assert wrong.status_code == 401
        wrong_code = httpx.request(method, host.url + path, params={"code": "not-a-key"})
        assert wrong_code.status_code == 401


def test_teardown_needs_the_admin_key_or_the_teardown_key(stack: Stack) -> None:
    path = "/api/endpoints/never-existed"
    with_function_key = httpx.delete(stack.dh.url + path, headers={"x-functions-key": stack.dh.function_key})
    assert with_function_key.status_code == 401  # admin level: a function key is not enough
    with_master = httpx.delete(stack.dh.url + path, headers={"x-functions-key": stack.dh.master_key})
    assert with_master.status_code == 202 and with_master.json()["state"] == "Deleted"
    strict = stack.strict
    assert httpx.delete(strict.url + path, headers={"x-functions-key": strict.function_key}).status_code == 401
    assert httpx.delete(strict.url + path, headers={"x-tuneflow-teardown-key": "guess"}).status_code == 401
    ok = httpx.delete(strict.url + path, headers={"x-tuneflow-teardown-key": TEARDOWN_KEY})
    assert ok.status_code == 202 and ok.headers["location"] == "/api/endpoints/never-existed/status"


# ------------------------------------------------------------------------------------------ scoring


def test_score_chat_body(stack: Stack, client: httpx.Client) -> None:
    response = client.post("/api/score", json={**CHAT, "parameters": {"max_new_tokens": 16}})
    assert response.status_code == 200, response.text
    assert response.json() == {"output": "fake: Capital of Peru?", "model": MODEL, "deployment": "blue"}


def test_score_native_body_and_pinned_deployment(client: httpx.Client) -> None:
    native = {"input_data": {"input_string": [[{"role": "user", "content": "hi"}]], "parameters": {}}, "params": {}}
    response = client.post("/api/score", json={**native, "deployment": "blue"})
    assert response.status_code == 200 and response.json()["output"] == "fake: hi"
    missing = client.post("/api/score", json={**CHAT, "deployment": "purple"})
    assert missing.status_code == 404 and error_of(missing)["code"] == "deployment_not_found"


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    (b'{"messages": [{"role": "user", "content": "hi"},]}', 400, "invalid_json", None),
    (b"", 400, "invalid_json", None),
    (b'["messages"]', 400, "invalid_type", None),
    (b'{"messages": "hi"}', 400, "invalid_type", "messages"),
    (b'{"messages": [{"role": "robot", "content": "hi"}]}', 400, "invalid_value", "messages[0].role"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "parameters": {"top_p": 7}}', 400, "invalid_value",
     "parameters.top_p"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "deployment": "no way"}', 400, "invalid_value", "deployment"),
    (b'{"prompt": "hi"}', 400, "unknown_field", "prompt"),
])
def test_bad_bodies_are_400_saying_what_and_where(client: httpx.Client, body: bytes, status: int, code: str,
                                                  param: str | None) -> None:
    response = client.post("/api/score", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert error_of(response)["code"] == code and error_of(response)["param"] == param
    assert error_of(response)["message"]


def test_oversized_body_is_413(client: httpx.Client) -> None:
    big = {"messages": [{"role": "user", "content": "x" * (65 * 1024)}]}
    response = client.post("/api/score", json=big)
    assert response.status_code == 413 and error_of(response)["code"] == "body_too_large"
    chat = client.post("/api/v1/chat/completions", json={"model": "blue", **big})
    assert chat.status_code == 413


def test_openai_sdk_round_trip(stack: Stack) -> None:
    import openai

    # Only the base URL and the key change; the Functions host reads its key from x-functions-key.
    key = stack.dh.function_key
    sdk = openai.OpenAI(base_url=f"{stack.dh.url}/api/v1", api_key=key, default_headers={"x-functions-key": key},
                        max_retries=0)
    completion = sdk.chat.completions.create(model="blue", max_tokens=16, temperature=0, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Peru?"}])
    assert completion.choices[0].message.content == "fake: Capital of Peru?"
    assert completion.model == MODEL and completion.choices[0].finish_reason == "stop"
    by_model = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert by_model.choices[0].message.content == "fake: hi"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        sdk.chat.completions.create(model="blue", messages=[{"role": "user", "content": "hi"}], n=2)
    with pytest.raises(openai.BadRequestError, match="seed is only honoured with temperature 0"):
        sdk.chat.completions.create(model="blue", messages=[{"role": "user", "content": "hi"}], seed=1,
                                    temperature=0.8)


def test_openai_sdk_lists_models_and_every_listed_id_answers(stack: Stack) -> None:
    import openai

    key = stack.dh.function_key
    sdk = openai.OpenAI(base_url=f"{stack.dh.url}/api/v1", api_key=key, default_headers={"x-functions-key": key},
                        max_retries=0)
    listed = {m.id: m for m in sdk.models.list()}
    assert set(listed) == {stack.endpoint, MODEL}
    assert all(m.owned_by == "tuneflow" and m.object == "model" and m.created > 0 for m in listed.values())
    assert sdk.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-4o")
    for model_id in listed:  # every id listed is accepted as `model`
        answer = sdk.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "fake: hi"


def test_openai_sdk_streaming_equals_the_unstreamed_answer(stack: Stack) -> None:
    import openai

    key = stack.dh.function_key
    sdk = openai.OpenAI(base_url=f"{stack.dh.url}/api/v1", api_key=key, default_headers={"x-functions-key": key},
                        max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Capital of Peru?"}]
    whole = sdk.chat.completions.create(model=MODEL, messages=messages, temperature=0)
    chunks = list(sdk.chat.completions.create(model=MODEL, messages=messages, temperature=0, stream=True,
                                              stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    # passed through as the deployment streamed it (word by word), not gathered into one delta
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert contents == ["fake:", " Capital", " of", " Peru?"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is None  # the fake deployment counts no tokens
    cut = sdk.chat.completions.create(model=MODEL, messages=messages, stop=["Peru"])
    assert cut.choices[0].message.content == "fake: Capital of "


def test_the_openai_sdk_backs_off_an_overloaded_deployment(stack: Stack) -> None:
    import openai

    key = stack.dh.function_key
    # tuneflow retries a 429 twice itself (TUNEFLOW_SCORING_RETRIES); the third is the SDK's to retry
    stack.admin.faults(scoring_429_count=3, scoring_retry_after_s=0)
    try:
        patient = openai.OpenAI(base_url=f"{stack.dh.url}/api/v1", api_key=key, max_retries=2,
                                default_headers={"x-functions-key": key})
        raw = patient.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user",
                                                                                         "content": "hi"}])
        assert raw.parse().choices[0].message.content == "fake: hi" and raw.retries_taken == 1
        stack.admin.faults(scoring_429_count=3, scoring_retry_after_s=0)
        hasty = openai.OpenAI(base_url=f"{stack.dh.url}/api/v1", api_key=key, max_retries=0,
                              default_headers={"x-functions-key": key})
        with pytest.raises(openai.RateLimitError) as caught:
            hasty.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert caught.value.response.headers["retry-after"] and caught.value.response.headers["x-request-id"]
    finally:
        stack.admin.faults(scoring_429_count=0)


def test_answers_carry_a_request_id(client: httpx.Client) -> None:
    mine = client.post("/api/v1/chat/completions", json={"model": "blue", **CHAT}, headers={"x-request-id": "r-42"})
    assert mine.headers["x-request-id"] == "r-42"
    fresh = client.get("/api/runs")
    assert len(fresh.headers["x-request-id"]) == 32
    bad = client.post("/api/v1/chat/completions", json={"model": "nope", **CHAT})
    assert bad.status_code == 404 and bad.headers["x-request-id"]


def test_steady_state_scoring_makes_no_control_plane_calls(stack: Stack, client: httpx.Client) -> None:
    assert client.post("/api/score", json=CHAT).status_code == 200  # warm
    before = stack.arm_calls()
    for _ in range(20):
        assert client.post("/api/score", json=CHAT).status_code == 200
    assert stack.arm_calls() == before


def test_key_rotation_is_followed(stack: Stack, client: httpx.Client) -> None:
    assert client.post("/api/score", json=CHAT).status_code == 200
    old = stack.keys()["primaryKey"]
    stack.rotate_primary_key()
    assert stack.keys()["primaryKey"] != old
    before = stack.arm_calls()
    response = client.post("/api/score", json=CHAT)
    assert response.status_code == 200, response.text
    assert stack.arm_calls() - before == 3  # one re-resolution: endpoint, listKeys, deployments
    assert client.post("/api/score", json=CHAT).status_code == 200


# ------------------------------------------------------------------------------------------ webhooks


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def test_webhook_is_signed_and_retried_after_a_failing_receiver(stack: Stack, client: httpx.Client) -> None:
    stack.receiver.fail_first = 2
    response = client.post("/api/score", json={**CHAT, "callback_url": stack.receiver.url})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert response.headers["location"] == f"/api/score/{job_id}"

    def delivered() -> dict[str, Any] | None:
        shown: dict[str, Any] = client.get(f"/api/score/{job_id}").json()
        return shown if shown["delivery"]["state"] != "pending" else None

    shown = wait_for(delivered)
    assert shown["status"] == "succeeded" and shown["delivery"]["state"] == "delivered"
    assert shown["delivery"]["attempts"] == 3 and shown["result"]["output"] == "fake: Capital of Peru?"
    mine = [r for r in stack.receiver.received if r["headers"]["webhook-id"] == job_id]
    assert [r["status"] for r in mine] == [500, 500, 200]
    assert all(r["valid"] for r in mine) and mine[0]["path"] == "/hooks/tuneflow?token=abc"
    event = mine[-1]["body"]
    assert event["type"] == "score.succeeded"
    assert event["data"] == {"id": job_id, "status": "succeeded", "output": "fake: Capital of Peru?",
                             "model": MODEL, "deployment": "blue"}


@pytest.mark.parametrize("url", [
    "http://example.com/hook",          # https only
    "https://127.0.0.1/hook",           # loopback
    "https://localhost:8443/hook",      # a name that resolves to loopback
    "https://[::1]/hook",
    "https://10.0.0.7/hook",            # private
    "https://192.168.0.1/hook",
    "https://169.254.169.254/latest/meta-data/",  # link-local (cloud metadata)
    "https://user:pass@example.com/hook",
])
def test_ssrf_targets_are_refused(stack: Stack, url: str) -> None:
    response = httpx.post(stack.strict.url + "/api/score", json={**CHAT, "callback_url": url},
                          headers={"x-functions-key": stack.strict.function_key})
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "callback_refused" and error_of(response)["param"] == "callback_url"


def test_unknown_score_job_is_404(client: httpx.Client) -> None:
    assert client.get("/api/score/" + "f" * 32).status_code == 404
    assert client.get("/api/score/not-an-id").status_code == 404


# ------------------------------------------------------------------------------------------ runs, health


def test_runs_and_health(stack: Stack, client: httpx.Client) -> None:
    runs = stack.runs()
    run_id = uuid.uuid4().hex[:20]
    runs.create(Run(run_id, RunState.DEPLOYED, "chat/good.jsonl", ["chat/good.jsonl"], "Phi-3-mini-4k-instruct",
                    summary="60 rows, 0 errors", job_name=f"tuneflow-{run_id}", studio_url="https://ml.azure.com/x",
                    model=MODEL, endpoint="elsewhere", deployment="blue"))
    listed = client.get("/api/runs", params={"state": "DEPLOYED"})
    assert listed.status_code == 200
    assert run_id in [r["run_id"] for r in listed.json()["runs"]]
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["state"] == "DEPLOYED" and detail["summary"] == "60 rows, 0 errors"
    assert detail["job_name"] == f"tuneflow-{run_id}" and detail["history"][0]["state"] == "DEPLOYED"
    assert client.get("/api/runs/does-not-exist").status_code == 404
    health = client.get("/api/health")
    assert health.status_code == 200 and health.json()["checks"]["storage"] == "ok"


# ------------------------------------------------------------------------------------------ teardown


def test_deployment_and_endpoint_teardown_is_idempotent(stack: Stack) -> None:
    name = f"td-{uuid.uuid4().hex[:8]}"
    deploy(stack.admin, name, ("blue", "green"))
    runs = stack.runs()
    run_id = uuid.uuid4().hex[:20]
    runs.create(Run(run_id, RunState.DEPLOYED, "d.jsonl", ["d.jsonl"], "Phi-3", endpoint=name, deployment="blue"))
    admin = {"x-functions-key": stack.dh.master_key}
    status_url = f"/api/endpoints/{name}/deployments/blue/status"
    first = httpx.delete(f"{stack.dh.url}/api/endpoints/{name}/deployments/blue", headers=admin, timeout=60)
    assert first.status_code == 202, first.text
    assert first.headers["location"] == status_url and first.json()["runs_torn_down"] == [run_id]
    fn = {"x-functions-key": stack.dh.function_key}
    wait_for(lambda: httpx.get(stack.dh.url + status_url, headers=fn).json()["state"] == "Deleted")
    assert runs.get(run_id).state == RunState.TORN_DOWN  # type: ignore[union-attr]
    endpoint = httpx.get(f"{stack.dh.url}/api/endpoints/{name}/status", headers=fn).json()
    assert [d["name"] for d in endpoint["deployments"]] == ["green"] and endpoint["traffic"].get("blue", 0) == 0
    again = httpx.delete(f"{stack.dh.url}/api/endpoints/{name}/deployments/blue", headers=admin, timeout=60)
    assert again.status_code == 202 and again.json()["state"] == "Deleted"
    whole = httpx.delete(f"{stack.dh.url}/api/endpoints/{name}", headers=admin, timeout=60)
    assert whole.status_code == 202 and whole.headers["location"] == f"/api/endpoints/{name}/status"
    wait_for(lambda: httpx.get(f"{stack.dh.url}/api/endpoints/{name}/status", headers=fn).json()["exists"] is False)
    twice = httpx.delete(f"{stack.dh.url}/api/endpoints/{name}", headers=admin, timeout=60)
    assert twice.status_code == 202 and twice.json()["state"] == "Deleted"


# ------------------------------------------------------------------------------------------ logs


def test_no_key_token_or_connection_string_in_logs_or_answers(stack: Stack, client: httpx.Client) -> None:
    keys = stack.keys()
    responses = [client.post("/api/score", json=CHAT), client.get("/api/health"),
                 client.post("/api/score", content=b"{bad"), client.get("/api/runs")]
    assert responses[0].status_code == 200
    log = stack.dh.log_text() + stack.strict.log_text()
    assert "Executed 'Functions.api_score'" in log  # the log is captured (at debug level)
    conn = stack.settings.storage_connection or ""
    account_key = conn.split("AccountKey=")[1].split(";")[0]
    secrets = [keys["primaryKey"], keys["secondaryKey"], account_key, conn, SECRET, TEARDOWN_KEY,
               stack.dh.function_key, stack.dh.master_key]
    for secret in secrets:
        assert secret not in log
        assert all(secret not in r.text for r in responses)


def test_endpoints_lists_the_deployed_endpoint_over_real_http(stack: Stack, client: httpx.Client) -> None:
    assert client.post("/api/score", json=CHAT).status_code == 200
    listed = client.get("/api/endpoints")
    assert listed.status_code == 200
    (ours,) = [e for e in listed.json()["endpoints"] if e["endpoint"] == stack.endpoint]
    assert ours["exists"] and ours["traffic"] == {"blue": 100}
    assert [d["model"] for d in ours["deployments"]] == [MODEL]


# ------------------------------------------------------------------------------------------ idle teardown (last)


def test_idle_endpoint_is_torn_down_and_the_active_one_kept(stack: Stack, client: httpx.Client) -> None:
    idle = f"idle-{uuid.uuid4().hex[:8]}"
    deploy(stack.admin, idle)
    runs = stack.runs()
    run_id = uuid.uuid4().hex[:20]
    runs.create(Run(run_id, RunState.DEPLOYED, "d.jsonl", ["d.jsonl"], "Phi-3", endpoint=idle, deployment="blue"))
    invoke = f"{stack.dh.url}/admin/functions/idle_teardown"
    master = {"x-functions-key": stack.dh.master_key}
    first = httpx.post(invoke, params={"wait": "true"}, json={"input": ""}, headers=master, timeout=60)
    assert first.status_code == 200, first.text  # starts the idle clock of both endpoints
    time.sleep(3.5)  # TUNEFLOW_IDLE_TEARDOWN_MINUTES=0.05
    assert client.post("/api/score", json=CHAT).status_code == 200  # the main endpoint stays busy
    second = httpx.post(invoke, params={"wait": "true"}, json={"input": ""}, headers=master, timeout=60)
    assert second.status_code == 200, second.text
    torn = runs.get(run_id)
    assert torn is not None and torn.state == RunState.TORN_DOWN and "idle teardown" in (torn.history[-1].note or "")
    fn = {"x-functions-key": stack.dh.function_key}
    wait_for(lambda: httpx.get(f"{stack.dh.url}/api/endpoints/{idle}/status", headers=fn).json()["exists"] is False)
    assert client.post("/api/score", json=CHAT).status_code == 200  # the active endpoint was kept
    # once an endpoint is gone, scoring it answers 404
    stack.delete_endpoint(stack.endpoint)
    deadline = time.monotonic() + 30
    while True:
        gone = client.post("/api/score", json=CHAT)
        if gone.status_code == 404 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert gone.status_code == 404 and error_of(gone)["code"] in ("endpoint_not_found", "no_deployment")
    # gone from Azure ML too before the next module's tests read the stack's state
    wait_for(lambda: httpx.get(f"{stack.dh.url}/api/endpoints/{stack.endpoint}/status", headers=fn).json()["exists"]
             is False)
