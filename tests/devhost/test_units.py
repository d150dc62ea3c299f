"""devhost's pure parts: NCRONTAB, route templates, settings, keys, queue encoding, blob URLs."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from devhost.bindings import decode_queue_text, path_pattern, split_blob_url
from devhost.config import ConfigError, is_disabled, load_host_json, load_local_settings, parse_timespan
from devhost.keys import load_or_create
from devhost.ncrontab import CronSchedule, IntervalSchedule, ScheduleError, parse_schedule
from devhost.process import DevhostStartError, start_devhost
from devhost.routes import RouteEntry, RouteError, RouteTable, compile_route

UTC = dt.UTC


def _t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# ----------------------------------------------------------------------------- NCRONTAB


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/1 * * * * *", "2026-01-01T00:00:00.500", "2026-01-01T00:00:01"),
        ("*/15 * * * * *", "2026-01-01T00:00:14", "2026-01-01T00:00:15"),
        ("0 */5 * * * *", "2026-01-01T00:07:00", "2026-01-01T00:10:00"),
        ("0 30 9 * * 1-5", "2026-01-02T10:00:00", "2026-01-05T09:30:00"),  # Fri after 9:30 -> Monday
        ("0 0 0 1 1 *", "2026-03-01T00:00:00", "2027-01-01T00:00:00"),
        ("0 0 12 * * SUN", "2026-01-01T00:00:00", "2026-01-04T12:00:00"),
        ("0 0 0 * JAN,MAR *", "2026-01-31T00:00:00", "2026-03-01T00:00:00"),
        ("10-12 0 0 * * *", "2026-01-01T00:00:10", "2026-01-01T00:00:11"),
        ("0 0 0 13 * 5", "2026-01-01T00:00:00", "2026-02-13T00:00:00"),  # Friday the 13th: both must match
        ("0 5 * * *", "2026-01-01T00:00:00", "2026-01-01T05:00:00"),  # five fields: no seconds
    ],
)
def test_ncrontab_next_occurrence(expr: str, after: str, expected: str) -> None:
    assert parse_schedule(expr).next_after(_t(after)) == _t(expected)


def test_ncrontab_matches_and_timespan() -> None:
    schedule = parse_schedule("0,30 * * * * *")
    assert isinstance(schedule, CronSchedule)
    assert schedule.matches(_t("2026-01-01T10:00:30")) and not schedule.matches(_t("2026-01-01T10:00:31"))
    interval = parse_schedule("00:00:05")
    assert isinstance(interval, IntervalSchedule)
    assert interval.next_after(_t("2026-01-01T00:00:00")) == _t("2026-01-01T00:00:05")


@pytest.mark.parametrize(
    "expr",
    ["* * * *", "60 * * * * *", "*/0 * * * * *", "5-1 * * * * *", "a * * * * *", "0 0 0 31 2 *", "1,,2 * * * * *"],
)
def test_ncrontab_rejects_bad_expressions(expr: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(expr).next_after(_t("2026-01-01T00:00:00"))


# ----------------------------------------------------------------------------- routes


def test_route_params_optional_defaults_and_constraints() -> None:
    route = compile_route("items/{id:int:min(1)}/{name?}")
    assert route.match("items/5") == {"id": "5"}
    assert route.match("items/5/x%20y") == {"id": "5", "name": "x y"}
    assert route.match("items/0") is None
    assert route.match("items/x") is None
    assert compile_route("a/{v=dflt}").match("a") == {"v": "dflt"}
    assert compile_route("f/{file}.{ext}").match("f/report.final.csv") == {"file": "report.final", "ext": "csv"}
    assert compile_route("r/{code:regex(^[a-z]{{3}}$)}").match("r/abc") is not None
    assert compile_route("r/{code:length(3)}").match("r/abcd") is None
    assert compile_route("g/{id:guid}").match("g/8d3f5c2e-1f4b-4c1e-9a41-7d2c1e8f0a11") is not None
    assert compile_route("e/{v}").match("e/a%2Fb") == {"v": "a%2Fb"}  # encoded slash stays encoded


def test_route_table_precedence_and_methods() -> None:
    table: RouteTable[str] = RouteTable(
        [
            RouteEntry(compile_route("things/{id}"), frozenset({"GET"}), "by-id"),
            RouteEntry(compile_route("things/{*rest}"), None, "catch-all"),
            RouteEntry(compile_route("things/new"), frozenset({"GET"}), "literal"),
            RouteEntry(compile_route("things/{id}"), frozenset({"POST"}), "post-by-id"),
        ]
    )
    assert table.resolve("things/new", "GET")[0].target == "literal"  # type: ignore[union-attr]
    assert table.resolve("things/7", "GET")[0].target == "by-id"  # type: ignore[union-attr]
    assert table.resolve("things/7", "POST")[0].target == "post-by-id"  # type: ignore[union-attr]
    assert table.resolve("things/7/8", "DELETE")[0].target == "catch-all"  # type: ignore[union-attr]
    only_get: RouteTable[str] = RouteTable([RouteEntry(compile_route("x"), frozenset({"GET"}), "x")])
    assert only_get.resolve("x", "DELETE") == (None, {}, True)


@pytest.mark.parametrize("template", ["a/{id:nope}", "a/{*rest}/b", "a/{x?}/b", "a/{x}/{x}", "a//b", "a/{b"])
def test_bad_routes_are_rejected(template: str) -> None:
    with pytest.raises(RouteError):
        compile_route(template)


# ----------------------------------------------------------------------------- settings, host.json, keys


def test_local_settings_fill_the_environment_but_existing_variables_win(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(
        json.dumps(
            {"IsEncrypted": False, "Values": {"A": "from-file", "B": "from-file"}, "Host": {"LocalHttpPort": 7072}}
        )
    )
    env = {"A": "from-env"}
    doc = load_local_settings(path, env)
    assert env == {"A": "from-env", "B": "from-file"}
    assert doc["Host"]["LocalHttpPort"] == 7072
    path.write_text(json.dumps({"Values": {"N": 3}}))
    with pytest.raises(ConfigError, match="Values.N must be a string"):
        load_local_settings(path, {})


def test_host_json_queue_options_and_route_prefix(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "http": {"routePrefix": ""},
                    "queues": {"maxPollingInterval": "00:00:00.250", "maxDequeueCount": 3, "messageEncoding": "none"},
                },
            }
        )
    )
    config = load_host_json(path)
    assert config.route_prefix == ""
    assert config.queues.max_polling_interval == dt.timedelta(milliseconds=250)
    assert config.queues.max_dequeue_count == 3
    assert config.queues.message_encoding == "none"
    assert load_host_json(tmp_path / "missing.json").route_prefix == "api"
    assert parse_timespan("1.02:03:04", "x") == dt.timedelta(days=1, hours=2, minutes=3, seconds=4)


def test_disabled_setting() -> None:
    assert is_disabled("f", {"AzureWebJobs.f.Disabled": "true"})
    assert is_disabled("f", {"AzureWebJobs_f_Disabled": "1"})
    assert not is_disabled("f", {"AzureWebJobs.f.Disabled": "false"})


def test_keys_file_is_created_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.json"
    keys, changed = load_or_create(path, ["a", "b"])
    assert changed and path.exists()
    assert os.stat(path).st_mode & 0o777 == 0o600
    doc = json.loads(path.read_text())
    assert set(doc) == {"masterKey", "functionKeys", "systemKeys", "functions"}
    assert set(doc["systemKeys"]) == {"eventgrid_extension", "blobs_extension"}
    assert set(doc["functions"]) == {"a", "b"}
    again, changed = load_or_create(path, ["a", "b", "c"])
    assert changed and again.master_key == keys.master_key and again.functions["a"] == keys.functions["a"]
    assert again.allows_function("c", again.functions["c"]["default"])
    assert not again.allows_function("a", again.functions["c"]["default"])
    assert again.allows_function("a", again.default_function_key)
    assert again.allows_system("blobs_extension", again.master_key)
    assert not again.allows_system("blobs_extension", again.system_keys["eventgrid_extension"])
    _, changed = load_or_create(path, ["a"])
    assert not changed


# ----------------------------------------------------------------------------- queue text, blob paths


def test_queue_text_decoding() -> None:
    assert decode_queue_text("aGVsbG8=", "base64") == b"hello"
    assert decode_queue_text('{"a": 1}', "base64") == b'{"a": 1}'
    assert decode_queue_text("test", "base64") == b"test"  # valid base64, but not of UTF-8 text
    assert decode_queue_text("aGVsbG8=", "none") == b"aGVsbG8="


def test_blob_urls_and_path_patterns() -> None:
    azurite = "http://127.0.0.1:10000/devstoreaccount1"
    assert split_blob_url(f"{azurite}/in/a/b%20c.txt", azurite) == ("in", "a/b c.txt")
    assert split_blob_url("http://127.0.0.1:9/acct/in/x", "http://other") == ("in", "x")
    assert split_blob_url("https://acct.blob.core.windows.net/in/x.csv", "https://acct.blob.core.windows.net/") == (
        "in",
        "x.csv",
    )
    m = path_pattern("in/{name}.csv").fullmatch("in/dir/data.csv")
    assert m is not None and m.group("name") == "dir/data"
    assert path_pattern("in/{name}").fullmatch("out/x") is None
    assert path_pattern("in").fullmatch("in/anything") is not None


# ----------------------------------------------------------------------------- process helper


def test_start_devhost_reports_a_broken_app() -> None:
    with pytest.raises(DevhostStartError, match="no_such_module"):
        start_devhost("no_such_module:app", timeout=20)


# ----------------------------------------------------------------------------- HTTP results


def test_http_results_convert_like_the_worker() -> None:
    import azure.functions as func

    from devhost.host import response_parts

    assert response_parts(None) == (200, [], b"")
    assert response_parts("hi") == (200, [(b"content-type", b"text/plain; charset=utf-8")], b"hi")
    status, headers, body = response_parts(
        func.HttpResponse(b"{}", status_code=201, mimetype="application/json", headers={"X-A": "1"})
    )
    assert (status, body) == (201, b"{}")
    assert (b"x-a", b"1") in headers and (b"content-type", b"application/json") in headers
    _, headers, _ = response_parts(func.HttpResponse("x", headers={"Content-Type": "text/csv"}))
    assert [v for k, v in headers if k == b"content-type"] == [b"text/csv"]
    with pytest.raises(TypeError):
        response_parts({"not": "allowed"})
