"""Every Azure ML answer shape becomes one string."""

import orjson
import pytest

from shared.errors import UnrecognisedResponse
from shared.scoring.normalise import Output, normalise


@pytest.mark.parametrize("body", [
    {"output": "Paris."},                      # catalog chat models
    [{"0": "Paris."}],                         # MLflow records orient (fine-tuned models)
    "Paris.",                                  # a bare JSON string
    ["Paris."],
    [{"generated_text": "Paris."}],            # Hugging Face pipelines
    {"output": ["Paris."]},
    {"choices": [{"message": {"role": "assistant", "content": "Paris."}}]},
])
def test_shapes(body):
    assert normalise(orjson.dumps(body)).text == "Paris."


def test_plain_text_body():
    assert normalise(b"Paris.", "text/plain") == Output("Paris.")


def test_usage_is_kept_when_the_deployment_reports_it():
    body = {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    assert normalise(orjson.dumps(body)).usage == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert normalise(orjson.dumps({"output": "x"})).usage is None


@pytest.mark.parametrize("body", [b"[]", b'{"weird": 1}', b"42", b"null", b"not json"])
def test_unreadable_answers_are_refused(body):
    with pytest.raises(UnrecognisedResponse):
        normalise(body, "application/json")
