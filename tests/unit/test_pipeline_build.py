"""The pipeline built from the published component spec validates and serialises offline."""

from shared.azureml.pipeline import TRAINED_MODEL_OUTPUT, build_pipeline_job, job_name_for
from shared.azureml.preflight import ComputeTarget
from tests.support.fake_registry import registry_component


def build(reference_dir, target=None):
    component = registry_component(reference_dir / "azureml" / "chat_completion_pipeline.spec.yaml")
    return build_pipeline_job(
        component, base_model_id="azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/7",
        target=target or ComputeTarget("gpu-cluster-big", "Standard_NC24ads_A100_v4", 2, 1),
        train_uri="azureml://datastores/tuneflow/paths/prepared/x/train.jsonl",
        test_uri="azureml://datastores/tuneflow/paths/prepared/x/test.jsonl",
        params={"num_train_epochs": 1, "apply_lora": "true"}, job_name=job_name_for("abc"),
        experiment="tuneflow-chat-finetune", tags={"tuneflow.run_id": "abc"})


def test_offline_validation_and_rest_serialisation(reference_dir):
    job = build(reference_dir)
    result = job._validate()
    assert result.passed, result.error_messages
    rest = job._to_rest_object().as_dict()["properties"]
    step = rest["jobs"]["chat_completion_pipeline"]
    assert step["componentId"] == "azureml://registries/azureml/components/chat_completion_pipeline/versions/0.0.82"
    assert step["inputs"]["train_file_path"] == {"uri": "azureml://datastores/tuneflow/paths/prepared/x/train.jsonl",
                                                 "job_input_type": "uri_file"}
    assert step["inputs"]["number_of_gpu_to_use_finetuning"]["value"] == "2"
    assert step["inputs"]["compute_finetune"]["value"] == "gpu-cluster-big"
    assert step["outputs"]["mlflow_model_folder"]["value"] == "${{parent.outputs.%s}}" % TRAINED_MODEL_OUTPUT
    assert rest["settings"]["force_rerun"] is True and rest["settings"]["continue_on_step_failure"] is False
    assert job.experiment_name == "tuneflow-chat-finetune" and rest["tags"] == {"tuneflow.run_id": "abc"}
    assert job.name == "tuneflow-abc"


def test_serverless_sets_instance_types(reference_dir):
    job = build(reference_dir, ComputeTarget("serverless", "Standard_NC24ads_A100_v4", 1, 2))
    inputs = job._to_rest_object().as_dict()["properties"]["jobs"]["chat_completion_pipeline"]["inputs"]
    assert inputs["compute_finetune"]["value"] == "serverless"
    assert inputs["instance_type_finetune"]["value"] == "Standard_NC24ads_A100_v4"
    assert inputs["num_nodes_finetune"]["value"] == "2"
