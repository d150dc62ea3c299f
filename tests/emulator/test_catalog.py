"""The registry's model catalog: two fine-tunable chat models (the configured Phi-3 and Phi-4), read through the
SDK with their tags, each trained on its own stand-in weights."""

from __future__ import annotations

import ast
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from azure.ai.ml.exceptions import ValidationException
from azure.core.exceptions import ResourceNotFoundError

from emulator.pipeline_component import INPUTS
from tests.emulator import helpers
from tests.emulator.conftest import Admin

pytestmark = [pytest.mark.emulator, pytest.mark.integration]


def test_both_models_are_listed_and_read_with_their_registry_tags(ml_registry: Any) -> None:
    assert {"Phi-3-mini-4k-instruct", "Phi-4"} <= {m.name for m in ml_registry.models.list()}
    assert [m.version for m in ml_registry.models.list(name="Phi-4")] == ["8"]
    phi4 = ml_registry.models.get("Phi-4", label="latest")
    assert phi4.id == "azureml://registries/azureml/models/Phi-4/versions/8" and phi4.stage == "Active"
    tags = phi4.tags
    assert (tags["license"], tags["task"], tags["author"], tags["displayName"]) == (
        "MIT", "chat-completion", "Microsoft", "Phi-4")
    assert ast.literal_eval(tags["finetune_compute_allow_list"])[:5] == [
        "Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4", "Standard_NC96ads_A100_v4", "Standard_ND96asr_v4",
        "Standard_ND96amsr_A100_v4"]
    assert "Standard_NC6s_v3" not in ast.literal_eval(tags["inference_compute_allow_list"])  # A100/H100 only
    defaults = ast.literal_eval(tags["model_specific_defaults"])
    assert defaults["deepspeed_stage"] == 3 and defaults["learning_rate"] == 5e-6 and set(defaults) <= set(INPUTS)
    assert not [k for k in tags if "Deprecation" in k]  # still fine-tunable, unlike Phi-3
    assert phi4.properties["finetuning-tasks"] == "chat-completion"
    phi3 = ml_registry.models.get("Phi-3-mini-4k-instruct", label="latest")
    assert phi3.version == "15" and phi3.tags["FinetuneDeprecationDate"] == "2025-06-30"


def test_unknown_names_and_versions_stay_not_found(emu: Admin, ml_registry: Any) -> None:
    with pytest.raises(ResourceNotFoundError):
        ml_registry.models.get("Phi-4", version="7")
    with pytest.raises(ValidationException, match="does not exist"):  # what the SDK raises for label="latest"
        ml_registry.models.get("mistralai-Mistral-7B-Instruct-v0-2", label="latest")
    for uri, message in (
        ("azureml://registries/azureml/models/Phi-4/versions/7", "Phi-4 version 7 was not found"),
        ("azureml://registries/azureml/models/phi-4/versions/8", "was not found in registry azureml"),
    ):
        _, r = helpers.submit_job(emu, model=uri)
        assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
    job, r = helpers.submit_job(emu, model=helpers.PHI4)
    assert r.status_code == 201, r.text
    assert emu.wait_job(job)["status"] == "Completed"


def test_the_archive_knob_takes_registry_model_names(emu: Admin, ml_registry: Any) -> None:
    emu.faults(base_model_archived=["Phi-4"])
    assert ml_registry.models.get("Phi-4", version="8").stage == "Archived"
    with pytest.raises(ValidationException, match="does not exist"):  # the ActiveOnly listing is empty
        ml_registry.models.get("Phi-4", label="latest")
    assert ml_registry.models.get("Phi-3-mini-4k-instruct", label="latest").stage == "Active"
    emu.faults(base_model_archived=True)  # true: the configured base model, as before
    assert ml_registry.models.get("Phi-3-mini-4k-instruct", version="15").stage == "Archived"
    assert ml_registry.models.get("Phi-4", label="latest").stage == "Active"
    r = emu.http.post(emu.handle.admin_url + "/faults", json={"base_model_archived": "Phi-4"})
    assert r.status_code == 400 and "list of names" in r.text


def _blob_text(emu: Admin, prefix: str, suffix: str) -> str:
    from azure.storage.blob import ContainerClient

    cc = ContainerClient.from_connection_string(emu.conn["storage_connection_string"], emu.conn["datastore_container"])
    names = [b.name for b in cc.list_blobs(name_starts_with=prefix) if b.name.endswith(suffix)]
    assert names, f"no {suffix} under {prefix}"
    return str(cc.download_blob(names[0]).readall().decode())


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first run builds the Phi-4 stand-in (about a minute on 2 busy cores)
def test_a_phi4_fine_tune_trains_on_its_own_stand_in_and_answers_through_a_deployment(
    emulator_factory: Any,
) -> None:
    started = time.monotonic()
    emu = Admin(emulator_factory(fakes=False, timeout=120))
    try:
        # helpers.upload_dataset's test split is cut mid-row (enough for the fake trainer); the real one reads it.
        prefix = f"datasets/{uuid.uuid4().hex[:8]}"
        rows = [json.dumps(row) for row in helpers.ROWS]
        for split, lines in (("train", rows), ("test", rows[:3])):
            helpers.upload(emu.conn["storage_connection_string"], emu.conn["datastore_container"],
                           f"{prefix}/{split}.jsonl", "\n".join(lines).encode())
        job, r = helpers.submit_job(emu, model=helpers.PHI4,
                                    data_uri=f"azureml://datastores/workspaceblobstore/paths/{prefix}")
        assert r.status_code == 201, r.text
        doc = emu.wait_job(job, timeout=600)
        assert doc["status"] == "Completed", doc.get("error")
        trained = time.monotonic()
        # The trained model is Phi-4's stand-in fine-tuned: its tokenizer speaks Phi-4's template.
        mlmodel = _blob_text(emu, f"azureml/{job}/trained_model/", "MLmodel")
        assert "base_model_name: tuneflow-tiny-phi4" in mlmodel
        tokenizer_config = json.loads(_blob_text(emu, f"azureml/{job}/trained_model/", "tokenizer_config.json"))
        template = _blob_text(emu, f"azureml/{job}/trained_model/", "chat_template.jinja")  # transformers >= 4.50
        assert "<|im_sep|>" in template and tokenizer_config["eos_token"] == "<|im_end|>"
        assert float(doc["metrics"]["eval_loss"]) > 0 and float(doc["metrics"]["base_eval_loss"]) > 0

        name = f"phi4-ft-{uuid.uuid4().hex[:6]}"
        assert helpers.register_model(emu, name, "1", job).status_code == 201
        endpoint = f"ep-{uuid.uuid4().hex[:8]}"
        helpers.create_endpoint(emu, endpoint)
        r, status = helpers.create_deployment(emu, endpoint, "blue", (name, "1"), timeout_ms=30000, wait=180)
        assert status.get("status") == "Succeeded", (r.text, status)
        helpers.set_traffic(emu, endpoint, {"blue": 100})
        key = helpers.keys(emu, endpoint)["primaryKey"]
        body = {"input_data": {"input_string": [{"role": "user", "content": "What is 3 + 3?"}],
                               "parameters": {"max_new_tokens": 16, "do_sample": False}}}
        scored = httpx.post(f"{emu.conn['scoring_base']}/endpoints/{endpoint}/score", json=body, timeout=60,
                            headers={"Authorization": f"Bearer {key}"}, verify=emu.handle.ca_bundle)
        assert scored.status_code == 200, scored.text
        assert scored.headers["azureml-model-deployment"] == "blue"
        answer = scored.json()[0]["0"]
        assert isinstance(answer, str) and answer.strip() and "<|im_" not in answer
        print(f"\nPhi-4 job trained in {trained - started:.1f}s (stand-in build included when not cached), "
              f"deployed and scored in {time.monotonic() - trained:.1f}s: {answer!r}")
    finally:
        emu.close()
