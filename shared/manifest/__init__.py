"""Manifests: what one dataset drop asks for (``tuneflow.json`` beside its data, or blob metadata).

``schema`` parses and checks a manifest on its own (types, names, key paths, "did you mean");
``guardrails`` holds it against the platform team's app settings; ``effective`` merges it over the
app settings into the configuration a run carries from ingest to deployment.
"""

from shared.manifest.effective import RUN_FIELDS, run_config, settings_for
from shared.manifest.guardrails import guardrail_problems
from shared.manifest.schema import MANIFEST_NAME, METADATA_KEY, Manifest, parse_manifest

__all__ = [
    "MANIFEST_NAME",
    "METADATA_KEY",
    "RUN_FIELDS",
    "Manifest",
    "guardrail_problems",
    "parse_manifest",
    "run_config",
    "settings_for",
]
