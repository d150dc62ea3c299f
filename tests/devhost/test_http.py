"""HTTP triggers through devhost, over real HTTP."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from devhost.process import Handle

pytestmark = pytest.mark.integration


def test_route_params_query_headers_body_and_response(client: httpx.Client, devhost: Handle) -> None:
    r = client.post("/api/echo/42/more?a=1&a=2&b=x", content=b"payload", headers={"x-trace": "t1"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-echo"] == "yes"
    assert r.headers["set-cookie"] == "a=1"
    doc = r.json()
    assert doc["method"] == "POST"
    assert doc["route_params"] == {"id": "42", "tail": "more"}
    assert doc["params"] == {"a": "1,2", "b": "x"}
    assert doc["headers"] == {"x-trace": "t1"}
    assert doc["body"] == "payload"
    assert doc["url"] == f"{devhost.url}/api/echo/42/more?a=1&a=2&b=x"


def test_optional_param_constraint_and_status(client: httpx.Client) -> None:
    r = client.get("/api/echo/7", params={"status": "201"})
    assert r.status_code == 201
    assert r.json()["route_params"] == {"id": "7"}
    assert client.get("/api/echo/7/").status_code == 200  # trailing slash ignored, as in ASP.NET Core
    assert client.get("/api/echo/not-an-int").status_code == 404  # {id:int} constraint
    assert client.get("/api/ECHO/8").status_code == 200  # literals match case-insensitively


def test_literal_route_beats_parameter_route(client: httpx.Client) -> None:
    r = client.get("/api/echo/literal")
    assert r.status_code == 200
    assert r.text == "literal wins over {id}"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"


def test_catch_all_and_encoded_values(client: httpx.Client) -> None:
    assert client.get("/api/files/a/b/c.txt").text == "a/b/c.txt"
    assert client.get("/api/async/J%C3%BCrgen").text == "hello Jürgen from async_hello"  # + func.Context


def test_mimetype_and_charset(client: httpx.Client) -> None:
    r = client.get("/api/text")
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.text == "héllo"


def test_undeclared_method_is_404_like_the_host(client: httpx.Client) -> None:
    # The Functions host answers 404 (not 405) when the route exists but the method is not declared
    # (Azure/azure-functions-host#10098); devhost does the same so behaviour matches Azure.
    assert client.delete("/api/echo/1").status_code == 404
    assert client.get("/api/size").status_code == 404
    assert client.post("/api/size", content=b"abc").text == "3"


def test_unknown_paths_are_404(client: httpx.Client) -> None:
    assert client.get("/api/nope").status_code == 404
    assert client.get("/elsewhere").status_code == 404
    assert client.get("/runtime/webhooks/unknown").status_code == 404


def test_function_auth_level(client: httpx.Client, devhost: Handle) -> None:
    path = "/api/secure/function"
    assert client.get(path).status_code == 401
    assert client.get(path, params={"code": "wrong"}).status_code == 401
    assert client.get(path, headers={"x-functions-key": devhost.function_key}).status_code == 200
    assert client.get(path, params={"code": devhost.function_key}).status_code == 200
    own_key = devhost.keys["functions"]["secure_function"]["default"]
    assert client.get(path, params={"code": own_key}).status_code == 200
    other_key = devhost.keys["functions"]["echo"]["default"]
    assert client.get(path, params={"code": other_key}).status_code == 401  # another function's key
    assert client.get(path, params={"code": devhost.master_key}).text == "function level ok"
    assert client.get(path, params={"code": devhost.system_key("eventgrid_extension")}).status_code == 401


def test_admin_auth_level(client: httpx.Client, devhost: Handle) -> None:
    path = "/api/secure/admin"
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"x-functions-key": devhost.function_key}).status_code == 401
    assert client.get(path, headers={"x-functions-key": devhost.master_key}).text == "admin level ok"


def test_handler_exception_is_500_and_logged(client: httpx.Client, devhost: Handle) -> None:
    r = client.get("/api/boom")
    assert r.status_code == 500
    assert r.content == b""
    log = devhost.log_text()
    assert "Executed 'Functions.boom' (Failed" in log
    assert "RuntimeError: boom on purpose" in log


def test_invocations_are_logged_with_duration(client: httpx.Client, devhost: Handle) -> None:
    client.get("/api/async/logme")
    line = next(x for x in devhost.log_text().splitlines() if "Functions.async_hello" in x)
    assert "Succeeded" in line and "Trigger=httpTrigger" in line and "Duration=" in line


def test_disabled_function_is_404_except_for_the_master_key(client: httpx.Client, devhost: Handle) -> None:
    assert client.get("/api/disabled").status_code == 404
    assert client.get("/api/disabled", params={"code": devhost.function_key}).status_code == 404
    assert client.get("/api/disabled", params={"code": devhost.master_key}).status_code == 200


def test_body_over_100_mb_declared_is_413(devhost: Handle) -> None:
    with socket.create_connection(("127.0.0.1", devhost.port), timeout=10) as s:
        s.sendall(b"POST /api/size HTTP/1.1\r\nHost: x\r\nContent-Length: 104857601\r\n\r\n" + b"x" * 1024)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_streamed_body_over_100_mb_is_413(client: httpx.Client) -> None:
    chunk = b"x" * (1024 * 1024)

    def body() -> Iterator[bytes]:  # chunked: no Content-Length, so devhost must count
        for _ in range(101):
            yield chunk

    try:
        r = client.post("/api/size", content=body())
    except httpx.HTTPError:  # the server may close while we are still sending; then no reply is read
        pytest.fail("devhost should answer 413 before closing the connection")
    assert r.status_code == 413


def test_body_under_the_limit_is_delivered(client: httpx.Client) -> None:
    assert client.post("/api/size", content=b"y" * (5 * 1024 * 1024)).text == str(5 * 1024 * 1024)


def test_admin_host_status_and_function_list(client: httpx.Client, devhost: Handle) -> None:
    assert client.get("/admin/host/status").status_code == 401
    status = client.get("/admin/host/status", headers={"x-functions-key": devhost.master_key}).json()
    assert status["state"] == "Running"
    assert client.get("/admin/host/ping").status_code == 200
    functions = client.get("/admin/functions", params={"code": devhost.master_key}).json()
    names = {f["name"] for f in functions}
    assert {"echo", "on_event", "on_blob", "tick", "yearly", "work", "enqueue"} <= names
    echo = next(f for f in functions if f["name"] == "echo")
    assert echo["invoke_url_template"] == f"{devhost.url}/api/echo/{{id:int}}/{{tail?}}"
    trigger = echo["config"]["bindings"][0]
    assert trigger["type"] == "httpTrigger" and trigger["authLevel"] == "anonymous"


def test_startup_banner_lists_every_function_with_its_url(devhost: Handle) -> None:
    log = devhost.log_text()
    assert f"echo: [GET,POST,PUT] {devhost.url}/api/echo/{{id:int}}/{{tail?}}" in log
    assert f"{devhost.url}/runtime/webhooks/EventGrid?functionName=on_event" in log
    assert f"{devhost.url}/runtime/webhooks/blobs?functionName=Host.Functions.on_blob" in log
    assert "tick: timerTrigger schedule=*/1 * * * * *" in log
    assert "work: queueTrigger queue=devhost-work" in log


def test_blob_output_uses_route_values_in_its_path(client: httpx.Client, azurite: Any) -> None:
    name = f"doc-{uuid.uuid4().hex[:8]}"
    r = client.put(f"/api/save/{name}", content=b"stored bytes")
    assert r.status_code == 201
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        "devhost-out", f"{name}.txt"
    )
    assert blob.download_blob().readall() == b"stored bytes"
