"""Evaluation metrics, the test-split sample, the gate's rules and the manifest's `eval`/`gate` keys."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ManifestError
from shared.evaluation import Outcome, Scores, decide, score
from shared.evaluation.examples import example_from, sample
from shared.evaluation.metrics import exact_match, normalise, rouge_l, token_f1
from shared.manifest import guardrail_problems, parse_manifest, run_config, settings_for
from shared.settings import Settings

SETTINGS = Settings.from_env({"TUNEFLOW_STORAGE_CONNECTION": "x"})


def test_normalisation_and_the_squad_metrics():
    assert normalise("  The Capital, of France!  ") == "capital of france"
    assert exact_match("Paris.", "paris") == 1.0 and exact_match("Paris, France", "Paris") == 0.0
    assert token_f1("The capital of France is Paris.", "The capital of France is Paris.") == 1.0
    assert token_f1("Oslo", "Paris") == 0.0
    # 4 of 5 tokens shared each way (articles dropped): P = R = 0.8
    assert token_f1("The capital of France is Lyon.", "The capital of France is Paris.") == pytest.approx(0.8)
    assert token_f1("", "") == 1.0 and token_f1("", "Paris") == 0.0


def test_rouge_l_is_the_lcs_f_measure_of_rouge_score():
    assert rouge_l("the capital is paris", "the capital is paris") == 1.0
    # LCS "the capital paris" = 3 of 4 words each way
    assert rouge_l("the capital of paris", "the capital is paris") == pytest.approx(0.75)
    assert rouge_l("", "paris") == 0.0


@given(st.text(max_size=60), st.text(max_size=60))
def test_metrics_are_bounded_and_symmetric(a, b):
    for metric in (exact_match, token_f1, rouge_l):
        value = metric(a, b)
        assert 0.0 <= value <= 1.0
    assert token_f1(a, b) == pytest.approx(token_f1(b, a))
    assert token_f1(a, a) == 1.0 and exact_match(a, a) == 1.0


def test_scores_count_failures_in_the_error_rate_not_as_zero_answers():
    pairs = [(Outcome("Paris", 100.0), "Paris"), (Outcome("Lima", 200.0), "Lima"),
             (Outcome(None, 900.0, "answered 500"), "Rome"), (Outcome("Oslo", 300.0), "Quito")]
    s = score(pairs)
    assert s.examples == 4 and s.answered == 3
    assert s.exact_match == pytest.approx(2 / 3) and s.error_rate == 0.25
    assert s.latency_p50_ms == pytest.approx(250.0) and s.latency_p95_ms > 300
    assert Scores.from_dict(s.to_dict()).answered == 3
    empty = score([])
    assert empty.examples == 0 and empty.error_rate == 0.0 and empty.token_f1 == 0.0


def test_an_example_is_the_conversation_up_to_its_last_assistant_turn():
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u1"},
                        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"},
                        {"role": "assistant", "content": "a2"}]}
    example = example_from(7, row)
    assert example is not None and example.index == 7 and example.reference == "a2"
    assert [m["content"] for m in example.prompt] == ["s", "u1", "a1", "u2"]
    assert example_from(0, {"messages": [{"role": "user", "content": "only a question"}]}) is None
    assert example_from(0, {"messages": [{"role": "assistant", "content": "no question"}]}) is None
    assert example_from(0, ["not", "a", "row"]) is None


def lines(n: int) -> list[bytes]:
    return [orjson.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]})
            for i in range(n)]


def test_the_sample_is_bounded_seeded_and_in_split_order():
    split = [*lines(500), b"", b"{torn"]
    a, b = sample(split, 50, "run-1"), sample(split, 50, "run-1")
    assert len(a) == 50 and [e.index for e in a] == [e.index for e in b]
    assert [e.index for e in a] == sorted(e.index for e in a)
    assert [e.index for e in sample(split, 50, "run-2")] != [e.index for e in a]
    assert len(sample(lines(10), 50, "x")) == 10


def scores(f1: float, errors: float = 0.0) -> Scores:
    return Scores(examples=10, answered=10, exact_match=f1, token_f1=f1, rouge_l=f1, length_ratio=1.0,
                  error_rate=errors, latency_p50_ms=1.0, latency_p95_ms=2.0)


def test_the_gate_rules_in_order():
    s = SETTINGS
    assert decide(s, scores(0.8), scores(0.8)).promote  # not worse is enough by default
    worse = decide(s, scores(0.7), scores(0.8))
    assert not worse.promote and worse.rule == "min_delta" and worse.serving == 0.8
    strict = dataclasses.replace(s, gate_min_delta=0.05)
    assert decide(strict, scores(0.84), scores(0.8)).rule == "min_delta"
    assert decide(strict, scores(0.86), scores(0.8)).promote
    erring = decide(s, scores(0.99, errors=0.1), scores(0.5))
    assert not erring.promote and erring.rule == "max_error_rate" and "10.0%" in erring.reason
    first = dataclasses.replace(s, gate_min_score=0.5)
    assert decide(first, scores(0.4), None).rule == "min_score" and decide(first, scores(0.6), None).promote
    assert decide(dataclasses.replace(s, gate_metric="exact_match"), scores(0.3), None).metric == "exact_match"
    nothing = dataclasses.replace(scores(0.0), examples=0, answered=0)
    assert decide(first, nothing, None).promote  # no test split and nothing serving: the smoke test decides
    refused = decide(s, nothing, scores(0.8))
    assert not refused.promote and refused.rule == "no_examples" and "cannot be judged" in refused.reason


def test_manifest_eval_and_gate_keys_reach_the_run_settings():
    m = parse_manifest(b'{"eval": {"max_rows": 50}, "gate": {"metric": "rouge_l", "min_delta": 0.01, '
                       b'"max_error_rate": 0, "min_score": 0.3, "enabled": true}}')
    s = settings_for(SETTINGS, run_config(SETTINGS, m))
    assert (s.eval_max_rows, s.gate_metric, s.gate_min_delta, s.gate_max_error_rate, s.gate_min_score) == (
        50, "rouge_l", 0.01, 0.0, 0.3)
    default = settings_for(SETTINGS, run_config(SETTINGS, parse_manifest(b"{}")))
    assert default.gate_enabled and default.gate_metric == "token_f1" and default.eval_max_rows == 200


def test_manifest_eval_and_gate_problems_name_their_key_paths():
    with pytest.raises(ManifestError) as caught:
        parse_manifest(b'{"eval": {"max_rows": 0, "rows": 3}, "gate": {"metric": "bleu", "enabled": "no", '
                       b'"max_error_rate": 2}}')
    problems = caught.value.problems
    assert "eval.max_rows: expected an integer from 1 to 5000, got 0" in problems
    assert any(p.startswith("eval.rows: unknown key (did you mean 'max_rows'?)") for p in problems)
    assert any(p.startswith("gate.metric: expected one of 'token_f1'") for p in problems)
    assert "gate.enabled: expected true or false, got \"no\"" in problems
    assert "gate.max_error_rate: expected a number from 0 to 1, got 2" in problems


def test_a_locked_gate_may_only_be_made_stricter():
    locked = dataclasses.replace(SETTINGS, gate_locked=True)
    looser = parse_manifest(b'{"gate": {"enabled": false, "max_error_rate": 0.5, "min_delta": -0.1}}')
    problems = guardrail_problems(looser, locked)
    assert {p.split(":")[0] for p in problems} == {"gate.enabled", "gate.max_error_rate", "gate.min_delta"}
    stricter = parse_manifest(b'{"gate": {"max_error_rate": 0.0, "min_delta": 0.05, "min_score": 0.2}}')
    assert guardrail_problems(stricter, locked) == []
    assert guardrail_problems(looser, SETTINGS) == []  # unlocked: the manifest decides
