"""Deterministic Azure ML names derived from a run, so retries find what a first attempt made."""

from __future__ import annotations

import hashlib
import re

from shared.azureml.pipeline import job_name_for

__all__ = ["deployment_name_for", "job_name_for", "model_version_for", "run_id_from_job"]
_VALID = re.compile(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?")  # fullmatch: `$` would allow a final newline


def model_version_for(run_id: str) -> str:
    """A run registers exactly one model version: the run id itself (versions are strings)."""
    return run_id


def run_id_from_job(job_name: str) -> str | None:
    prefix = job_name_for("")
    return job_name[len(prefix):] if job_name.startswith(prefix) and len(job_name) > len(prefix) else None


def deployment_name_for(model_name: str, version: str) -> str:
    """One deployment per model version, valid for Azure's 3-32 character rule."""
    tag = hashlib.sha256(f"{model_name}:{version}".encode()).hexdigest()
    slug = re.sub(r"[^a-zA-Z0-9-]+", "-", version).strip("-").lower()
    name = f"v{tag[:4]}-{slug}"
    if len(name) > 32 or not _VALID.fullmatch(name):
        name = f"v{tag[:16]}"
    return name
