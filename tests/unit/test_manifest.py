"""Manifests on their own: parsing with key paths, guardrails, and the effective configuration a run carries."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import ManifestError
from shared.manifest import guardrail_problems, parse_manifest, run_config, settings_for
from shared.manifest.effective import RUN_FIELDS
from shared.settings import Settings

BASE = {"TUNEFLOW_STORAGE_CONNECTION": "x"}


def problems_of(manifest: object) -> list[str]:
    with pytest.raises(ManifestError) as err:
        parse_manifest(json.dumps(manifest))
    return err.value.problems


def test_a_full_manifest_parses_into_its_keys():
    m = parse_manifest(json.dumps({
        "$schema": "https://example.test/tuneflow.schema.json",
        "train": "chats.jsonl", "test": "held-out.parquet", "base_model": "Phi-3.5-mini-instruct",
        "base_model_version": 6, "registry": "azureml", "finetune": {"learning_rate": 2e-4, "apply_lora": True},
        "compute": "serverless", "instance_type": "Standard_NC24ads_A100_v4", "num_nodes": 2, "suffix": "support",
        "endpoint": "team-a-chat", "deployment": {"instance_type": "Standard_NC24ads_A100_v4", "instance_count": 2},
        "deploy": "never", "idle_teardown_minutes": 30, "tags": {"team": "a"}, "notify_url": "https://hooks.test/x",
    }))
    assert (m.train, m.test, m.base_model, m.base_model_version) == ("chats.jsonl", "held-out.parquet",
                                                                     "Phi-3.5-mini-instruct", "6")
    assert m.finetune == {"learning_rate": 2e-4, "apply_lora": True} and m.num_nodes == 2
    assert (m.deployment_instance_type, m.deployment_instance_count, m.deploy) == ("Standard_NC24ads_A100_v4", 2,
                                                                                  "never")
    assert m.idle_teardown_minutes == 30.0 and m.tags == {"team": "a"} and "$schema" not in m.keys
    assert m.keys >= {"train", "finetune", "deployment", "tags"}


def test_every_problem_is_reported_with_its_key_path_and_a_suggestion():
    found = problems_of({"compte": "serverless", "num_nodes": "two", "finetune": {"learning_rate": None},
                         "deployment": {"instance_cont": 2, "instance_type": "A100"}, "deploy": "maybe",
                         "tags": {"tuneflow.run_id": "x", "ok": 3}, "train": "../etc/passwd.jsonl",
                         "model_name": "m", "suffix": "s"})
    text = "\n".join(found)
    assert "compte: unknown key (did you mean 'compute'?)" in text
    assert 'num_nodes: expected an integer, got "two"' in text
    assert "finetune.learning_rate: expected a string, number or boolean, got null" in text
    assert "deployment.instance_cont: unknown key (did you mean 'instance_count'?)" in text
    assert 'deployment.instance_type: expected an Azure VM size' in text
    assert 'deploy: expected "auto" or "never", got "maybe"' in text
    assert "tags.tuneflow.run_id: tags starting with 'tuneflow' are tuneflow's own" in text
    assert "tags.ok: expected a string, got 3" in text
    assert "train: expected the name of a file in the dataset folder" in text
    assert "suffix: give model_name or suffix, not both" in text
    assert len(found) == 10


@pytest.mark.parametrize(("text", "expected"), [
    ('{"base_model": "x",\n  "num_nodes": 2,,}', "manifest: malformed JSON at line 2, column 18"),
    ('{"a": 1, "a": 2}', "manifest: key 'a' appears twice"),
    ("[1, 2]", "manifest: expected a JSON object, got [1, 2]"),
    (b"\xff\xfe{}", "manifest: not UTF-8 text (byte 0)"),
    ("[" * 10_000, "manifest: nested too deeply"),
])
def test_malformed_manifests_say_where(text, expected):
    with pytest.raises(ManifestError) as err:
        parse_manifest(text)
    assert err.value.problems[0].startswith(expected)


def test_a_manifest_larger_than_64_kib_is_refused_without_parsing():
    with pytest.raises(ManifestError, match="at most 64 KiB"):
        parse_manifest(json.dumps({"tags": {"a": "x" * 70_000}}))


def test_bools_are_not_numbers_and_integers_are_not_floats_in_disguise():
    assert "num_nodes: expected an integer, got true" in problems_of({"num_nodes": True})
    assert "idle_teardown_minutes: expected a number, got false" in problems_of({"idle_teardown_minutes": False})
    assert "num_nodes: expected an integer from 1 to 64, got 0" in problems_of({"num_nodes": 0})


def test_guardrails_name_the_rule_a_manifest_broke():
    s = Settings.from_env({**BASE, "TUNEFLOW_ALLOWED_BASE_MODELS": "Phi-4-mini-instruct",
                           "TUNEFLOW_ALLOWED_INSTANCE_TYPES": "Standard_NC24ads_A100_v4",
                           "TUNEFLOW_MAX_INSTANCES": "2", "TUNEFLOW_ENDPOINT_PREFIX": "team-a-"})
    m = parse_manifest(json.dumps({"base_model": "Llama-3", "endpoint": "chat",
                                   "deployment": {"instance_type": "Standard_ND96asr_v4", "instance_count": 3}}))
    assert guardrail_problems(m, s) == [
        "base_model: 'Llama-3' is not allowed here (TUNEFLOW_ALLOWED_BASE_MODELS: Phi-4-mini-instruct)",
        "deployment.instance_type: 'Standard_ND96asr_v4' is not allowed here "
        "(TUNEFLOW_ALLOWED_INSTANCE_TYPES: Standard_NC24ads_A100_v4)",
        "deployment.instance_count: 3 is more than allowed here (TUNEFLOW_MAX_INSTANCES: 2)",
        "endpoint: 'chat' does not start with 'team-a-' (TUNEFLOW_ENDPOINT_PREFIX)",
    ]
    # what the manifest leaves to the app's defaults is not held against the guardrails
    assert guardrail_problems(parse_manifest("{}"), s) == []


def test_the_effective_configuration_merges_the_manifest_over_the_settings():
    s = Settings.from_env({**BASE, "TUNEFLOW_BASE_MODEL_VERSION": "7", "TUNEFLOW_FINETUNE_PARAMS": '{"lora_r": 8}'})
    default = run_config(s)
    assert set(default) == set(RUN_FIELDS) | {"finetune"}
    assert default["model_name"] == "Phi-4-mini-instruct-ft" and default["base_model_version"] == "7"
    m = parse_manifest(json.dumps({"base_model": "Phi-3.5-mini-instruct", "suffix": "support",
                                   "finetune": {"learning_rate": 1e-4}, "endpoint": "support-chat",
                                   "deployment": {"instance_count": 2}}))
    config = run_config(s, m)
    assert config["model_name"] == "Phi-3.5-mini-instruct-ft-support"
    assert config["base_model_version"] is None  # the app's pin was for its own default model
    assert config["finetune_params"] == {"lora_r": 8} and config["finetune"] == {"learning_rate": 1e-4}
    run_s = settings_for(s, json.loads(json.dumps(config)))  # as stored on the run record
    assert (run_s.base_model, run_s.endpoint, run_s.instance_count) == ("Phi-3.5-mini-instruct", "support-chat", 2)
    assert run_s.registered_model_name == "Phi-3.5-mini-instruct-ft-support"
    assert settings_for(s, {}) is s  # a run from before manifests uses the app's settings


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
keys = st.sampled_from(["train", "test", "base_model", "base_model_version", "finetune", "compute", "num_nodes",
                        "suffix", "endpoint", "deployment", "deploy", "tags", "notify_url", "source", "idle"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=6))
def test_any_json_object_either_parses_or_names_a_key_for_every_problem(manifest):
    try:
        parsed = parse_manifest(json.dumps(manifest))
    except ManifestError as exc:
        assert exc.problems
        for problem in exc.problems:
            path = problem.split(":", 1)[0]
            assert path.split(".", 1)[0] in manifest or path in ("manifest", "suffix", "source", "test"), problem
    else:
        assert parsed.keys == set(manifest)
