import json
import re
from pathlib import Path

import pytest

from shared.errors import SettingsError
from shared.settings import Settings, setting_docs

ROOT = Path(__file__).resolve().parents[2]
BASE = {"TUNEFLOW_STORAGE_CONNECTION": "UseDevelopmentStorage=true"}


def test_defaults_and_typed_values():
    s = Settings.from_env({**BASE, "TUNEFLOW_TEST_FRACTION": "0.1", "TUNEFLOW_NUM_NODES": "2",
                           "TUNEFLOW_RESERVED_TOKENS": "<a>, <b>", "TUNEFLOW_FINETUNE_PARAMS": '{"num_train_epochs": 1}'})
    assert s.test_fraction == 0.1 and s.num_nodes == 2
    assert s.reserved_tokens == ("<a>", "<b>")
    assert s.finetune_params == {"num_train_epochs": 1}
    assert s.base_model == "Phi-4-mini-instruct" and s.validation_policy == "strict"


def test_every_problem_is_named_with_what_is_expected():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({**BASE, "TUNEFLOW_TEST_FRACTION": "lots", "TUNEFLOW_VALIDATION_POLICY": "lenient",
                           "TUNEFLOW_FINETUNE_PARAMS": "[1]", "TUNEFLOW_NUM_NODES": "0"})
    message = str(err.value)
    assert "TUNEFLOW_TEST_FRACTION: expected a number (got 'lots')" in message
    assert "TUNEFLOW_VALIDATION_POLICY: expected one of strict, drop-invalid" in message
    assert "TUNEFLOW_FINETUNE_PARAMS: expected a JSON object" in message
    # a range problem is reported beside the parse problems, not only once everything else parsed
    assert "TUNEFLOW_NUM_NODES: expected a positive integer (got 0)" in message


def test_range_checks_and_missing_storage():
    with pytest.raises(SettingsError, match="TUNEFLOW_TEST_FRACTION: expected a number between 0.0 and 0.5"):
        Settings.from_env({**BASE, "TUNEFLOW_TEST_FRACTION": "0.9"})
    with pytest.raises(SettingsError, match="TUNEFLOW_STORAGE_CONNECTION or TUNEFLOW_STORAGE_ACCOUNT_URL"):
        Settings.from_env({})


def test_secret_values_are_not_echoed():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"TUNEFLOW_STORAGE_CONNECTION": "AccountKey=s3cr3t", "TUNEFLOW_MIN_EXAMPLES": "x"})
    assert "s3cr3t" not in str(err.value)


def test_azureml_requirement_names_the_settings():
    s = Settings.from_env(BASE)
    with pytest.raises(SettingsError, match="TUNEFLOW_WORKSPACE"):
        s.require_azureml()
    assert Settings.from_env({**BASE, "TUNEFLOW_EMULATOR_CONNECTION": "/x/connection.json"}).azureml_configured


def test_example_settings_file_and_readme_list_every_setting():
    names = {env for env, _, _ in setting_docs()}
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert names <= set(example), f"missing from local.settings.json.example: {names - set(example)}"
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`((?:TUNEFLOW|AZURE)_[A-Z0-9_]+)`", readme))
    assert names <= documented, f"missing from the README settings table: {names - documented}"
    # and the example parses as valid settings
    Settings.from_env({k: v for k, v in example.items() if k in names})
