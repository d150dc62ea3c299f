"""One deployment's scoring server (``python -m emulator.scoring``) and the MLflow folder it serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import mlflow_folder
from emulator.scoring.contract import BadRequest, GenerationParams, parse_request
from tests.support.basemodel import basemodel_cache, build_with_cli

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference" / "scoring"



@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base model as an MLflow folder (scoring does not care whether it was fine-tuned)."""
    base = build_with_cli(basemodel_cache(tmp_path_factory))
    folder = tmp_path_factory.mktemp("scoring") / "mlflow_model_folder"
    mlflow_folder.write_mlflow_model(base, folder, {"base_model_name": "tiny"})
    return folder


@pytest.fixture(scope="module")
def server(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ready = tmp_path_factory.mktemp("ready") / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.scoring", "--model", str(model_folder), "--port", "0",
         "--request-timeout", "30", "--ready-file", str(ready)],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "the scoring server never became ready"
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        assert info["pid"] == proc.pid and info["port"] > 0
        yield str(info["url"])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_mlflow_folder_layout_and_round_trip(model_folder: Path) -> None:
    mlmodel = mlflow_folder.read_mlmodel(model_folder)
    assert set(mlmodel["flavors"]) == {"hftransformersv2", "python_function"}
    assert mlmodel["metadata"]["task"] == "chat-completion"
    assert mlmodel["metadata"]["base_model_name"] == "tiny"
    assert "signature" in mlmodel
    for name in ("conda.yaml", "python_env.yaml", "requirements.txt", "data/model/config.json",
                 "data/model/model.safetensors", "data/tokenizer/tokenizer_config.json", "data/config/config.json"):
        assert (model_folder / name).is_file(), name
    assert "transformers==" in (model_folder / "requirements.txt").read_text()
    model, tokenizer = mlflow_folder.load_for_inference(model_folder)
    assert model.config.model_type == "phi3" and tokenizer.chat_template


def test_non_mlflow_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an MLflow model folder"):
        mlflow_folder.load_for_inference(tmp_path)


def test_scores_the_azure_chat_completion_shape(server: str) -> None:
    body = {"input_data": {"input_string": [{"role": "system", "content": "You are a helpful assistant."},
                                            {"role": "user", "content": "Hello!"}],
                           "parameters": {"temperature": 0.8, "top_p": 0.8, "max_new_tokens": 30}}}
    response = httpx.post(f"{server}/score", json=body, timeout=30)
    assert response.status_code == 200, response.text
    records = response.json()
    assert isinstance(records, list) and len(records) == 1 and set(records[0]) == {"0"}
    assert isinstance(records[0]["0"], str) and records[0]["0"].strip()


def test_scores_the_notebook_shape_one_record_per_conversation(server: str) -> None:
    body = {"input_data": {"input_string": [[{"role": "user", "content": "Hello!"}],
                                            [{"role": "user", "content": "Tell me about Kenya."}]],
                           "parameters": {"temperature": 0.6, "top_p": 0.9, "do_sample": True, "max_new_tokens": 40}},
            "params": {}}
    response = httpx.post(f"{server}/score", json=body, timeout=30)
    assert response.status_code == 200, response.text
    records = response.json()
    assert len(records) == 2 and all(isinstance(r["0"], str) for r in records)


def test_greedy_decoding_is_deterministic_and_fast(server: str) -> None:
    body = {"input_data": {"input_string": [{"role": "user", "content": "Hello!"}],
                           "parameters": {"max_new_tokens": 20, "do_sample": False}}}
    first = httpx.post(f"{server}/score", json=body, timeout=30).json()
    started = time.monotonic()
    for _ in range(10):
        assert httpx.post(f"{server}/score", json=body, timeout=30).json() == first
    per_request = (time.monotonic() - started) / 10
    assert per_request < 0.5, f"{per_request * 1000:.0f} ms per request"


def test_reference_request_shapes_are_accepted(server: str) -> None:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference material not found at {REFERENCE}")
    for name in ("phi3_mini_4k_sample_request.json", "llama3_8b_instruct_sample_chat_completions_score.json",
                 "finetune_notebook_request_shape.json"):
        body = json.loads((REFERENCE / name).read_text())
        body["input_data"]["parameters"]["max_new_tokens"] = 8  # keep it quick
        response = httpx.post(f"{server}/score", json=body, timeout=30)
        assert response.status_code == 200, (name, response.text)
        expected = json.loads((REFERENCE / "mlflow_records_orient_response_shape.json").read_text())
        assert [set(r) for r in response.json()] == [set(r) for r in expected] * len(response.json())


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"input_data": {"input_string": []}}', "non-empty list"),
    (b'{"input_data": {"input_string": [{"role": "robot", "content": "x"}]}}', "role must be one of"),
    (b'{"input_data": {"input_string": [{"role": "user", "content": 3}]}}', "content must be a string"),
    (b'{"input_data": {"input_string": [{"role": "user", "content": "x"}], "parameters": {"top_p": 2}}}',
     "top_p must be between"),
    (b'{"input_data": {"input_string": [{"role": "user", "content": "x"}], "parameters": {"max_new_tokens": 0}}}',
     "max_new_tokens must be a positive integer"),
])
def test_bad_bodies_get_400_with_an_error_object(server: str, body: bytes, message: str) -> None:
    response = httpx.post(f"{server}/score", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest" and message in error["message"]


def test_health_routes(server: str) -> None:
    for route in ("/", "/health", "/liveness", "/readiness"):
        assert httpx.get(f"{server}{route}", timeout=10).status_code == 200, route
    health = httpx.get(f"{server}/health", timeout=10).json()
    assert health["status"] == "Healthy" and health["served"] >= 0


def test_request_timeout_answers_408_and_the_server_keeps_serving(model_folder: Path) -> None:
    from starlette.testclient import TestClient

    from emulator.scoring.generate import Generator
    from emulator.scoring.server import Deployment, build_app

    deployment = Deployment(folder=model_folder, request_timeout=0.0)
    client = TestClient(build_app(deployment))
    body: dict[str, Any] = {"input_data": {"input_string": [{"role": "user", "content": "Hello!"}]}}
    loading = client.post("/score", json=body)
    assert loading.status_code == 503 and client.get("/readiness").status_code == 503
    assert client.get("/liveness").status_code == 200
    deployment.generator = Generator(model_folder)
    response = client.post("/score", json=body)
    assert response.status_code == 408 and response.json()["error"]["code"] == "RequestTimeout"
    deployment.request_timeout = 30.0
    assert client.post("/score", json=body).status_code == 200


def test_request_parsing_details() -> None:
    parsed = parse_request({"input_data": {"input_string": ["raw prompt"], "parameters": {"max_tokens": 7}}})
    assert parsed.inputs == ["raw prompt"] and parsed.params.max_new_tokens == 7
    assert not GenerationParams(do_sample=True, temperature=0.0).sampling
    with pytest.raises(BadRequest, match="'params' must be an object"):
        parse_request({"input_data": {"input_string": ["x"]}, "params": []})
    with pytest.raises(BadRequest, match="a list of messages, a list of conversations"):
        parse_request({"input_data": {"input_string": ["x", {"role": "user", "content": "y"}]}})


def test_a_streamed_answer_is_the_unstreamed_answer_token_by_token(server: str) -> None:
    body = {"input_data": {"input_string": [{"role": "user", "content": "What is the capital of France?"}],
                           "parameters": {"max_new_tokens": 24, "do_sample": False}}}
    whole = httpx.post(f"{server}/score", json=body, timeout=60).json()[0]["0"]
    pieces: list[str] = []
    with httpx.stream("POST", f"{server}/score", json=body, timeout=60,
                      headers={"accept": "text/event-stream"}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    pieces = [json.loads(e)["0"] for e in events[:-1]]
    assert "".join(pieces) == whole and len(pieces) > 1  # the same text, in more than one piece
