"""Answer-quality metrics of one deployment over an evaluation's examples.

Exact match and token F1 follow the SQuAD evaluation script's definitions (lower case, punctuation and
English articles removed, whitespace collapsed); ROUGE-L is the longest-common-subsequence F-measure of
``rouge-score``, Google's reference implementation. Each is a mean over the examples that were answered;
failed calls count in the error rate, not as zero scores, so an outage is not mistaken for bad answers.
"""

from __future__ import annotations

import re
import statistics
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any, Literal

Metric = Literal["token_f1", "exact_match", "rouge_l"]
METRICS: tuple[Metric, ...] = ("token_f1", "exact_match", "rouge_l")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(answer: str, reference: str) -> float:
    return float(normalise(answer) == normalise(reference))


def token_f1(answer: str, reference: str) -> float:
    """Harmonic mean of token precision and recall (bag of words after ``normalise``)."""
    got, want = normalise(answer).split(), normalise(reference).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


@cache
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(answer: str, reference: str) -> float:
    if not answer.strip() or not reference.strip():
        return float(answer.strip() == reference.strip())
    return float(_rouge().score(reference, answer)["rougeL"].fmeasure)


@dataclass(frozen=True)
class Outcome:
    """One scoring call of an evaluation: the answer, or the error, and how long it took."""

    answer: str | None
    latency_ms: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Outcome:
        return cls(raw.get("answer"), float(raw.get("latency_ms", 0.0)), raw.get("error"))


@dataclass(frozen=True)
class Scores:
    """What one deployment scored: quality means over answered examples, error rate and latency over all."""

    examples: int
    answered: int
    exact_match: float
    token_f1: float
    rouge_l: float
    length_ratio: float  # mean answer words / mean reference words: 1.0 is the reference's length
    error_rate: float
    latency_p50_ms: float
    latency_p95_ms: float

    def metric(self, name: Metric) -> float:
        value: float = getattr(self, name)
        return value

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Scores:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__})


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def score(pairs: Iterable[tuple[Outcome, str]]) -> Scores:
    """Scores of (outcome, reference) pairs."""
    em, f1, rl, latencies = [], [], [], []
    answer_words = reference_words = 0
    examples = errors = 0
    for outcome, reference in pairs:
        examples += 1
        latencies.append(outcome.latency_ms)
        if outcome.error is not None or outcome.answer is None:
            errors += 1
            continue
        em.append(exact_match(outcome.answer, reference))
        f1.append(token_f1(outcome.answer, reference))
        rl.append(rouge_l(outcome.answer, reference))
        answer_words += len(outcome.answer.split())
        reference_words += len(reference.split())
    mean = statistics.fmean
    return Scores(
        examples=examples, answered=len(f1), exact_match=mean(em) if em else 0.0, token_f1=mean(f1) if f1 else 0.0,
        rouge_l=mean(rl) if rl else 0.0, length_ratio=answer_words / reference_words if reference_words else 0.0,
        error_rate=errors / examples if examples else 0.0, latency_p50_ms=_percentile(sorted(latencies), 50),
        latency_p95_ms=_percentile(sorted(latencies), 95))
