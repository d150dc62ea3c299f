"""Judging a candidate before it serves: evaluation on the run's own test split beside the deployment
that serves, and the quality gate that decides (see ``runner``, ``metrics``, ``gate``)."""

from shared.evaluation.gate import Verdict, decide
from shared.evaluation.metrics import METRICS, Outcome, Scores, score
from shared.evaluation.runner import advance, report_key

__all__ = ["METRICS", "Outcome", "Scores", "Verdict", "advance", "decide", "report_key", "score"]
