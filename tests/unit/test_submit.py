"""Submission at the HTTP layer: the unmodified SDK against a fake ARM (responses)."""

import pytest
import responses

from shared.errors import ComputeError, FinetuneParameterError, ModelUnavailableError, TransientError
from shared.runs import Run, RunState
from shared.settings import Settings
from tests.support.fake_arm import FakeArm
from tests.support.submission import submitter

SETTINGS = {"TUNEFLOW_BASE_MODEL": "Phi-3-mini-4k-instruct",  # the model the fake registry holds
            "TUNEFLOW_STORAGE_CONNECTION": "AccountName=devstoreaccount1;AccountKey=a2V5",
            "TUNEFLOW_SUBSCRIPTION_ID": "sub", "TUNEFLOW_RESOURCE_GROUP": "rg", "TUNEFLOW_WORKSPACE": "ws"}


def run() -> Run:
    return Run(run_id="abc123", state=RunState.VALIDATING, dataset="datasets/a.jsonl", sources=["a.jsonl"],
               base_model="Phi-3-mini-4k-instruct", sha256="f" * 64,
               train_path="prepared/x/train.jsonl", test_path="prepared/x/test.jsonl")


@pytest.fixture
def arm():
    fake = FakeArm()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        yield fake


@pytest.fixture
def spec(reference_dir):
    return reference_dir / "azureml" / "chat_completion_pipeline.spec.yaml"


def settings(**extra: str) -> Settings:
    return Settings.from_env({**SETTINGS, **extra})


def test_submits_one_job_with_the_expected_body(arm, spec):
    job = submitter(settings(TUNEFLOW_FINETUNE_PARAMS='{"num_train_epochs": 1}'), spec).submit(run())
    assert job.name == "tuneflow-abc123" and not job.already_existed
    (body,) = arm.puts("/jobs/")
    props = body["properties"]
    step = props["jobs"]["chat_completion_pipeline"]
    assert step["componentId"] == "azureml://registries/azureml/components/chat_completion_pipeline/versions/0.0.82"
    assert step["inputs"]["mlflow_model_path"]["uri"] == "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/7"
    assert step["inputs"]["train_file_path"]["uri"] == "azureml://datastores/tuneflow/paths/prepared/x/train.jsonl"
    assert step["inputs"]["test_file_path"]["uri"] == "azureml://datastores/tuneflow/paths/prepared/x/test.jsonl"
    assert step["inputs"]["compute_finetune"]["value"] == "gpu-cluster-big"
    assert step["inputs"]["number_of_gpu_to_use_finetuning"]["value"] == "1"
    assert step["inputs"]["num_train_epochs"]["value"] == "1"  # settings override the notebook's 3
    assert step["inputs"]["precision"]["value"] == "16"  # from the model's model_specific_defaults tag
    assert props["tags"]["tuneflow.run_id"] == "abc123" and props["tags"]["tuneflow.sha256"] == "f" * 64
    assert props["experimentName"] == "tuneflow-chat-finetune"
    assert props["settings"]["force_rerun"] is True and props["settings"]["continue_on_step_failure"] is False
    assert props["outputs"]["trained_model"]["jobOutputType"] == "mlflow_model"


def test_an_existing_job_name_means_already_submitted(arm, spec):
    sub = submitter(settings(), spec)
    sub.submit(run())
    again = sub.submit(run())
    assert again.already_existed and len(arm.puts("/jobs/")) == 1


def test_the_datastore_is_registered_when_missing(arm, spec):
    arm.datastore_exists = False
    submitter(settings(), spec).submit(run())
    (store,) = arm.puts("/datastores/tuneflow")
    assert store["properties"]["containerName"] == "tuneflow"
    assert store["properties"]["accountName"] == "devstoreaccount1"


@pytest.mark.parametrize(("registry", "message"), [
    ({"missing": True}, "was not found (it may be archived or retired)"),
    ({"stage": "Archived"}, "is archived and cannot be fine-tuned"),
    ({"model_tags": {"FinetuneDeprecationDate": "2025-06-30", "InferenceDeprecationDate": "2025-06-30"}},
     "is deprecated for fine-tuning (FinetuneDeprecationDate=2025-06-30)"),
    ({"model_tags": {"deprecated": "true"}}, "is deprecated for fine-tuning (deprecated=true)"),
])
def test_unavailable_base_models_are_actionable(arm, spec, registry, message):
    with pytest.raises(ModelUnavailableError, match="TUNEFLOW_BASE_MODEL") as err:
        submitter(settings(), spec, **registry).submit(run())
    assert message in str(err.value) and not arm.puts("/jobs/")


def test_compute_checks(arm, spec):
    arm.compute_size = "Standard_DS3_v2"
    with pytest.raises(ComputeError, match="not in Phi-3-mini-4k-instruct's finetune_compute_allow_list"):
        submitter(settings(), spec).submit(run())
    arm.compute_size, arm.compute_state = "Standard_NC24ads_A100_v4", "Failed"
    with pytest.raises(ComputeError, match="is in a failed state"):
        submitter(settings(), spec).submit(run())
    with pytest.raises(ComputeError, match="does not exist in the workspace"):
        submitter(settings(TUNEFLOW_COMPUTE="nope"), spec).submit(run())
    with pytest.raises(ComputeError, match="exceeds compute 'gpu-cluster-big'"):
        arm.compute_state = "Succeeded"
        submitter(settings(TUNEFLOW_NUM_NODES="4"), spec).submit(run())
    assert not arm.puts("/jobs/")


def test_bad_parameters_fail_before_anything_is_submitted(arm, spec):
    with pytest.raises(FinetuneParameterError, match="TUNEFLOW_FINETUNE_PARAMS.lr_scheduler_type: expected one of"):
        submitter(settings(TUNEFLOW_FINETUNE_PARAMS='{"lr_scheduler_type": "exp"}'), spec).submit(run())
    assert not arm.puts("/jobs/")


def test_refusals_are_permanent_and_throttling_is_transient(arm, spec):
    from shared.errors import AzureMLError
    arm.job_status = 400
    with pytest.raises(AzureMLError, match="refused \\(400\\): the workspace refused the job") as err:
        submitter(settings(), spec).submit(run())
    assert not err.value.transient
    arm.job_status = 503
    with pytest.raises(TransientError):
        submitter(settings(), spec).submit(run())


def test_deprecation_dates_in_the_future_or_for_inference_only_do_not_block():
    from datetime import date

    from shared.azureml.preflight import finetune_deprecations

    today = date(2026, 11, 24)
    assert finetune_deprecations({"FinetuneDeprecationDate": "2027-01-31"}, today) == []
    assert finetune_deprecations({"InferenceDeprecationDate": "2025-06-30"}, today) == []
    assert finetune_deprecations({"FinetuneDeprecationDate": "2026-11-24"}, today) == [
        "FinetuneDeprecationDate=2026-11-24"]
