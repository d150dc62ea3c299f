"""`score` and `teardown`: HTTP calls to tuneflow's API, checked with httpx.MockTransport."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cli import endpoint as cli_endpoint
from cli import main as cli

BASE = "http://tf.test/api"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFLOW_API_URL", BASE)
    monkeypatch.setenv("TUNEFLOW_API_KEY", "k-123")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Callable[[Handler], list[httpx.Request]]:
    """Route the CLI's HTTP calls to ``handler``; the requests it made."""

    def install(handler: Handler) -> list[httpx.Request]:
        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        monkeypatch.setattr(cli_endpoint, "_transport", httpx.MockTransport(record))
        return seen

    return install


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"message": message, "type": "x", "param": None, "code": code}}
    return httpx.Response(status, json=body, headers=headers)


ANSWER = {"output": "The capital of Peru is Lima.", "model": "Phi-4-mini-instruct-ft:3f2a", "deployment": "v1a2b-3f2a"}


# -- score ---------------------------------------------------------------------------------------------


def test_score_posts_the_chat_shape_with_the_key(api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    seen = api(lambda r: httpx.Response(200, json=ANSWER))
    code, out, err = run(["score", "What is the capital of Peru?"], capsys)
    assert code == 0, err
    (request,) = seen
    assert request.method == "POST" and str(request.url) == f"{BASE}/score"
    assert request.headers["x-functions-key"] == "k-123"
    assert json.loads(request.content) == {"messages": [{"role": "user", "content": "What is the capital of Peru?"}]}
    assert out == "The capital of Peru is Lima.\n"
    assert err == "(model Phi-4-mini-instruct-ft:3f2a, deployment v1a2b-3f2a)\n"


def test_score_options_shape_the_body(api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    seen = api(lambda r: httpx.Response(200, json=ANSWER))
    code, out, _ = run(["score", "Capital of Chile?", "--system", "Be brief.", "--deployment", "v1a2b-3f2a",
                        "--max-new-tokens", "32", "--temperature", "0.2", "--top-p", "0.9", "--json"], capsys)
    assert code == 0
    assert json.loads(seen[0].content) == {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Chile?"}],
        "parameters": {"max_new_tokens": 32, "temperature": 0.2, "do_sample": True, "top_p": 0.9},
        "deployment": "v1a2b-3f2a",
    }
    assert json.loads(out) == ANSWER


def test_score_reads_stdin_and_flags_override_env(api: Any, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    seen = api(lambda r: httpx.Response(200, json={"output": "Lima."}))
    monkeypatch.setattr("sys.stdin", io.StringIO("Capital of Peru?\n"))
    code, out, err = run(["score", "-", "--api-url", "https://app.example.net", "--key", "other"], capsys)
    assert code == 0 and out == "Lima.\n" and err == ""
    assert str(seen[0].url) == "https://app.example.net/api/score"  # a bare host gets the /api prefix
    assert seen[0].headers["x-functions-key"] == "other"
    assert json.loads(seen[0].content)["messages"][0]["content"] == "Capital of Peru?"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (error(401, "Unauthorized", "unauthorized"), "error: 401 unauthorized: Unauthorized — check the key"),
        (error(404, "no endpoint 'tuneflow-chat'", "endpoint_not_found"),
         "error: 404 endpoint_not_found: no endpoint 'tuneflow-chat'"),
        (error(502, "the endpoint answered 500: model crashed", "upstream_error"),
         "error: 502 upstream_error: the endpoint answered 500: model crashed"),
        (error(503, "busy", "unavailable", {"Retry-After": "7"}), "error: 503 unavailable: busy (retry after 7 s)"),
        (httpx.Response(401, text=""), "error: 401: Unauthorized — check the key"),
        (httpx.Response(500, text="<html>oops</html>"), "error: 500: <html>oops</html>"),
    ],
)
def test_api_errors_exit_1_with_the_message(response: httpx.Response, expected: str, api: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    api(lambda r: response)
    code, out, err = run(["score", "hi"], capsys)
    assert code == 1 and out == ""
    assert err.startswith(expected) and len(err.strip().splitlines()) == 1


def test_without_a_key_none_is_sent_and_a_401_says_so(api: Any, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TUNEFLOW_API_KEY")
    seen = api(lambda r: error(401, "Unauthorized", "unauthorized"))
    code, _, err = run(["score", "hi"], capsys)
    assert code == 1 and "x-functions-key" not in seen[0].headers
    assert "no key was sent: pass --key or set TUNEFLOW_API_KEY" in err


@pytest.mark.parametrize(
    ("exc", "expected"),
    [(httpx.ConnectError("connection refused"), "cannot reach the tuneflow API at http://tf.test/api/score"),
     (httpx.ReadTimeout("timed out"), "no answer from http://tf.test/api/score within 5 s")],
)
def test_an_unreachable_api_exits_2(exc: Exception, expected: str, api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    api(fail)
    code, _, err = run(["score", "hi", "--timeout", "5"], capsys)
    assert code == 2 and expected in err


@pytest.mark.parametrize(
    ("url", "expected"),
    [("", "no API URL: pass --api-url or set TUNEFLOW_API_URL"), ("tf.test/api", "must start with http://")],
)
def test_a_missing_or_bad_url_exits_2(url: str, expected: str, monkeypatch: pytest.MonkeyPatch, api: Any,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    seen = api(lambda r: httpx.Response(200, json=ANSWER))
    monkeypatch.setenv("TUNEFLOW_API_URL", url)
    code, _, err = run(["score", "hi"], capsys)
    assert code == 2 and expected in err and seen == []


def test_empty_text_exits_2(api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    seen = api(lambda r: httpx.Response(200, json=ANSWER))
    assert run(["score", "  "], capsys)[0] == 2 and seen == []


# -- teardown ------------------------------------------------------------------------------------------


def deleting(name: str, path: str = "") -> httpx.Response:
    status = f"/api/endpoints/{name}{path}/status"
    return httpx.Response(202, json={"endpoint": name, "state": "Deleting", "runs_torn_down": ["3f2a", "9b1c"],
                                     "status_url": status}, headers={"Location": status})


def test_teardown_deletes_the_endpoint(api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    seen = api(lambda r: deleting("tuneflow-chat"))
    code, out, err = run(["teardown", "tuneflow-chat", "--yes"], capsys)
    assert code == 0, err
    (request,) = seen
    assert request.method == "DELETE" and str(request.url) == f"{BASE}/endpoints/tuneflow-chat"
    assert request.headers["x-functions-key"] == "k-123"
    assert out.splitlines() == [
        "endpoint tuneflow-chat and all its deployments: Deleting; runs torn down: 3f2a, 9b1c",
        "follow it with: GET /api/endpoints/tuneflow-chat/status (or --wait)",
    ]


def test_teardown_of_one_deployment_waits_until_deleted(api: Any, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    states = iter(["Deleting", "Deleting", "Deleted"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return deleting("tuneflow-chat", "/deployments/v1a2b-3f2a")
        state = next(states)
        return httpx.Response(200, json={"endpoint": "tuneflow-chat", "deployment": "v1a2b-3f2a",
                                         "exists": state != "Deleted", "state": state})

    pauses: list[float] = []
    monkeypatch.setattr(cli_endpoint, "_sleep", pauses.append)
    seen = api(handler)
    code, out, err = run(["teardown", "tuneflow-chat", "--deployment", "v1a2b-3f2a", "--yes", "--wait",
                          "--interval", "2"], capsys)
    assert code == 0, err
    assert str(seen[0].url) == f"{BASE}/endpoints/tuneflow-chat/deployments/v1a2b-3f2a"
    assert [str(r.url) for r in seen[1:]] == [f"{BASE}/endpoints/tuneflow-chat/deployments/v1a2b-3f2a/status"] * 3
    assert all(r.headers["x-functions-key"] == "k-123" for r in seen)
    assert pauses == [2.0, 2.0]
    assert out.splitlines()[1:] == ["  Deleting", "  Deleted"]


def test_teardown_wait_gives_up_with_exit_1(api: Any, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return deleting("tuneflow-chat")
        return httpx.Response(200, json={"endpoint": "tuneflow-chat", "exists": True, "state": "Deleting"})

    monkeypatch.setattr(cli_endpoint, "_sleep", lambda s: None)
    api(handler)
    code, _, err = run(["teardown", "tuneflow-chat", "--yes", "--wait", "--wait-timeout", "0"], capsys)
    assert code == 1 and "still Deleting after 0 s" in err


def test_teardown_of_something_gone_is_done(api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    seen = api(lambda r: httpx.Response(202, json={"endpoint": "old-one", "state": "Deleted", "runs_torn_down": []}))
    code, out, _ = run(["teardown", "old-one", "--yes", "--wait"], capsys)
    assert code == 0 and out == "endpoint old-one and all its deployments: Deleted\n" and len(seen) == 1


def test_teardown_needs_yes_without_a_terminal(api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    seen = api(lambda r: deleting("tuneflow-chat"))
    code, _, err = run(["teardown", "tuneflow-chat"], capsys)
    assert code == 2 and seen == [] and "pass --yes to delete" in err


def test_teardown_asks_on_a_terminal(api: Any, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    seen = api(lambda r: deleting("tuneflow-chat"))
    answers = iter(["n", "yes"])
    monkeypatch.setattr("sys.stdin", Tty())
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert run(["teardown", "tuneflow-chat"], capsys)[0] == 2 and seen == []
    assert run(["teardown", "tuneflow-chat"], capsys)[0] == 0 and len(seen) == 1


def test_teardown_refused_by_the_api_exits_1(api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    api(lambda r: error(401, "this key does not allow teardown", "unauthorized"))
    code, _, err = run(["teardown", "tuneflow-chat", "--yes"], capsys)
    assert code == 1 and "401 unauthorized: this key does not allow teardown — check the key" in err


def test_help_says_what_score_and_teardown_do(capsys: pytest.CaptureFixture[str]) -> None:
    for command, says, example in (
        ("score", "Score a prompt on the fine-tuned model's endpoint", 'python -m cli score "What is the capital'),
        ("teardown", "Delete an online endpoint", "python -m cli teardown tuneflow-chat --yes"),
    ):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert says in out and example in out and "TUNEFLOW_API_URL" in out and "x-functions-key" in out
