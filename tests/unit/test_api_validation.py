"""Scoring request bodies: what is accepted, what it becomes, and how a refusal says where."""

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from shared.api.validation import chat_call, parse_json, score_call
from shared.errors import ApiError

CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Peru?"}]}


def refused(fn: Callable[..., Any], *args: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        fn(*args)
    return err.value


def test_chat_shape_becomes_the_azureml_request():
    call = score_call(b"", {**CHAT, "parameters": {"temperature": 0.2, "max_new_tokens": 50, "custom": "kept"},
                            "deployment": "blue"})
    assert orjson.loads(call.payload) == {"input_data": {"input_string": CHAT["messages"],
                                                         "parameters": {"temperature": 0.2, "max_new_tokens": 50,
                                                                        "custom": "kept"}}}
    assert call.deployment == "blue" and call.callback_url is None and not call.native


def test_native_body_passes_through_byte_for_byte():
    raw = b'{"input_data": {"input_string": [[{"role": "user", "content": "x"}]], "parameters": {}}, "params": {}}'
    call = score_call(raw, orjson.loads(raw))
    assert call.native and call.payload == raw


def test_native_body_loses_only_tuneflow_fields():
    body = {"input_data": {"input_string": ["x"]}, "params": {}, "deployment": "green",
            "callback_url": "https://example.com/hook"}
    call = score_call(orjson.dumps(body), body)
    assert orjson.loads(call.payload) == {"input_data": {"input_string": ["x"]}, "params": {}}
    assert (call.deployment, call.callback_url) == ("green", "https://example.com/hook")


@pytest.mark.parametrize(("body", "param", "words"), [
    ([1, 2], None, "must be a JSON object, not an array"),
    ({}, "messages", "messages is required"),
    ({"messages": "hi"}, "messages", "must be an array"),
    ({"messages": []}, "messages", "is empty"),
    ({"messages": ["hi"]}, "messages[0]", "must be a JSON object, not a string"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "one of system, user, assistant"),
    ({"messages": [{"content": "x"}]}, "messages[0].role", "got missing"),
    ({"messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": 5}]}, "messages[1].content",
     "must be a string"),
    ({"messages": [{"role": "user", "content": "  "}]}, "messages[0].content", "is empty"),
    ({"messages": [{"role": "user", "content": "x", "mood": 1}]}, "messages[0].mood", "unknown field"),
    ({**CHAT, "parameters": []}, "parameters", "must be a JSON object"),
    ({**CHAT, "parameters": {"temperature": "hot"}}, "parameters.temperature", "must be a number"),
    ({**CHAT, "parameters": {"top_p": 0}}, "parameters.top_p", "must be in (0, 1]"),
    ({**CHAT, "parameters": {"max_new_tokens": 0}}, "parameters.max_new_tokens", "at least 1"),
    ({**CHAT, "parameters": {"do_sample": "yes"}}, "parameters.do_sample", "true or false"),
    ({**CHAT, "deployment": "bad name!"}, "deployment", "deployment name"),
    ({**CHAT, "callback_url": 7}, "callback_url", "URL string"),
    ({**CHAT, "temperature": 1}, "temperature", "unknown field 'temperature'"),
    ({"input_data": "x"}, "input_data", "must be a JSON object"),
])
def test_wrong_shapes_are_400_with_where(body, param, words):
    err = refused(score_call, b"", body)
    assert err.status == 400 and err.param == param and words in err.message, err.message


def test_invalid_json_says_where():
    err = refused(parse_json, b'{"messages": [\n  {"role": "user",}\n]}', 1024)
    assert err.status == 400 and err.code == "invalid_json" and "line 2 column" in err.message
    assert refused(parse_json, b"   ", 1024).code == "invalid_json"
    assert "not valid JSON" in refused(parse_json, b"\xff\xfe{}", 1024).message


def test_oversized_bodies_are_413_declared_or_actual():
    assert refused(parse_json, b"{}", 1024, "999999").status == 413
    err = refused(parse_json, b'{"x": "' + b"a" * 2000 + b'"}', 1024)
    assert err.status == 413 and "TUNEFLOW_MAX_REQUEST_KB" in err.message


def test_openai_request_is_translated():
    call = chat_call({"model": "chat-ft:3", **CHAT, "temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "n": 1,
                      "stream": False, "user": "u1"})
    assert call.model == "chat-ft:3"
    assert orjson.loads(call.payload)["input_data"]["parameters"] == {
        "do_sample": True, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 64}
    greedy = chat_call({"model": "m", **CHAT, "temperature": 0})
    assert orjson.loads(greedy.payload)["input_data"]["parameters"] == {"do_sample": False}


def test_openai_content_parts_are_joined():
    call = chat_call({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                                {"type": "text", "text": "b"}]}]})
    assert orjson.loads(call.payload)["input_data"]["input_string"][0]["content"] == "ab"


def test_openai_parameters_tuneflow_honours():
    call = chat_call({"model": "m", **CHAT, "stream": True, "stream_options": {"include_usage": True},
                      "stop": "\n\n", "seed": 3, "temperature": 0, "user": "u"})
    assert call.stream and call.include_usage and call.stop == ("\n\n",)
    assert orjson.loads(call.payload)["input_data"]["parameters"] == {"do_sample": False}


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 2}, "n"), ({"stream": "yes"}, "stream"), ({"tools": []}, "tools"), ({"temperature": 3}, "temperature"),
    ({"model": None}, "model"), ({"max_tokens": "many"}, "max_tokens"), ({"seed": 7, "temperature": 0.7}, "seed"),
    ({"seed": 7}, "seed"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"stop": [""]}, "stop[0]"),
    ({"stream_options": {"include_usage": True}}, "stream_options"), ({"user": 5}, "user"),
    ({"stream": True, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
])
def test_openai_refusals(extra, param):
    err = refused(chat_call, {"model": "m", **CHAT, **extra})
    assert err.status == 400 and err.param == param
