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
    assert "num_train_epoch is not an input of the pipeline component (did you mean 'num_train_epochs'?)" in msg
    assert "lr_scheduler_type must be one of linear, cosine" in msg
    assert "lora_r must be an integer, got 'eight'" in msg
    assert "apply_lora must be one of true, false, got 'yes'" in msg
    assert "train_file_path is set by tuneflow" in msg and "num_nodes_finetune is set by tuneflow" in msg


def test_unknown_keys_in_the_model_tag_are_skipped_not_fatal(inputs):
    assert "future_knob" not in resolve(inputs, {"future_knob": "1"}, {})
