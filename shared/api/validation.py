"""Request bodies of the scoring routes: parsed, checked, and turned into Azure ML scoring payloads.

Every refusal says what was wrong and where (``param``: ``messages[2].content``), so a client can fix
its request without reading tuneflow's source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from shared.api.http import bad_request
from shared.errors import ApiError
from shared.integers import parse_int

ROLES = ("system", "user", "assistant")
# Always fullmatch: `^…$` would accept "name\n" ($ matches before a final newline).
NAME = re.compile(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?")
# Deeper than any request tuneflow takes, and far below orjson's dumps limit (254 levels): a body the
# decoder accepts must also re-encode (the scoring payload wraps `parameters` two levels deeper).
MAX_DEPTH = 64
SCORE_FIELDS = ("messages", "parameters", "deployment", "callback_url")
CONTROL_FIELDS = ("deployment", "callback_url")  # ours, stripped from a native body before it goes on
CHAT_FIELDS = ("model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "n",
               "stop", "seed", "stream", "stream_options", "user")
MAX_STOP = 4  # as OpenAI: up to four stop sequences
MAX_URL = 2048


@dataclass(frozen=True)
class ScoreCall:
    """What to send to the endpoint: the Azure ML body, and where."""

    payload: bytes
    deployment: str | None = None
    callback_url: str | None = None
    native: bool = False


@dataclass(frozen=True)
class ChatCall:
    payload: bytes
    model: str
    stream: bool = False
    include_usage: bool = False
    stop: tuple[str, ...] = ()  # honoured by tuneflow: the answer is cut at the first one
    messages: tuple[dict[str, Any], ...] = ()  # the conversation, for counting its tokens


def parse_json(body: bytes, limit_bytes: int, declared_length: str | None = None) -> Any:
    """The body as JSON; 413 over the limit (declared or actual), 400 with the position otherwise, and 400
    when it nests deeper than ``MAX_DEPTH``. Every JSON request body goes through here."""
    declared = _declared_length(declared_length)
    if declared is not None and declared > limit_bytes:
        raise too_large(declared, limit_bytes)
    if len(body) > limit_bytes:
        raise too_large(len(body), limit_bytes)
    if not body.strip():
        raise ApiError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if getattr(exc, "lineno", None) else ""
        raise ApiError(400, f"the request body is not valid JSON{where}: {exc.msg}", code="invalid_json") from None
    if not _within_depth(data, MAX_DEPTH):
        raise ApiError(400, f"the request body nests arrays and objects more than {MAX_DEPTH} levels deep",
                       code="too_deep")
    return data


def _declared_length(value: str | None) -> int | None:
    """Content-Length when it is a number (the host has already refused a malformed one)."""
    try:
        return parse_int(value.strip(), lo=0) if value else None
    except ValueError:
        return None


def _within_depth(value: Any, limit: int) -> bool:
    """No array or object in ``value`` is more than ``limit`` levels deep (iterative: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, f"the request body is {size} bytes; the limit is {limit} bytes (TUNEFLOW_MAX_REQUEST_KB)",
                    code="body_too_large")


def _object(value: Any, where: str | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        what = "the request body" if where is None else where
        raise bad_request(f"{what} must be a JSON object, not {_kind(value)}", param=where, code="invalid_type")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _unknown(data: Mapping[str, Any], allowed: tuple[str, ...], where: str = "") -> None:
    extra = [k for k in data if k not in allowed]
    if extra:
        raise bad_request(f"unknown field {extra[0]!r}{where}; expected " + ", ".join(allowed),
                          param=extra[0], code="unknown_field")


def messages(value: Any, where: str = "messages") -> list[dict[str, str]]:
    """A chat conversation: a non-empty list of {role, content} with text content."""
    if value is None:
        raise bad_request(f"{where} is required: a list of {{role, content}} objects", param=where,
                          code="missing_field")
    if not isinstance(value, list):
        raise bad_request(f"{where} must be an array of {{role, content}} objects, not {_kind(value)}",
                          param=where, code="invalid_type")
    if not value:
        raise bad_request(f"{where} is empty; send at least one message", param=where)
    out = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        message = _object(item, at)
        for key in message:
            if key not in ("role", "content", "name"):
                raise bad_request(f"{at} has an unknown field {key!r}; a message has role and content",
                                  param=f"{at}.{key}", code="unknown_field")
        role = message.get("role")
        if role not in ROLES:
            got = "missing" if role is None else repr(role)
            raise bad_request(f"{at}.role must be one of {', '.join(ROLES)} (got {got})", param=f"{at}.role")
        out.append({"role": role, "content": _content(message.get("content"), f"{at}.content")})
    return out


def _content(value: Any, at: str) -> str:
    if isinstance(value, list):  # OpenAI content parts: text only
        texts = []
        for j, raw in enumerate(value):
            part = _object(raw, f"{at}[{j}]")
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_request(f"{at}[{j}] must be a text part {{type: text, text: ...}}; only text is supported",
                                  param=f"{at}[{j}]")
            texts.append(part["text"])
        value = "".join(texts)
    if not isinstance(value, str):
        got = "missing" if value is None else _kind(value)
        raise bad_request(f"{at} must be a string (got {got})", param=at,
                          code="missing_field" if value is None else "invalid_type")
    if not value.strip():
        raise bad_request(f"{at} is empty", param=at)
    return value


def _number(value: Any, at: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{at} must be a number (got {_kind(value)})", param=at, code="invalid_type")
    if value < lo or value > hi or (lo_open and value == lo):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise bad_request(f"{at} must be in {interval} (got {value})", param=at)
    return float(value)


def _integer(value: Any, at: str, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{at} must be an integer (got {_kind(value)})", param=at, code="invalid_type")
    if value < lo:
        raise bad_request(f"{at} must be at least {lo} (got {value})", param=at)
    return value


def parameters(value: Any, where: str = "parameters") -> dict[str, Any]:
    """Generation parameters: the common ones are type-checked, model-specific ones pass through."""
    if value is None:
        return {}
    params = _object(value, where)
    if "temperature" in params:
        _number(params["temperature"], f"{where}.temperature", 0, 2)
    if "top_p" in params:
        _number(params["top_p"], f"{where}.top_p", 0, 1, lo_open=True)
    if "max_new_tokens" in params:
        _integer(params["max_new_tokens"], f"{where}.max_new_tokens")
    if "do_sample" in params and not isinstance(params["do_sample"], bool):
        raise bad_request(f"{where}.do_sample must be true or false", param=f"{where}.do_sample",
                          code="invalid_type")
    return params


def is_name(value: str) -> bool:
    """An endpoint or deployment name: 3-32 letters, digits and dashes, starting with a letter."""
    return 3 <= len(value) <= 32 and NAME.fullmatch(value) is not None


def deployment_name(value: Any, where: str = "deployment") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not is_name(value):
        raise bad_request(f"{where} must be a deployment name: 3-32 letters, digits and dashes, starting with a "
                          f"letter (got {value!r})", param=where)
    return value


def _callback(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request("callback_url must be a URL string", param="callback_url", code="invalid_type")
    if len(value) > MAX_URL:
        raise bad_request(f"callback_url is longer than {MAX_URL} characters", param="callback_url")
    return value.strip()


def azureml_payload(conversation: list[dict[str, str]], params: Mapping[str, Any]) -> bytes:
    """The chat request Azure ML chat-completion deployments take."""
    return orjson.dumps({"input_data": {"input_string": conversation, "parameters": dict(params)}})


def score_call(raw: bytes, data: Any) -> ScoreCall:
    """``POST /api/score``: tuneflow's chat shape, or a native Azure ML body passed through."""
    body = _object(data, None)
    deployment = deployment_name(body.get("deployment"))
    callback = _callback(body.get("callback_url"))
    if "input_data" in body:
        _object(body["input_data"], "input_data")
        if any(k in body for k in CONTROL_FIELDS):  # re-encode without tuneflow's own fields
            payload = orjson.dumps({k: v for k, v in body.items() if k not in CONTROL_FIELDS})
        else:
            payload = raw  # unchanged, byte for byte
        return ScoreCall(payload, deployment, callback, native=True)
    _unknown(body, SCORE_FIELDS, " (send messages and parameters, or a native Azure ML body with input_data)")
    conversation = messages(body.get("messages"))
    return ScoreCall(azureml_payload(conversation, parameters(body.get("parameters"))), deployment, callback)


def chat_call(data: Any) -> ChatCall:
    """``POST /api/v1/chat/completions``: the OpenAI request, translated to Azure ML's."""
    body = _object(data, None)
    extra = [k for k in body if k not in CHAT_FIELDS]
    if extra:
        raise bad_request(f"Unrecognized request argument supplied: {extra[0]} (supported: {', '.join(CHAT_FIELDS)})",
                          param=extra[0], code="unknown_field")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model is required: a deployment name, a model name:version, or the endpoint name",
                          param="model", code="missing_field" if model is None else "invalid_type")
    conversation = messages(body.get("messages"))
    stream = _flag(body.get("stream"), "stream")
    include_usage = False
    if body.get("stream_options") is not None:
        if not stream:
            raise bad_request("stream_options is only allowed when stream is true", param="stream_options")
        options = _object(body["stream_options"], "stream_options")
        _unknown(options, ("include_usage",), " in stream_options")
        include_usage = _flag(options.get("include_usage"), "stream_options.include_usage")
    if "n" in body and body["n"] is not None and _integer(body["n"], "n") != 1:
        raise bad_request("n must be 1: a deployment returns one completion per request", param="n")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise bad_request("user must be a string", param="user", code="invalid_type")
    params: dict[str, Any] = {}
    temperature = body.get("temperature")
    if temperature is not None:
        temperature = _number(temperature, "temperature", 0, 2)
        params["do_sample"] = temperature > 0
        if temperature > 0:
            params["temperature"] = temperature
    if body.get("seed") is not None:
        _integer(body["seed"], "seed", lo=-(2**63))
        if temperature != 0:  # greedy decoding is repeatable whatever the seed; sampling cannot be seeded
            raise bad_request("seed is only honoured with temperature 0: Azure ML chat deployments take no seed, "
                              "and greedy decoding is repeatable without one", param="seed")
    if body.get("top_p") is not None:
        params["top_p"] = _number(body["top_p"], "top_p", 0, 1, lo_open=True)
    for key in ("max_completion_tokens", "max_tokens"):
        if body.get(key) is not None:
            params["max_new_tokens"] = _integer(body[key], key)
    return ChatCall(azureml_payload(conversation, params), model.strip(), stream, include_usage,
                    _stop(body.get("stop")), tuple(conversation))


def _flag(value: Any, at: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{at} must be true or false (got {_kind(value)})", param=at, code="invalid_type")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    """OpenAI's ``stop``: a string or up to four; tuneflow cuts the answer at the first one."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_STOP:
        raise bad_request(f"stop must be a string or an array of 1 to {MAX_STOP} strings", param="stop",
                          code="invalid_type")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise bad_request(f"stop[{i}] must be a non-empty string", param=f"stop[{i}]", code="invalid_type")
    return tuple(items)
