"""What ``model`` may name in an OpenAI-style call, and the list ``GET /v1/models`` answers.

Every endpoint tuneflow manages is a model (its traffic split decides the deployment), and so is each
model version deployed on it (``name:version``, pinned to its deployment). A deployment name and the
aliases ``tuneflow``/``default`` (the configured endpoint) are accepted too, but not listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.scoring.resolve import EndpointInfo

ALIASES = ("tuneflow", "default")


@dataclass(frozen=True)
class ModelEntry:
    id: str
    endpoint: str
    deployment: str | None  # None: the endpoint's traffic split decides
    created: int

    def public(self) -> dict[str, object]:
        """OpenAI's Model object, plus where it is served."""
        body: dict[str, object] = {"id": self.id, "object": "model", "created": self.created, "owned_by": "tuneflow",
                                   "endpoint": self.endpoint}
        if self.deployment is not None:
            body["deployment"] = self.deployment
        return body


def entries(info: EndpointInfo) -> list[ModelEntry]:
    """The endpoint, then each model version deployed on it (by its share of traffic, largest first)."""
    out = [ModelEntry(info.name, info.name, None, info.created)]
    ranked = sorted(info.models.items(), key=lambda kv: (-info.traffic.get(kv[0], 0), kv[0]))
    seen = {info.name}
    for deployment, model in ranked:
        if model and model not in seen:
            seen.add(model)
            out.append(ModelEntry(model, info.name, deployment, info.created))
    return out


def match(info: EndpointInfo, model: str, *, default: bool = False) -> ModelEntry | None:
    """The entry ``model`` names on this endpoint: the endpoint, ``name:version``, a deployment name, a model
    name (any version: the traffic split decides), or an alias when this is the configured endpoint."""
    if model == info.name or (default and model in ALIASES):
        return ModelEntry(model, info.name, None, info.created)
    for entry in entries(info)[1:]:
        if entry.id == model:
            return entry
    if model in info.models:
        return ModelEntry(model, info.name, model, info.created)
    if model in {nv.rsplit(":", 1)[0] for nv in info.models.values() if nv}:
        return ModelEntry(model, info.name, None, info.created)
    return None


def listed(infos: Iterable[EndpointInfo]) -> list[ModelEntry]:
    return [entry for info in infos for entry in entries(info)]
