"""Every function is indexed with the right trigger and bindings (no host needed)."""

import json
from functools import cache

from tests.support.indexed import app_functions

EXPECTED = {
    # name: (trigger binding type, {other binding types})
    "ingest": ("eventGridTrigger", set()),
    "lifecycle": ("eventGridTrigger", set()),
    "reconcile": ("timerTrigger", set()),
    "api_score": ("httpTrigger", {"http"}),
    "api_score_status": ("httpTrigger", {"http"}),
    "api_chat_completions": ("httpTrigger", {"http"}),
    "api_runs": ("httpTrigger", {"http"}),
    "api_models": ("httpTrigger", {"http"}),
    "api_model": ("httpTrigger", {"http"}),
    "api_run": ("httpTrigger", {"http"}),
    "api_run_metrics": ("httpTrigger", {"http"}),
    "api_run_report": ("httpTrigger", {"http"}),
    "api_run_events": ("httpTrigger", {"http"}),
    "dashboard": ("httpTrigger", {"http"}),
    "dashboard_asset": ("httpTrigger", {"http"}),
    "api_run_cancel": ("httpTrigger", {"http"}),
    "api_health": ("httpTrigger", {"http"}),
    "api_teardown_endpoint": ("httpTrigger", {"http"}),
    "api_teardown_deployment": ("httpTrigger", {"http"}),
    "api_endpoints": ("httpTrigger", {"http"}),
    "api_endpoint_status": ("httpTrigger", {"http"}),
    "api_deployment_status": ("httpTrigger", {"http"}),
    "score_jobs": ("queueTrigger", set()),
    "work": ("queueTrigger", set()),
    "idle_teardown": ("timerTrigger", set()),
}


@cache
def indexed():
    functions = {}
    for fn in app_functions():
        bindings = [json.loads(b) if isinstance(b, str) else b for b in json.loads(fn.get_function_json())["bindings"]]
        trigger = next(b for b in bindings if b["type"].endswith("Trigger"))
        functions[fn.get_function_name()] = (trigger, [b for b in bindings if b is not trigger])
    return functions


def test_every_function_is_indexed_with_its_trigger_and_bindings():
    functions = indexed()
    assert set(functions) == set(EXPECTED)
    for name, (trigger_type, others) in EXPECTED.items():
        trigger, bindings = functions[name]
        assert trigger["type"] == trigger_type, name
        assert trigger["direction"].lower() == "in"
        assert {b["type"] for b in bindings} == others, name


def test_ingest_takes_the_event_as_its_argument():
    trigger, _ = indexed()["ingest"]
    assert trigger["name"] == "event"


def test_only_the_dashboards_assets_are_served_without_a_key():
    """The page and every data route need a key; the assets (code, no data) cannot carry one in <script src>."""
    levels = {name: trigger.get("authLevel") for name, (trigger, _) in indexed().items() if trigger["type"] == "httpTrigger"}
    assert {name for name, level in levels.items() if str(level).upper() == "ANONYMOUS"} == {"dashboard_asset"}
    assert str(levels["dashboard"]).upper() == "FUNCTION"
