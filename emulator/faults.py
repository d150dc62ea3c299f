"""Faults injected on demand: set at start (``--faults FILE``) or at run time (``POST /_emulator/faults``).

Every knob is a flat JSON key; a POST merges the keys it names, ``DELETE /_emulator/faults`` clears all.
Rates are probabilities in [0, 1] (0 and 1 are deterministic); counts limit a knob to the next N uses.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class Faults:
    # Control plane (ARM, registry, run history): every matching request waits, and may fail.
    arm_latency_ms: float = 0.0
    arm_429_rate: float = 0.0
    arm_500_rate: float = 0.0
    arm_retry_after_s: int = 1
    arm_error_count: int | None = None  # at most this many injected errors, then the rates stop applying
    arm_path_contains: str | None = None  # restrict ARM faults to paths containing this text
    # Jobs: fail the next submitted job, or the jobs named here, with a message.
    fail_next_job: str | None = None
    fail_jobs: dict[str, str] | None = None
    # Deployments: fail the next created deployment, or the named ones ("endpoint/deployment" or "deployment").
    fail_next_deployment: str | None = None
    fail_deployments: dict[str, str] | None = None
    # Event delivery: deliver each event this many extra times (same id), and/or out of order.
    event_duplicates: int = 0
    event_out_of_order: bool = False
    event_reorder_window_s: float = 1.0
    # Registry: archive models (the app must refuse them): true = the configured base model, or a list of
    # registry model names.
    base_model_archived: bool | list[str] = False
    # Quota: these VM families (as vmSizes names them; true = every family and the regional total) report
    # their usage at their limit, as a subscription whose quota other workloads hold.
    quota_exhausted: bool | list[str] = False
    # Scoring: the next N scoring requests answer 429 with this Retry-After, as an endpoint over its
    # max_concurrent_requests_per_instance does.
    scoring_429_count: int = 0
    scoring_retry_after_s: int = 1
    # Answers: deployments that answer badly, by "endpoint/deployment", "deployment" or "*" (every one):
    # {"wrong_rate": 0.5, "empty_rate": 0.1, "error_rate": 0.2, "latency_ms": 300}. A wrong answer is a
    # fluent sentence that answers nothing; an error is a 500 from the deployment; latency is added first.
    bad_answers: dict[str, dict[str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultState:
    """Thread-safe holder of the current faults."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self.current = Faults()
        self._rng = random.Random()
        if initial:
            self.update(initial)

    def update(self, patch: dict[str, Any]) -> Faults:
        known = {f.name for f in fields(Faults)}
        unknown = sorted(set(patch) - known)
        if unknown:
            raise ValueError(f"unknown fault knob(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        with self._lock:
            values = self.current.to_dict()
            values.update(patch)
            candidate = Faults(**values)
            for name in ("arm_429_rate", "arm_500_rate"):
                rate = getattr(candidate, name)
                if not isinstance(rate, int | float) or not 0 <= rate <= 1:
                    raise ValueError(f"{name} must be a number between 0 and 1")
            for name in ("base_model_archived", "quota_exhausted"):
                value = getattr(candidate, name)
                if not isinstance(value, bool) and not (
                    isinstance(value, list) and all(isinstance(v, str) for v in value)
                ):
                    raise ValueError(f"{name} must be true, false or a list of names")
            _check_bad_answers(candidate.bad_answers)
            self.current = candidate
            return candidate

    def reset(self) -> Faults:
        with self._lock:
            self.current = Faults()
            return self.current

    def arm_error_for(self, path: str) -> int | None:
        """The status (429/500) to inject for this ARM request, or None."""
        with self._lock:
            f = self.current
            if f.arm_path_contains and f.arm_path_contains not in path:
                return None
            if f.arm_error_count is not None and f.arm_error_count <= 0:
                return None
            status = None
            if f.arm_429_rate and self._rng.random() < f.arm_429_rate:
                status = 429
            elif f.arm_500_rate and self._rng.random() < f.arm_500_rate:
                status = 500
            if status is not None and f.arm_error_count is not None:
                f.arm_error_count -= 1
            return status

    def base_model_archived(self, name: str, configured: str) -> bool:
        """Is the registry model ``name`` archived (``configured``: the emulator's base model name)?"""
        return _names(self.current.base_model_archived, name, default=configured)

    def quota_exhausted(self, family: str) -> bool:
        """Does this VM family's usage report its limit? ``"*"`` asks for the regional total."""
        knob = self.current.quota_exhausted
        return knob is True if family == "*" else _names(knob, family)

    def take_scoring_throttle(self) -> int | None:
        """The Retry-After (s) of a 429 to answer this scoring request with, or None."""
        with self._lock:
            f = self.current
            if f.scoring_429_count <= 0:
                return None
            f.scoring_429_count -= 1
            return max(0, int(f.scoring_retry_after_s))

    def answer_fault(self, endpoint: str, deployment: str) -> tuple[float, str | None]:
        """(latency to add in s, "wrong" | "empty" | "error" | None) for one scoring request."""
        knob = self.current.bad_answers or {}
        spec = knob.get(f"{endpoint}/{deployment}") or knob.get(deployment) or knob.get("*")
        if not spec:
            return 0.0, None
        with self._lock:
            pick = self._rng.random()
        latency = float(spec.get("latency_ms", 0)) / 1000.0
        for kind in ("error", "empty", "wrong"):
            rate = float(spec.get(f"{kind}_rate", 0))
            if pick < rate:
                return latency, kind
            pick -= rate
        return latency, None

    def arm_latency_for(self, path: str) -> float:
        f = self.current
        if f.arm_path_contains and f.arm_path_contains not in path:
            return 0.0
        return f.arm_latency_ms / 1000.0

    def take_job_failure(self, job_name: str) -> str | None:
        with self._lock:
            f = self.current
            if f.fail_jobs and job_name in f.fail_jobs:
                return f.fail_jobs[job_name]
            if f.fail_next_job:
                message, f.fail_next_job = f.fail_next_job, None
                return message
            return None

    def take_deployment_failure(self, endpoint: str, deployment: str) -> str | None:
        with self._lock:
            f = self.current
            for key in (f"{endpoint}/{deployment}", deployment):
                if f.fail_deployments and key in f.fail_deployments:
                    return f.fail_deployments[key]
            if f.fail_next_deployment:
                message, f.fail_next_deployment = f.fail_next_deployment, None
                return message
            return None


def _names(knob: bool | list[str], name: str, default: str | None = None) -> bool:
    """A bool-or-names knob applied to ``name`` (true means ``default``, when given); names match ignoring case."""
    if isinstance(knob, bool):
        return knob and (default is None or name.lower() == default.lower())
    return name.lower() in {n.lower() for n in knob}


def _check_bad_answers(knob: Any) -> None:
    if knob is None:
        return
    if not isinstance(knob, dict):
        raise ValueError("bad_answers must be an object of deployment names to {wrong_rate, empty_rate, ...}")
    for name, spec in knob.items():
        if not isinstance(spec, dict) or set(spec) - {"wrong_rate", "empty_rate", "error_rate", "latency_ms"}:
            raise ValueError(f"bad_answers.{name}: expected wrong_rate, empty_rate, error_rate, latency_ms")
        rates = [spec.get(k, 0) for k in ("wrong_rate", "empty_rate", "error_rate")]
        if not all(isinstance(r, int | float) and 0 <= r <= 1 for r in rates) or sum(rates) > 1:
            raise ValueError(f"bad_answers.{name}: rates are numbers in [0, 1] adding up to at most 1")
        latency = spec.get("latency_ms", 0)
        if not isinstance(latency, int | float) or latency < 0:
            raise ValueError(f"bad_answers.{name}.latency_ms: expected zero or more")
