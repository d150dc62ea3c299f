"""The emulator's own definition of chat_completion_pipeline, held against the published spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from emulator import pipeline_component

ATTRIBUTES = ("type", "default", "optional", "enum", "min", "mode")


def _normalise(spec: dict[str, Any]) -> dict[str, Any]:
    out = {k: spec[k] for k in ATTRIBUTES if k in spec}
    out.setdefault("optional", False)
    return out


def test_interface_matches_published_spec(reference_dir: Path) -> None:
    published = yaml.safe_load((reference_dir / "azureml" / "chat_completion_pipeline.spec.yaml").read_text())
    ours = pipeline_component.component_spec()
    assert (ours["name"], ours["version"], ours["type"]) == (published["name"], published["version"], published["type"])
    assert list(ours["inputs"]) == list(published["inputs"])  # same names, same order
    for name, spec in published["inputs"].items():
        assert _normalise(ours["inputs"][name]) == _normalise(spec), name
    assert {n: (o["type"], o.get("mode")) for n, o in ours["outputs"].items()} == {
        n: (o["type"], o.get("mode")) for n, o in published["outputs"].items()
    }
    required = [n for n, s in published["inputs"].items() if not s.get("optional", False)]
    assert required == ["task_name"]


def test_steps_match_published_jobs(reference_dir: Path) -> None:
    published = yaml.safe_load((reference_dir / "azureml" / "chat_completion_pipeline.spec.yaml").read_text())
    assert [node for node, _, _ in pipeline_component.STEPS] == list(published["jobs"])
    assert [ref for _, _, ref in pipeline_component.STEPS] == [j["component"] for j in published["jobs"].values()]


def test_validation_catches_what_offline_sdk_validation_does_not() -> None:
    assert pipeline_component.validate_inputs({"optim": "sgd"}) == [
        "input 'optim' must be one of ['adamw_torch', 'adafactor'] (got 'sgd')"
    ]
    assert pipeline_component.validate_inputs({"deepspeed_stage": 2, "precision": 16, "learning_rate": "5e-06"}) == []
    assert pipeline_component.validate_inputs({"num_nodes_finetune": "0"}) == ["input 'num_nodes_finetune' must be >= 1 (got 0)"]
