import pytest
from azure.ai.ml import load_component

from shared.azureml.params import NOTEBOOK_DEFAULTS, resolve
from shared.errors import FinetuneParameterError


@pytest.fixture(scope="module")
def inputs(reference_dir):
    return load_component(source=reference_dir / "azureml" / "chat_completion_pipeline.spec.yaml").inputs


def test_layers_merge_in_order_and_coerce_to_the_component_types(inputs):
    params = resolve(inputs, {"precision": "16", "apply_lora": "true"},
                     {"num_train_epochs": "1", "learning_rate": 1e-4, "apply_deepspeed": False, "deepspeed_stage": 3})
    assert params["num_train_epochs"] == 1 and params["learning_rate"] == 1e-4
    assert params["apply_deepspeed"] == "false" and params["deepspeed_stage"] == "3"
    assert params["precision"] == "16" and params["lr_scheduler_type"] == NOTEBOOK_DEFAULTS["lr_scheduler_type"]


def test_every_bad_override_is_reported_at_once(inputs):
    with pytest.raises(FinetuneParameterError) as err:
        resolve(inputs, {}, {"num_train_epoch": 1, "lr_scheduler_type": "exponential", "lora_r": "eight",
                             "apply_lora": "yes", "train_file_path": "x", "num_nodes_finetune": 0})
    msg = str(err.value)
    key = "TUNEFLOW_FINETUNE_PARAMS"
    assert f"{key}.num_train_epoch: not an input of the pipeline component (did you mean 'num_train_epochs'?)" in msg
    assert f"{key}.lr_scheduler_type: expected one of linear, cosine" in msg
    assert f'{key}.lora_r: expected an integer, got "eight"' in msg
    assert f'{key}.apply_lora: expected one of true, false, got "yes"' in msg
    assert f"{key}.train_file_path: set by tuneflow" in msg and f"{key}.num_nodes_finetune: set by tuneflow" in msg
    assert len(err.value.context["problems"]) == 6


def test_a_manifest_layer_wins_and_its_problems_name_the_manifest_key(inputs):
    params = resolve(inputs, {"learning_rate": 1e-5}, {"learning_rate": 2e-5}, {"learning_rate": 3e-4})
    assert params["learning_rate"] == 3e-4
    with pytest.raises(FinetuneParameterError) as err:
        resolve(inputs, {}, {}, {"learning_rate": "fast", "lora_r": True})
    assert err.value.context["problems"] == ['finetune.learning_rate: expected a number, got "fast"',
                                             "finetune.lora_r: expected an integer, got true"]


def test_unknown_keys_in_the_model_tag_are_skipped_not_fatal(inputs):
    assert "future_knob" not in resolve(inputs, {"future_knob": "1"}, {})


def test_early_stopping_is_on_by_default_with_a_test_split_and_off_without(inputs):
    with_split = resolve(inputs, {}, {})
    assert with_split["apply_early_stopping"] == "true" and with_split["early_stopping_patience"] == 2
    assert with_split["metric_for_best_model"] == "loss"
    without = resolve(inputs, {}, {}, test_split=False)
    assert "apply_early_stopping" not in without and "early_stopping_patience" not in without
    off = resolve(inputs, {}, {}, {"apply_early_stopping": False})  # the user's layer wins
    assert off["apply_early_stopping"] == "false"
    tuned = resolve(inputs, {}, {"early_stopping_patience": 4}, {"early_stopping_threshold": 0.01,
                                                                   "save_total_limit": 2})
    assert (tuned["early_stopping_patience"], tuned["early_stopping_threshold"], tuned["save_total_limit"]) == (
        4, 0.01, 2)


def test_early_stopping_inputs_are_checked_and_named_by_where_they_came_from(inputs):
    with pytest.raises(FinetuneParameterError) as caught:
        resolve(inputs, {}, {"early_stopping_patience": 0}, {"early_stopping_threshold": -0.5, "save_total_limit": 0})
    assert caught.value.context["problems"] == [
        "TUNEFLOW_FINETUNE_PARAMS.early_stopping_patience: expected at least 1, got 0",
        "finetune.early_stopping_threshold: expected zero or more, got -0.5",
        "finetune.save_total_limit: expected -1 (keep all) or a positive integer, got 0"]
    with pytest.raises(FinetuneParameterError, match="finetune.apply_early_stopping: early stopping needs a test"):
        resolve(inputs, {}, {}, {"apply_early_stopping": "true"}, test_split=False)
    with pytest.raises(FinetuneParameterError, match='finetune.evaluation_strategy is "disable"'):
        resolve(inputs, {}, {}, {"evaluation_strategy": "disable"})
