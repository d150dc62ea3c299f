"""The Azure ML chat-completion request body, parsed and checked (a BadRequest names what is wrong)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

ROLES = ("system", "user", "assistant")
DEFAULT_MAX_NEW_TOKENS = 50  # the MLflow signature's default for the task
MAX_NEW_TOKENS_LIMIT = 4096


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0

    @property
    def sampling(self) -> bool:
        return self.do_sample and self.temperature > 0


# One input: a conversation (list of messages) or, as text-generation models take it, a raw prompt.
ScoringInput = list[dict[str, str]] | str


@dataclass(frozen=True)
class ScoringRequest:
    inputs: list[ScoringInput]
    params: GenerationParams


def parse_request(body: Any) -> ScoringRequest:
    """``{"input_data": {"input_string": [...], "parameters": {...}}[, "params": {...}]}``.

    ``input_string`` is one conversation (a list of messages), a batch of conversations (a list of
    lists, the fine-tuning notebook's shape) or a list of prompt strings.
    """
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object with 'input_data'")
    input_data = body.get("input_data")
    if not isinstance(input_data, dict):
        raise BadRequest("'input_data' must be an object with 'input_string' (and optional 'parameters')")
    items = input_data.get("input_string")
    if not isinstance(items, list) or not items:
        raise BadRequest("'input_data.input_string' must be a non-empty list")
    if "params" in body and not isinstance(body["params"], dict):
        raise BadRequest("'params' must be an object")
    if all(isinstance(x, dict) for x in items):
        inputs: list[ScoringInput] = [_conversation(items, "input_string")]
    elif all(isinstance(x, list) for x in items):
        inputs = [_conversation(conv, f"input_string[{i}]") for i, conv in enumerate(items)]
    elif all(isinstance(x, str) for x in items):
        inputs = list(items)
    else:
        raise BadRequest("'input_string' must be a list of messages, a list of conversations or a list of strings")
    return ScoringRequest(inputs, _params(input_data.get("parameters")))


def _conversation(messages: list[Any], where: str) -> list[dict[str, str]]:
    if not messages:
        raise BadRequest(f"{where} is an empty conversation")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"{where}[{i}] must be an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise BadRequest(f"{where}[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise BadRequest(f"{where}[{i}].content must be a string")
        out.append({"role": str(role), "content": content})
    return out


def _params(raw: Any) -> GenerationParams:
    if raw is None:
        return GenerationParams()
    if not isinstance(raw, dict):
        raise BadRequest("'input_data.parameters' must be an object")
    values: dict[str, Any] = {}
    tokens = raw.get("max_new_tokens", raw.get("max_tokens"))
    if tokens is not None:
        if isinstance(tokens, bool) or not isinstance(tokens, int | float) or tokens != int(tokens) or tokens < 1:
            raise BadRequest(f"max_new_tokens must be a positive integer, got {tokens!r}")
        values["max_new_tokens"] = min(int(tokens), MAX_NEW_TOKENS_LIMIT)
    if "temperature" in raw:
        values["temperature"] = _number(raw["temperature"], "temperature", 0.0, 100.0)
    if "top_p" in raw:
        top_p = _number(raw["top_p"], "top_p", 0.0, 1.0)
        if top_p == 0.0:
            raise BadRequest("top_p must be in (0, 1]")
        values["top_p"] = top_p
    if "do_sample" in raw:
        sample = raw["do_sample"]
        if isinstance(sample, str) and sample.lower() in ("true", "false"):
            sample = sample.lower() == "true"
        if not isinstance(sample, bool):
            raise BadRequest(f"do_sample must be true or false, got {raw['do_sample']!r}")
        values["do_sample"] = sample
    return GenerationParams(**values)


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)
