"""The reference notebook, run with the unmodified azure-ai-ml SDK against the emulator.

``test_notebook_with_fakes`` runs every SDK call with the fake trainer and scorer (same process
contracts) in seconds; ``test_notebook_trains_and_serves_for_real`` runs it with the emulator's real
training and scoring on the CPU and checks the answer comes from the fine-tuned model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.notebook import CAPITALS, run_notebook, write_dataset

pytestmark = [pytest.mark.emulator, pytest.mark.integration]


def test_notebook_with_fakes(emulator_factory: Any, tmp_path: Path) -> None:
    handle = emulator_factory()
    ws, reg = handle.ml_client(), handle.ml_client(registry=True)
    dataset = write_dataset(tmp_path / "ultrachat_200k_dataset")
    result = run_notebook(ws, reg, dataset)
    first_test_question = json.loads((dataset / "test_gen.jsonl").read_text().splitlines()[0])["prompt"]

    assert result.job_status == "Completed"
    assert result.pipeline_display_name == (
        "Phi-3-mini-4k-instruct-ultrachat-bs1-cosine-ds2-lora-save_limit1-seqlen-1"
    )
    assert f"RunId: {result.job_name}" in result.stream_output
    assert "Execution Summary" in result.stream_output
    assert result.model_id.endswith(f"/models/Phi-3-mini-4k-instruct-ultrachat-200k/versions/{result.model_version}")
    # The fake scorer answers with the last user message, so this proves the request went through.
    assert json.loads(result.response) == [{"0": f"fake: {first_test_question}"}]
    # The endpoint is gone, and so is its scoring process.
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        ws.online_endpoints.get(result.endpoint_name)
    counts = handle_counts(handle)
    for route in (
        "GET /registrymanagement/v1.0/registries/{reg}/discovery",
        "PUT /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}/jobs/{name}",
        "POST /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}/onlineEndpoints/{name}/listKeys",
    ):
        assert counts["arm"].get(route, 0) >= 1, route
    assert "(unmatched)" not in " ".join(counts["arm"]), counts["arm"]


def handle_counts(handle: Any) -> dict[str, dict[str, int]]:
    import httpx

    with httpx.Client(verify=handle.ca_bundle) as client:
        routes: dict[str, dict[str, int]] = client.get(handle.admin_url + "/requests").json()["routes"]
        return routes


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first run builds the tiny base model (minutes on 2 busy cores)
def test_notebook_trains_and_serves_for_real(emulator_factory: Any, tmp_path: Path) -> None:
    """Real LoRA fine-tuning of the emulator's tiny base model, real MLflow folder, real scoring server."""
    handle = emulator_factory(fakes=False, timeout=120)
    ws, reg = handle.ml_client(), handle.ml_client(registry=True)
    dataset = write_dataset(tmp_path / "ultrachat_200k_dataset", rows=32)
    first_test_question = json.loads((dataset / "test_gen.jsonl").read_text().splitlines()[0])["prompt"]
    result = run_notebook(
        ws,
        reg,
        dataset,
        # Keep CPU training short: both are inputs of chat_completion_pipeline.
        extra_finetune_parameters={"num_train_epochs": 1, "max_steps": 30, "learning_rate": 3e-3},
    )
    assert result.job_status == "Completed"
    assert re.search(r"step \d+", result.stream_output) or "train_loss" in result.stream_output
    job = ws.jobs.get(result.job_name)
    props = job.properties
    assert float(props["azureml.metrics.eval_loss"]) < float(props["azureml.metrics.base_eval_loss"])
    answer = json.loads(result.response)[0]["0"]
    assert isinstance(answer, str) and answer.strip()
    # The test question's country was never in the training split, and the base model was never shown a
    # question answered this way: the answer's form comes from the fine-tune. (Which capital it names is
    # sampled — the notebook scores with do_sample and temperature 0.6 — so it is not asserted, and with
    # sampling even the country named can drift: seen once, "The capital of Czechia is Prague.").
    country = first_test_question.removeprefix("What is the capital of ").rstrip("?")
    assert country in dict(CAPITALS)
    assert answer.startswith("The capital of "), answer
