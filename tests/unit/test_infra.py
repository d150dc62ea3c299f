"""The Azure template (azure.yaml, infra/) held against the code, offline: the Bicep is parsed with
``pycep-parser`` (no Bicep compiler here) and ``checkov`` checks its policy.

- every module call passes parameters the module declares, and every required one;
- the app settings are exactly what the code knows: TUNEFLOW_* names from ``Settings`` (derived, not listed
  again), every ``%…%`` a binding references, identity-based connections for every binding connection and
  the host, ``AZURE_CLIENT_ID``; the ones with no safe default are set;
- role definition ids match Azure's built-in roles by name;
- the Event Grid filters are what ``ingest`` and ``lifecycle`` accept (``shared/events.py``);
- the postdeploy hooks read only outputs the template defines, in both shells.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from shared import events
from shared.settings import Settings
from tests.support.indexed import function_specs

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
# Azure's built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles)
BUILT_IN_ROLES = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "EventGrid Data Sender": "d5a91429-5739-47e2-a06b-3470a27159e7",
    "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
    "Monitoring Reader": "43d0d8ad-25c7-4714-9337-8ba259a9fe05",
}
# Settings the platform or its SDKs read, not the app's Settings class.
PLATFORM = {"AZURE_CLIENT_ID", "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            "PYTHON_ENABLE_INIT_INDEXING", "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"}
IDENTITY_CONNECTION = ("credential", "clientId")


@cache
def parsed(relative: str) -> dict[str, Any]:
    from pycep import BicepParser

    result: Any = BicepParser().parse(file_path=INFRA / relative)  # a TypedDict: read as plain JSON here
    return dict(result)


def config(item: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's body (a conditional one nests it under ``condition``)."""
    body: dict[str, Any] = item["config"]
    return body["config"] if "condition" in body else body


def bicep_files() -> list[str]:
    return sorted(str(p.relative_to(INFRA)) for p in INFRA.rglob("*.bicep"))


def app_settings() -> dict[str, Any]:
    app = parsed("modules/functionapp.bicep")["variables"]["platformSettings"]["value"]
    ours = config(parsed("main.bicep")["modules"]["app"])["params"]["appSettings"]
    return {**app, **ours}


def test_every_file_parses() -> None:
    assert len(bicep_files()) >= 10
    for name in bicep_files():
        assert parsed(name)["resources"] or parsed(name).get("modules"), name


@pytest.mark.parametrize("caller", ["main.bicep"])
def test_module_calls_match_the_modules_parameters(caller: str) -> None:
    base = (INFRA / caller).parent
    for name, module in parsed(caller)["modules"].items():
        path = (base / module["detail"]["path"]).relative_to(INFRA).as_posix()
        declared = parsed(path)["parameters"]
        passed = set(config(module)["params"])
        required = {p for p, spec in declared.items() if spec.get("default") is None}
        assert passed <= set(declared), f"{name}: unknown parameters {passed - set(declared)}"
        assert required <= passed, f"{name}: missing {required - passed}"


def test_app_settings_are_exactly_what_the_code_reads() -> None:
    settings = app_settings()
    known = {f.metadata["env"] for f in fields(Settings)}
    bindings = [b for spec in function_specs().values() for b in (spec.trigger, *spec.inputs, *spec.outputs)]
    expressions = {m for b in bindings for v in b.values() if isinstance(v, str)
                   for m in re.findall(r"%([A-Za-z0-9_]+)%", v)}
    connections = {str(b["connection"]) for b in bindings if b.get("connection")} | {"AzureWebJobsStorage"}
    for name in settings:
        base = name.split("__", 1)[0]
        assert name in known or name in PLATFORM or base in connections, f"{name}: no code reads it"
    no_safe_default = {"TUNEFLOW_STORAGE_ACCOUNT_URL", "TUNEFLOW_SUBSCRIPTION_ID", "TUNEFLOW_RESOURCE_GROUP",
                       "TUNEFLOW_WORKSPACE", "TUNEFLOW_COMPUTE"}
    assert no_safe_default <= known and no_safe_default <= set(settings)
    assert expressions and expressions <= set(settings), "a %…% a binding references is not set explicitly"
    for connection in connections:  # identity-based, never a connection string (shared keys are off)
        assert connection not in settings
        assert {f"{connection}__{p}" for p in IDENTITY_CONNECTION} <= set(settings)
        assert f"{connection}__queueServiceUri" in settings
    assert settings["AZURE_CLIENT_ID"] == settings["TUNEFLOW_STORAGE_CONNECTION__clientId"]


def test_storage_has_no_shared_keys_and_the_app_is_flex_consumption() -> None:
    account = config(parsed("modules/storage.bicep")["resources"]["account"])["properties"]
    assert account["allowSharedKeyAccess"] is False and account["allowBlobPublicAccess"] is False
    app = parsed("modules/functionapp.bicep")["resources"]
    assert config(app["plan"])["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    runtime = config(app["site"])["properties"]["functionAppConfig"]["runtime"]
    version = parsed("modules/functionapp.bicep")["parameters"]["pythonVersion"]["default"]
    assert runtime["name"] == "python" and version == "3.11"  # the project's Python (pyproject, CI)
    assert config(parsed("modules/monitoring.bicep")["resources"]["insights"])["properties"]["DisableLocalAuth"]


def test_the_notifications_topic_takes_entra_tokens_only() -> None:
    topic = config(parsed("modules/eventgrid.bicep")["resources"]["notifications"])
    assert topic["properties"]["disableLocalAuth"] is True and topic["identity"] == {"type": "SystemAssigned"}


def test_role_ids_are_azures_built_in_roles() -> None:
    roles = parsed("modules/rbac.bicep")["variables"]["roles"]["value"]
    by_id = {v: k for k, v in BUILT_IN_ROLES.items()}
    for key, role_id in roles.items():
        assert role_id in by_id, f"{key}: {role_id} is not a role of the table"
        assert re.sub(r"[^a-z]", "", by_id[role_id].lower()) == key.lower(), key
    ml_roles = parsed("modules/ml-rbac.bicep")["variables"]
    ml, reader = ml_roles["azureMLDataScientist"]["value"], ml_roles["monitoringReader"]["value"]
    assert ml == BUILT_IN_ROLES["AzureML Data Scientist"] and reader == BUILT_IN_ROLES["Monitoring Reader"]
    assert set(roles.values()) | {ml, reader} == set(BUILT_IN_ROLES.values())  # each role the design names is used


def test_event_grid_filters_are_what_the_functions_accept() -> None:
    ingest = config(parsed("subscriptions.bicep")["resources"]["ingest"])["properties"]
    assert ingest["destination"]["properties"]["resourceId"].endswith("/functions/ingest")
    assert ingest["filter"]["includedEventTypes"] == [events.BLOB_CREATED]
    (api,) = ingest["filter"]["advancedFilters"]
    assert api["key"] == "data.api" and sorted(api["values"]) == sorted(events.CREATE_APIS)
    assert ingest["filter"]["subjectBeginsWith"] == "/blobServices/default/containers/${dropContainer}/"
    assert ingest["retryPolicy"]["maxDeliveryAttempts"] == 30 and "deadLetterWithResourceIdentity" in ingest
    ml = {k: r for k, r in parsed("ml-subscriptions.bicep")["resources"].items() if "eventSubscriptions" in r["type"]}
    types = {t for sub in ml.values() for t in config(sub)["properties"]["filter"]["includedEventTypes"]}
    assert types == {events.RUN_STATUS_CHANGED, events.RUN_COMPLETED, events.MODEL_REGISTERED}
    (experiment,) = config(ml["runs"])["properties"]["filter"]["advancedFilters"]
    assert experiment["key"] == "data.experimentName" and experiment["values"] == ["experiment"]  # the parameter
    for sub in ml.values():
        assert config(sub)["properties"]["destination"] == "destination"
    destination = parsed("ml-subscriptions.bicep")["variables"]["destination"]["value"]
    assert destination["properties"]["resourceId"].endswith("/functions/lifecycle")
    assert app_settings()["TUNEFLOW_EXPERIMENT"] == parsed("main.bicep")["outputs"]["TUNEFLOW_EXPERIMENT"]["value"]


def test_compute_sizes_are_the_base_models_finetune_allow_list() -> None:
    from emulator.registry import FINETUNE_COMPUTES  # the emulator mirrors the registry's published tags

    allowed = next(d["argument"] for d in parsed("main.bicep")["parameters"]["computeVmSize"]["decorators"]
                   if d["type"] == "allowed")
    assert sorted(allowed) == sorted(FINETUNE_COMPUTES)


def test_the_hooks_read_only_outputs_the_template_defines() -> None:
    import yaml

    azure = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert azure["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    outputs = set(parsed("main.bicep")["outputs"])
    for shell in ("posix", "windows"):
        script = ROOT / azure["hooks"]["postdeploy"][shell]["run"]
        text = script.read_text()
        used = set(re.findall(r"\$\{?(?:env:)?([A-Z][A-Z0-9_]+)", text)) - {"LASTEXITCODE", "ErrorActionPreference"}
        assert used and used <= outputs, f"{script.name}: {used - outputs} are not outputs of main.bicep"
        for template in re.findall(r"infra/[\w-]+\.bicep", text):
            assert (ROOT / template).is_file()


def test_the_prepackage_hooks_ship_the_chart_library_the_makefile_installs() -> None:
    import yaml

    azure = yaml.safe_load((ROOT / "azure.yaml").read_text())
    makefile = (ROOT / "Makefile").read_text()
    files = re.findall(r"node_modules/uplot/dist/\S+", makefile)
    assert files
    for shell in ("posix", "windows"):
        text = (ROOT / azure["hooks"]["prepackage"][shell]["run"]).read_text()
        assert "npm ci" in text and "shared/dashboard/static/vendor" in text
        assert all(f.rstrip(",") in text for f in files), shell


def test_checkov_passes_over_the_template() -> None:
    checkov = ROOT / ".venv-infra" / "bin" / "checkov"
    assert checkov.exists(), "make install puts checkov in .venv-infra (requirements-infra.txt)"
    out = subprocess.run([str(checkov), "-d", str(INFRA), "--framework", "bicep", "--compact", "--quiet",
                          "--skip-download"],
                         capture_output=True, text=True, check=False, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
