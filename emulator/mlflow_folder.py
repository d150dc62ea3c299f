"""MLflow model folders as Azure ML's fine-tuning pipeline writes them, without the mlflow package.

The layout follows the ``hftransformersv2`` flavor that the registry's ``ft_nlp_model_converter``
outputs as ``mlflow_model_folder``::

    MLmodel             YAML: flavors (hftransformersv2 + python_function), signature, metadata
    conda.yaml          the scoring environment
    python_env.yaml
    requirements.txt
    data/config/        config.json, generation_config.json
    data/model/         weights + config, and a copy of the tokenizer files (as the converter does)
    data/tokenizer/     tokenizer files

``load_for_inference`` also reads the OSS ``transformers`` flavor layout (``model/`` and
``components/tokenizer/``), so a folder from either converter can be served.
"""

from __future__ import annotations

import platform
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

FLAVOR = "hftransformersv2"
TASK = "chat-completion"
MLMODEL = "MLmodel"
_CONFIG_FILES = ("config.json", "generation_config.json")
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
    "chat_template.json", "tokenizer.model", "added_tokens.json", "vocab.json", "merges.txt",
)
# The parameters a chat-completion deployment accepts (Azure's signature for the task).
SIGNATURE_PARAMS = (
    '[{"name": "top_p", "type": "float", "default": 1.0, "shape": null}, '
    '{"name": "temperature", "type": "float", "default": 0.8, "shape": null}, '
    '{"name": "max_new_tokens", "type": "integer", "default": 50, "shape": null}, '
    '{"name": "do_sample", "type": "boolean", "default": true, "shape": null}, '
    '{"name": "return_full_text", "type": "boolean", "default": true, "shape": null}]'
)


def _versions() -> dict[str, str]:
    found: dict[str, str] = {"python": platform.python_version()}
    from importlib import metadata

    for dist in ("torch", "transformers", "tokenizers", "safetensors", "accelerate"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def write_mlflow_model(model_dir_hf: Path, out: Path, metadata: dict[str, Any]) -> None:
    """Turn a Hugging Face model directory into an MLflow model folder at ``out``.

    ``out`` may exist (an Azure ML output mount does); ``MLmodel`` is written last, so a folder that has
    one is complete.
    """
    model_dir_hf, out = Path(model_dir_hf), Path(out)
    if not (model_dir_hf / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir_hf} is not a Hugging Face model directory (no config.json)")
    out.mkdir(parents=True, exist_ok=True)
    (out / MLMODEL).unlink(missing_ok=True)
    data = out / "data"
    for sub in ("model", "tokenizer", "config"):
        shutil.rmtree(data / sub, ignore_errors=True)
        (data / sub).mkdir(parents=True)
    tokenizer_files = []
    for item in sorted(model_dir_hf.iterdir()):
        if not item.is_file():
            continue
        shutil.copy2(item, data / "model" / item.name)
        if item.name in _TOKENIZER_FILES:
            shutil.copy2(item, data / "tokenizer" / item.name)
            tokenizer_files.append(item.name)
        if item.name in _CONFIG_FILES:
            shutil.copy2(item, data / "config" / item.name)
    if "tokenizer_config.json" not in tokenizer_files and "tokenizer.json" not in tokenizer_files:
        raise FileNotFoundError(f"{model_dir_hf} holds no tokenizer files")

    versions = _versions()
    pins = [f"{name}=={versions[name]}" for name in ("torch", "transformers", "tokenizers", "safetensors")
            if name in versions]
    (out / "requirements.txt").write_text("\n".join(["mlflow", *pins]) + "\n")
    conda = {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={versions['python']}", "pip", {"pip": ["mlflow", *pins]}],
    }
    (out / "conda.yaml").write_text(yaml.safe_dump(conda, sort_keys=False))
    python_env = {"python": versions["python"], "build_dependencies": ["pip"],
                  "dependencies": ["-r requirements.txt"]}
    (out / "python_env.yaml").write_text(yaml.safe_dump(python_env, sort_keys=False))

    meta = {"task": TASK, "finetuning_task": TASK, **metadata}
    mlmodel: dict[str, Any] = {
        "flavors": {
            FLAVOR: {
                "code": None,
                "hf_config_class": "AutoConfig",
                "hf_pretrained_class": "AutoModelForCausalLM",
                "hf_tokenizer_class": "AutoTokenizer",
                "model_data": "data",
                "task_type": TASK,
                "transformers_version": versions.get("transformers", "unknown"),
                "pytorch_version": versions.get("torch", "unknown"),
                "huggingface_id": str(metadata.get("base_model_name", "")),
            },
            "python_function": {
                "data": "data",
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                "loader_module": "azureml.evaluate.mlflow.hftransformers",
                "python_version": versions["python"],
            },
        },
        "metadata": meta,
        "model_uuid": uuid.uuid4().hex,
        "signature": {
            "inputs": '[{"type": "string"}]',
            "outputs": '[{"type": "string"}]',
            "params": SIGNATURE_PARAMS,
        },
        "utc_time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    tmp = out / (MLMODEL + ".tmp")
    tmp.write_text(yaml.safe_dump(mlmodel, sort_keys=False))
    tmp.replace(out / MLMODEL)


def read_mlmodel(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MLMODEL
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an MLflow model folder (no {MLMODEL})")
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict) or not isinstance(loaded.get("flavors"), dict):
        raise ValueError(f"{path} has no flavors")
    return loaded


def model_paths(folder: Path) -> tuple[Path, Path]:
    """(weights directory, tokenizer directory) of an MLflow model folder, for either layout."""
    folder = Path(folder)
    flavors = read_mlmodel(folder)["flavors"]
    if FLAVOR in flavors or "hftransformers" in flavors:
        info = flavors.get(FLAVOR) or flavors["hftransformers"]
        data = folder / str(info.get("model_data", "data"))
        model, tokenizer = data / "model", data / "tokenizer"
    elif "transformers" in flavors:
        info = flavors["transformers"]
        model = folder / str(info.get("model_binary", "model"))
        tokenizer = folder / "components" / "tokenizer"
    else:
        raise ValueError(f"{folder}/MLmodel has no transformers flavor (found: {', '.join(flavors)})")
    if not (tokenizer / "tokenizer_config.json").is_file() and not (tokenizer / "tokenizer.json").is_file():
        tokenizer = model
    if not (model / "config.json").is_file():
        raise FileNotFoundError(f"{model} holds no model (no config.json)")
    return model, tokenizer


def is_mlflow_folder(path: Path) -> bool:
    return (Path(path) / MLMODEL).is_file()


def load_for_inference(folder: Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from an MLflow model folder (or a registry model's Hugging Face folder,
    as a deployment of a base model from the registry serves it)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    plain = not is_mlflow_folder(folder) and (folder / "config.json").is_file()
    model_dir, tokenizer_dir = (folder, folder) if plain else model_paths(folder)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    return model, tokenizer
