"""The fine-tuning pipeline job: ``chat_completion_pipeline`` wrapped in a dsl ``@pipeline``.

Built exactly as the reference notebook does, with the run's prepared train/test files as
``uri_file`` inputs on a datastore path, and the component's ``mlflow_model_folder`` exposed as the
pipeline output ``trained_model`` (the path the lifecycle registers the model from).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from shared.azureml.preflight import SERVERLESS, ComputeTarget

TRAINED_MODEL_OUTPUT = "trained_model"
# The dsl keeps the pipeline being built on a process-global stack: two threads building at once
# nest one pipeline inside the other. The Functions worker runs invocations on a thread pool.
_BUILD_LOCK = threading.Lock()


def job_name_for(run_id: str) -> str:
    """Job names are unique per workspace and never reused: the run's idempotency key in Azure ML."""
    return f"tuneflow-{run_id}"


def build_pipeline_job(
    component: Any,
    *,
    base_model_id: str,
    target: ComputeTarget,
    train_uri: str,
    test_uri: str,
    params: Mapping[str, Any],
    job_name: str,
    experiment: str,
    tags: Mapping[str, str],
) -> Any:
    from azure.ai.ml import Input
    from azure.ai.ml.dsl import pipeline

    compute = {
        f"compute_{step}": target.compute
        for step in ("model_import", "preprocess", "finetune", "model_evaluation")
    }
    if target.compute == SERVERLESS:
        compute["instance_type_finetune"] = target.instance_type
        compute["instance_type_model_evaluation"] = target.instance_type

    as_pipeline = pipeline(name=job_name, description=f"tuneflow fine-tune of {base_model_id}")  # type: ignore[call-overload]

    @as_pipeline  # type: ignore[untyped-decorator]
    def chat_finetune() -> dict[str, Any]:
        chat_completion_pipeline = component(
            mlflow_model_path=base_model_id,
            train_file_path=Input(type="uri_file", path=train_uri),
            test_file_path=Input(type="uri_file", path=test_uri),
            number_of_gpu_to_use_finetuning=target.gpus_per_node,
            num_nodes_finetune=target.num_nodes,
            **compute,
            **params,
        )
        return {TRAINED_MODEL_OUTPUT: chat_completion_pipeline.outputs.mlflow_model_folder}

    with _BUILD_LOCK:
        job = chat_finetune()
    job.name = job_name
    job.display_name = job_name
    job.experiment_name = experiment
    job.tags = dict(tags)
    job.settings.force_rerun = True
    job.settings.continue_on_step_failure = False
    return job
