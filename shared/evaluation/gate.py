"""The quality gate: may a candidate replace what serves?

Rules, in order (the first that fails is the verdict's reason):
0. there is something to judge on: without test examples a candidate replaces nothing (and is promoted
   only when nothing serves, the smoke test having passed);
1. its error rate is at most ``gate_max_error_rate``;
2. with something serving, its ``gate_metric`` is at least the serving deployment's plus ``gate_min_delta``;
3. with nothing serving, its ``gate_metric`` is at least ``gate_min_score``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from shared.evaluation.metrics import Scores

if TYPE_CHECKING:
    from shared.settings import Settings


@dataclass(frozen=True)
class Verdict:
    promote: bool
    rule: str  # "no_examples", "max_error_rate", "min_delta", "min_score" or "passed"
    reason: str
    metric: str
    candidate: float
    serving: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(s: Settings, candidate: Scores, serving: Scores | None) -> Verdict:
    metric = s.gate_metric
    mine = candidate.metric(metric)
    theirs = serving.metric(metric) if serving is not None else None

    def verdict(promote: bool, rule: str, reason: str) -> Verdict:
        return Verdict(promote, rule, reason, metric, mine, theirs)

    if candidate.examples == 0:  # no test split to judge on (a tiny dataset, test_fraction 0)
        if theirs is None:
            return verdict(True, "no_examples", "no test examples to evaluate on; nothing serves yet, so the "
                                                "smoke test decides")
        return verdict(False, "no_examples", "no test examples to compare with the serving deployment on: "
                                             "a model that cannot be judged does not replace one that serves")
    if candidate.error_rate > s.gate_max_error_rate:
        return verdict(False, "max_error_rate", f"the candidate failed {candidate.error_rate:.1%} of its evaluation "
                                                f"calls (gate.max_error_rate {s.gate_max_error_rate:.1%})")
    if theirs is not None:
        need = theirs + s.gate_min_delta
        if mine + 1e-9 < need:
            return verdict(False, "min_delta", f"{metric} {mine:.3f} is below the serving deployment's {theirs:.3f}"
                                               f"{f' + {s.gate_min_delta:g}' if s.gate_min_delta else ''}")
        return verdict(True, "passed", f"{metric} {mine:.3f} against the serving deployment's {theirs:.3f}")
    if mine + 1e-9 < s.gate_min_score:
        return verdict(False, "min_score", f"{metric} {mine:.3f} is below gate.min_score {s.gate_min_score:g} "
                                           "(nothing serves yet)")
    return verdict(True, "passed", f"{metric} {mine:.3f} (nothing serves yet; gate.min_score {s.gate_min_score:g})")
