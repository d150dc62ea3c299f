"""Every answer shape an Azure ML chat deployment gives, reduced to one string.

- ``{"output": "..."}``: catalog chat models (Phi-3, Llama) on managed online endpoints;
- ``[{"0": "..."}]``: MLflow models in records orient, e.g. a fine-tuned model registered from
  ``mlflow_model_folder``;
- ``"..."``: a bare JSON string, or a plain-text body;
- and, for good measure, ``["..."]``, ``{"generated_text": ...}`` (Hugging Face pipelines) and
  OpenAI-style ``{"choices": [{"message": {"content": ...}}], "usage": {...}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from shared.errors import UnrecognisedResponse

MAX_DEPTH = 4


@dataclass(frozen=True)
class Output:
    text: str
    usage: dict[str, int] | None = None


def normalise(body: bytes, content_type: str = "application/json") -> Output:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        if "json" in content_type.lower():
            raise UnrecognisedResponse("the deployment answered with invalid JSON") from None
        return Output(body.decode("utf-8", errors="replace"))
    return Output(_text(data, 0), _usage(data))


def _text(data: Any, depth: int) -> str:
    if depth > MAX_DEPTH:
        raise UnrecognisedResponse("the deployment's answer is nested too deeply")
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        if not data:
            raise UnrecognisedResponse("the deployment answered with an empty list")
        return _text(data[0], depth + 1)
    if isinstance(data, dict):
        for key in ("output", "0", "generated_text", "text"):
            if key in data:
                return _text(data[key], depth + 1)
        choices = data.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                return str(message["content"])
            if isinstance(choices[0].get("text"), str):
                return str(choices[0]["text"])
        keys = ", ".join(sorted(map(str, data))[:5]) or "none"
        raise UnrecognisedResponse(f"the deployment answered with an object without output (keys: {keys})")
    raise UnrecognisedResponse(f"the deployment answered with {type(data).__name__}, not text")


def _usage(data: Any) -> dict[str, int] | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    if not all(isinstance(usage.get(k), int) for k in keys[:2]):
        return None
    counts = {k: int(usage[k]) for k in keys if isinstance(usage.get(k), int)}
    counts.setdefault("total_tokens", counts["prompt_tokens"] + counts["completion_tokens"])
    return counts
