"""The platform team's bounds on what a manifest may choose (app settings; empty lists allow anything).

Only what the manifest itself sets is held against them: the app's own defaults are the platform
team's choice already, and a default outside a bound is a settings problem, not the user's.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.manifest.schema import Manifest
from shared.settings import Settings


def _allowed(value: str | None, allowed: Iterable[str], path: str, setting: str, problems: list[str]) -> None:
    allow = list(allowed)
    if value is None or not allow:
        return
    if value.lower() not in {a.lower() for a in allow}:
        problems.append(f"{path}: {value!r} is not allowed here ({setting}: {', '.join(allow)})")


def guardrail_problems(manifest: Manifest, settings: Settings) -> list[str]:
    s, m = settings, manifest
    problems: list[str] = []
    _allowed(m.registry, s.allowed_registries, "registry", "TUNEFLOW_ALLOWED_REGISTRIES", problems)
    _allowed(m.base_model, s.allowed_base_models, "base_model", "TUNEFLOW_ALLOWED_BASE_MODELS", problems)
    _allowed(m.compute, s.allowed_computes, "compute", "TUNEFLOW_ALLOWED_COMPUTES", problems)
    _allowed(m.instance_type, s.allowed_instance_types, "instance_type", "TUNEFLOW_ALLOWED_INSTANCE_TYPES", problems)
    _allowed(m.deployment_instance_type, s.allowed_instance_types, "deployment.instance_type",
             "TUNEFLOW_ALLOWED_INSTANCE_TYPES", problems)
    if m.num_nodes is not None and m.num_nodes > s.max_nodes:
        problems.append(f"num_nodes: {m.num_nodes} is more than allowed here (TUNEFLOW_MAX_NODES: {s.max_nodes})")
    count = m.deployment_instance_count
    if count is not None and count > s.max_instances:
        problems.append(f"deployment.instance_count: {count} is more than allowed here "
                        f"(TUNEFLOW_MAX_INSTANCES: {s.max_instances})")
    prefix = s.endpoint_prefix
    if m.endpoint is not None and prefix and not m.endpoint.startswith(prefix):
        problems.append(f"endpoint: {m.endpoint!r} does not start with {prefix!r} (TUNEFLOW_ENDPOINT_PREFIX)")
    if s.gate_locked:
        problems.extend(_looser_gate(m, s))
    if m.instance_type is not None and (m.compute or s.compute) != "serverless":
        problems.append("instance_type: only used with serverless compute (set \"compute\": \"serverless\")")
    return problems


def _looser_gate(m: Manifest, s: Settings) -> list[str]:
    """With TUNEFLOW_GATE_LOCKED, a manifest may make the gate stricter, never looser."""
    g, problems = m.gate, []
    looser = {
        "enabled": g.get("enabled") is False and s.gate_enabled,
        "metric": "metric" in g and g["metric"] != s.gate_metric,
        "min_delta": g.get("min_delta", s.gate_min_delta) < s.gate_min_delta,
        "max_error_rate": g.get("max_error_rate", s.gate_max_error_rate) > s.gate_max_error_rate,
        "min_score": g.get("min_score", s.gate_min_score) < s.gate_min_score,
    }
    for key, loosens in looser.items():
        if loosens:
            problems.append(f"gate.{key}: the gate may only be made stricter here (TUNEFLOW_GATE_LOCKED)")
    return problems
