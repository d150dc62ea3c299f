"""The reference notebook's steps, as code, against an emulator.

Source: Azure/azureml-examples ``sdk/python/foundation-models/system/finetune/chat-completion/
chat-completion.ipynb``. Only how the two ``MLClient``s are built differs (custom cloud from the
emulator's connection.json); every SDK call below is the notebook's, in its order, with its arguments.
The dataset download cell is replaced by a small local dataset of the same shape.
"""

from __future__ import annotations

import ast
import io
import json
import time
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _capitals() -> list[tuple[str, str]]:
    # The facts the emulator's tiny base model was pre-trained on (its corpus states every capital).
    from emulator.basemodel import COUNTRIES

    return [(country, capital) for country, capital, *_ in COUNTRIES]


CAPITALS = _capitals()
HELD_OUT = 4  # the last countries never appear in training: test questions come from them


def write_dataset(directory: Path, rows: int = 16) -> Path:
    """``train_sft.jsonl``, ``test_sft.jsonl``, ``test_gen.jsonl`` in the notebook's (ultrachat) shape.

    Training rows ask for capitals of most countries; the test splits ask only about held-out ones.
    """
    directory.mkdir(parents=True, exist_ok=True)
    train, held_out = CAPITALS[:-HELD_OUT], CAPITALS[-HELD_OUT:]

    def row(i: int, country: str, capital: str) -> dict[str, Any]:
        question = f"What is the capital of {country}?"
        messages = [
            {"role": "user", "content": question},
            {"role": "assistant", "content": f"The capital of {country} is {capital}."},
        ]
        return {"prompt": question, "messages": messages, "prompt_id": f"{i:064x}"}

    splits = {
        "train_sft": [row(i, *train[i % len(train)]) for i in range(rows)],
        "test_sft": [row(rows + i, *held_out[i]) for i in range(2)],
        "test_gen": [row(rows + 2 + i, *held_out[2 + i]) for i in range(2)],
    }
    for name, items in splits.items():
        with (directory / f"{name}.jsonl").open("w") as fh:
            for item in items:
                fh.write(json.dumps(item) + "\n")
    return directory


@dataclass
class NotebookResult:
    job_name: str
    job_status: str
    stream_output: str
    model_id: str
    model_version: str
    endpoint_name: str
    response: str
    pipeline_display_name: str


def run_notebook(
    workspace_ml_client: Any,
    registry_ml_client: Any,
    dataset_dir: Path,
    *,
    extra_finetune_parameters: dict[str, Any] | None = None,
) -> NotebookResult:
    from azure.ai.ml import Input
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.dsl import pipeline
    from azure.ai.ml.entities import (
        ManagedOnlineDeployment,
        ManagedOnlineEndpoint,
        Model,
        OnlineRequestSettings,
        ProbeSettings,
    )

    experiment_name = "chat_completion_Phi-3-mini-4k-instruct"
    timestamp = str(int(time.time()))

    # 2. Pick a foundation model to fine tune
    model_name = "Phi-3-mini-4k-instruct"
    foundation_model = registry_ml_client.models.get(model_name, label="latest")

    # 3. Create a compute to be used with the job
    if "finetune_compute_allow_list" in foundation_model.tags:
        computes_allow_list = ast.literal_eval(foundation_model.tags["finetune_compute_allow_list"])
    else:
        computes_allow_list = None
    compute_cluster = "gpu-cluster-big"
    compute = workspace_ml_client.compute.get(compute_cluster)
    if compute.provisioning_state.lower() == "failed":
        raise ValueError(f"Provisioning failed, Compute '{compute_cluster}' is in failed state.")
    if computes_allow_list is not None:
        computes_allow_list_lower_case = [x.lower() for x in computes_allow_list]
        if compute.size.lower() not in computes_allow_list_lower_case:
            raise ValueError(f"VM size {compute.size} is not in the allow-listed computes for finetuning")
    gpu_count_found = False
    workspace_compute_sku_list = workspace_ml_client.compute.list_sizes()
    available_sku_sizes = []
    gpus_per_node = 0
    for compute_sku in workspace_compute_sku_list:
        available_sku_sizes.append(compute_sku.name)
        if compute_sku.name.lower() == compute.size.lower():
            gpus_per_node = compute_sku.gpus
            gpu_count_found = True
    if not gpu_count_found:
        raise ValueError(f"Number of GPU's in compute {compute.size} not found. Available skus are: {available_sku_sizes}.")

    # 5. Submit the fine tuning job using the model and data as inputs
    training_parameters = {
        "num_train_epochs": 3,
        "per_device_train_batch_size": 1,
        "per_device_eval_batch_size": 1,
        "learning_rate": 5e-6,
        "lr_scheduler_type": "cosine",
    }
    optimization_parameters = {"apply_lora": "true", "apply_deepspeed": "true", "deepspeed_stage": 2}
    finetune_parameters: dict[str, Any] = {**training_parameters, **optimization_parameters}
    if "model_specific_defaults" in foundation_model.tags:
        finetune_parameters.update(ast.literal_eval(foundation_model.tags["model_specific_defaults"]))
    # Not in the notebook: keep CPU training short (both are pipeline inputs of the component).
    finetune_parameters.update(extra_finetune_parameters or {})

    def get_pipeline_display_name() -> str:
        batch_size = (
            int(finetune_parameters.get("per_device_train_batch_size", 1))
            * int(finetune_parameters.get("gradient_accumulation_steps", 1))
            * int(gpus_per_node)
            * int(finetune_parameters.get("num_nodes_finetune", 1))
        )
        scheduler = finetune_parameters.get("lr_scheduler_type", "linear")
        deepspeed = finetune_parameters.get("apply_deepspeed", "false")
        ds_stage = finetune_parameters.get("deepspeed_stage", "2")
        ds_string = f"ds{ds_stage}" if deepspeed == "true" else "nods"
        lora = finetune_parameters.get("apply_lora", "false")
        lora_string = "lora" if lora == "true" else "nolora"
        save_limit = finetune_parameters.get("save_total_limit", -1)
        seq_len = finetune_parameters.get("max_seq_length", -1)
        return (
            model_name + "-" + "ultrachat" + "-" + f"bs{batch_size}" + "-" + f"{scheduler}" + "-" + ds_string
            + "-" + lora_string + f"-save_limit{save_limit}" + f"-seqlen{seq_len}"
        )

    pipeline_display_name = get_pipeline_display_name()
    pipeline_component_func = registry_ml_client.components.get(name="chat_completion_pipeline", label="latest")

    @pipeline(name=pipeline_display_name)  # type: ignore[call-overload,untyped-decorator]
    def create_pipeline() -> dict[str, Any]:
        chat_completion_pipeline = pipeline_component_func(
            mlflow_model_path=foundation_model.id,
            compute_model_import=compute_cluster,
            compute_preprocess=compute_cluster,
            compute_finetune=compute_cluster,
            compute_model_evaluation=compute_cluster,
            train_file_path=Input(type="uri_file", path=str(dataset_dir / "train_sft.jsonl")),
            test_file_path=Input(type="uri_file", path=str(dataset_dir / "test_sft.jsonl")),
            number_of_gpu_to_use_finetuning=gpus_per_node,
            **finetune_parameters,
        )
        return {"trained_model": chat_completion_pipeline.outputs.mlflow_model_folder}

    pipeline_object = create_pipeline()
    pipeline_object.settings.force_rerun = True
    pipeline_object.settings.continue_on_step_failure = False
    pipeline_job = workspace_ml_client.jobs.create_or_update(pipeline_object, experiment_name=experiment_name)
    out = io.StringIO()
    with redirect_stdout(out):
        workspace_ml_client.jobs.stream(pipeline_job.name)

    # 6. Register the fine tuned model with the workspace
    job_after = workspace_ml_client.jobs.get(pipeline_job.name)
    assert "trained_model" in job_after.outputs
    model_path_from_job = f"azureml://jobs/{pipeline_job.name}/outputs/trained_model"
    finetuned_model_name = (model_name + "-ultrachat-200k").replace("/", "-")
    prepare_to_register_model = Model(
        path=model_path_from_job,
        type=AssetTypes.MLFLOW_MODEL,
        name=finetuned_model_name,
        version=timestamp,
        description=model_name + " fine tuned model for ultrachat 200k chat-completion",
    )
    registered_model = workspace_ml_client.models.create_or_update(prepare_to_register_model)

    # 7. Deploy the fine tuned model to an online endpoint
    online_endpoint_name = "ultrachat-completion-" + timestamp
    endpoint = ManagedOnlineEndpoint(
        name=online_endpoint_name,
        description="Online endpoint for " + registered_model.name + ", fine tuned model for ultrachat-200k",
        auth_mode="key",
    )
    workspace_ml_client.begin_create_or_update(endpoint).wait()
    instance_type = "STANDARD_NC4AS_T4_V3"
    demo_deployment = ManagedOnlineDeployment(
        name="demo",
        endpoint_name=online_endpoint_name,
        model=registered_model.id,
        instance_type=instance_type,
        instance_count=1,
        liveness_probe=ProbeSettings(initial_delay=600),
        request_settings=OnlineRequestSettings(request_timeout_ms=90000),
    )
    workspace_ml_client.online_deployments.begin_create_or_update(demo_deployment).wait()
    endpoint.traffic = {"demo": 100}
    workspace_ml_client.begin_create_or_update(endpoint).result()

    # 8. Test the endpoint with sample data
    test_rows = [json.loads(line) for line in (dataset_dir / "test_gen.jsonl").read_text().splitlines()]
    parameters = {"temperature": 0.6, "top_p": 0.9, "do_sample": True, "max_new_tokens": 200}
    test_json = {"input_data": {"input_string": [test_rows[0]["messages"][:1]], "parameters": parameters}, "params": {}}
    sample = dataset_dir / "sample_score.json"
    sample.write_text(json.dumps(test_json))
    response = workspace_ml_client.online_endpoints.invoke(
        endpoint_name=online_endpoint_name,
        deployment_name="demo",
        request_file=str(sample),
    )

    # 9. Delete the online endpoint
    workspace_ml_client.online_endpoints.begin_delete(name=online_endpoint_name).wait()
    return NotebookResult(
        job_name=pipeline_job.name,
        job_status=str(getattr(job_after.status, "value", job_after.status)),
        stream_output=out.getvalue(),
        model_id=registered_model.id,
        model_version=registered_model.version,
        endpoint_name=online_endpoint_name,
        response=response,
        pipeline_display_name=pipeline_display_name,
    )
