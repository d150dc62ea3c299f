"""Does a fine-tune or a deployment fit its VM family's dedicated core quota?

Azure ML does not refuse a job its family's quota cannot hold: the job queues until cores free up, which
may be never. So before submitting (or deploying) the app asks: the size's family and vCPUs come from
``compute.list_sizes()``, the family's usage and limit from ``compute.list_usage()``. What Azure does not
report (an unknown size, a family missing from the usages, an unlimited ``-1``) is logged and let through:
only a shortfall Azure itself reports blocks a run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from shared.azureml.sdk import azure_errors

log = logging.getLogger(__name__)

_DEDICATED_SUFFIX = "clusterdedicatedvcpus"


def quota_problem(workspace: Any, instance_type: str, instances: int) -> str | None:
    """None when ``instances`` × ``instance_type`` fit the family's quota, else what is short, e.g.
    ``needs 24 cores of family standardNCADSA100v4Family (Standard_NC24ads_A100_v4 × 1); 96 of 96 in use``.

    SDK errors surface as tuneflow errors (``TransientError`` for throttling and outages) via ``azure_errors``.
    """
    if instances <= 0:
        return None
    with azure_errors("listing VM sizes"):
        sizes = list(workspace.compute.list_sizes())
    size = _find_size(sizes, instance_type)
    if size is None:
        log.warning("quota not checked: VM size %s is not among the region's VM sizes", instance_type)
        return None
    family, vcpus = size
    needed = vcpus * instances
    with azure_errors("listing core usage"):
        usages = list(workspace.compute.list_usage())
    entries = [u for u in usages if _is_family_entry(u, family)]
    if not entries:
        log.warning("quota not checked: Azure ML reports no usage for family %s (%s)", family, instance_type)
        return None
    for current, limit in (_usage_numbers(u) for u in entries):
        if limit is None or limit < 0:  # -1: no limit of its own
            continue
        if current + needed > limit:
            return (f"needs {needed} cores of family {family} ({instance_type} × {instances}); "
                    f"{current} of {limit} in use")
    return None


def _field(obj: Any, *names: str) -> Any:
    """The first present field: the SDK's entities keep some REST names (``vCPUs``, ``currentValue``)
    beside their snake_case attributes (left None), and nested names as plain dicts."""
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _find_size(sizes: Iterable[Any], instance_type: str) -> tuple[str, int] | None:
    for vm in sizes:
        if str(_field(vm, "name") or "").lower() != instance_type.lower():
            continue
        family = str(_field(vm, "family") or "")
        try:
            vcpus = int(_field(vm, "v_cp_us", "vCPUs", "vcpus") or 0)
        except (TypeError, ValueError):
            vcpus = 0
        return (family, vcpus) if family and vcpus > 0 else None
    return None


def _family_key(text: str) -> str:
    """``standardNCSv3Family``, ``Standard NCSv3 Family`` and ``Standard NCSv3 Family Cluster Dedicated vCPUs``
    all become ``ncsv3`` (Azure spells one family several ways across its APIs)."""
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    key = key.removesuffix(_DEDICATED_SUFFIX).removeprefix("standard")
    return key.removesuffix("family")


def _is_family_entry(usage: Any, family: str) -> bool:
    name = _field(usage, "name")
    labels = [name] if isinstance(name, str) else [_field(name, "value"), _field(name, "localized_value",
                                                                                    "localizedValue")]
    want = _family_key(family)
    return any(isinstance(label, str) and label and _family_key(label) == want for label in labels)


def _usage_numbers(usage: Any) -> tuple[int, int | None]:
    current = _field(usage, "current_value", "currentValue")
    limit = _field(usage, "limit")
    try:
        return int(current or 0), None if limit is None else int(limit)
    except (TypeError, ValueError):
        return 0, None
