"""Core quota and usage per VM family, as ``GET …/locations/{loc}/usages`` and ``…/quotas`` report them.

Shapes follow the Azure ML REST spec (``Usages_List`` → ``ListUsagesResult`` of ``Usage``; ``Quotas_List``
→ ``ListWorkspaceQuotas`` of ``ResourceQuota``; stable 2025-12-01 and its examples): one
``vmFamily/usages`` entry per VM family of ``VM_SIZES`` and the regional ``dedicatedCores/usages`` total.
``name.value`` is the family as ``vmSizes`` names it, ``localizedValue`` Azure's "Standard <X> Family
Cluster Dedicated vCPUs".

Cores in use come from the store, counted as Azure allocates them: each unfinished pipeline job's
fine-tune step (``instance_type_finetune`` × ``num_nodes_finetune`` on serverless, the cluster's VM size
× its nodes, at most ``max_nodes`` per cluster, on a compute cluster) and each online deployment not
Failed (``instanceType`` × ``sku.capacity``). The other steps' small CPU computes are not counted.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from emulator import arm
from emulator.jobs import TERMINAL

if TYPE_CHECKING:
    from emulator.core import Emulator

REGIONAL = "regional"  # the core_quota key of the regional total
REGIONAL_NAME = "Total Cluster Dedicated Regional vCPUs"
# Dedicated vCPU quota per family (what a subscription that has asked for GPU quota might hold).
DEFAULT_LIMITS: dict[str, int] = {
    "standardDSv2Family": 100,
    "standardDv2Family": 100,
    "Standard NCASv3_T4 Family": 64,
    "standardNCSv3Family": 48,
    "standardNDSv2Family": 40,
    "StandardNCADSA100v4Family": 96,
    "Standard NDASv4_A100 Family": 96,
    "StandardNDAMSv4_A100Family": 96,
    REGIONAL: 400,
}


def _sizes() -> dict[str, tuple[str, int]]:
    from emulator.routes_workspace import VM_SIZES  # here: routes_workspace imports this module

    return {name.lower(): (family, cpus) for name, family, cpus, _gpus, _mem in VM_SIZES}


def families() -> list[str]:
    """The VM families of the region, in VM_SIZES order."""
    return list(dict.fromkeys(family for family, _ in _sizes().values()))


def localized(family: str) -> str:
    """``standardNCSv3Family`` / ``Standard NCASv3_T4 Family`` → ``Standard NCSv3 Family Cluster Dedicated vCPUs``."""
    core = family.replace(" ", "")
    if core.lower().startswith("standard"):
        core = core[len("standard"):]
    if core.lower().endswith("family"):
        core = core[: -len("family")]
    return f"Standard {core} Family Cluster Dedicated vCPUs"


def limits(emu: Emulator) -> dict[str, int]:
    """Each family's limit (and the regional total's): the defaults, overridden by ``--core-quota``."""
    configured = {k.lower(): v for k, v in emu.cfg.core_quota.items()}
    out = {}
    for family in [*families(), REGIONAL]:
        out[family] = configured.get(family.lower(), DEFAULT_LIMITS.get(family, 24))
    return out


def cores_in_use(emu: Emulator) -> Counter[str]:
    """Cores allocated per family right now (see the module docstring for what counts)."""
    sizes = _sizes()
    used: Counter[str] = Counter()

    def add(size: Any, count: int) -> None:
        known = sizes.get(str(size or "").lower())
        if known is not None and count > 0:
            used[known[0]] += known[1] * count

    on_cluster: Counter[str] = Counter()
    for doc in emu.store["jobs"].values():
        if doc.get("kind") != "pipeline" or doc.get("status") in TERMINAL:  # queued ones hold their cores too
            continue
        params = (doc.get("plan") or {}).get("params") or {}
        nodes = _int(params.get("num_nodes_finetune"), 1)
        compute = str(params.get("compute_finetune") or "serverless")
        if compute.lower() == "serverless":
            add(params.get("instance_type_finetune"), nodes)
        else:
            on_cluster[compute] += nodes
    for name, nodes in on_cluster.items():
        cluster = emu.store["computes"].get(name)
        if cluster is not None:
            add(cluster.get("size"), min(nodes, _int(cluster.get("max_nodes"), nodes)))
    for dep in emu.store["deployments"].values():
        props = dep.get("properties") or {}
        if props.get("provisioningState") == "Failed":
            continue
        add(props.get("instanceType"), _int((dep.get("sku") or {}).get("capacity"), 1))
    return used


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def usages(emu: Emulator) -> list[dict[str, Any]]:
    """The ``Usage`` list: the regional total, then one entry per family."""
    cfg, faults = emu.cfg, emu.faults
    limit = limits(emu)
    used = cores_in_use(emu)
    per_family = {f: limit[f] if faults.quota_exhausted(f) else used.get(f, 0) for f in families()}
    total = limit[REGIONAL] if faults.quota_exhausted("*") else min(limit[REGIONAL], sum(per_family.values()))
    sub = f"/subscriptions/{cfg.subscription_id}"

    def item(rid: str, kind: str, name: dict[str, str], current: int, cap: int) -> dict[str, Any]:
        return {
            "id": rid, "amlWorkspaceLocation": cfg.location, "type": f"{arm.PROVIDER}/{kind}/usages",
            "unit": "Count", "currentValue": current, "limit": cap, "name": name,
        }

    regional = {"value": REGIONAL_NAME, "localizedValue": REGIONAL_NAME}
    items = [item(f"{sub}/usages", "dedicatedCores", regional, total, limit[REGIONAL])]
    for family in families():
        label = localized(family)
        items.append(item(f"{sub}/usages/{label.replace(' ', '_')}", "vmFamily",
                          {"value": family, "localizedValue": label}, per_family[family], limit[family]))
    return items


def quotas(emu: Emulator) -> list[dict[str, Any]]:
    """The ``ResourceQuota`` list: each family's subscription quota and the workspace's share (all of it)."""
    cfg = emu.cfg
    limit = limits(emu)
    items = []
    for family in families():
        label = localized(family)
        name = {"value": family, "localizedValue": label}
        slug = label.replace(" ", "_")
        for rid, kind in ((f"/subscriptions/{cfg.subscription_id}/quotas/{slug}", "vmFamily"),
                          (f"{emu.ws_id}/quotas/{slug}", "workspaces")):
            items.append({"id": rid, "amlWorkspaceLocation": cfg.location, "type": f"{arm.PROVIDER}/{kind}/quotas",
                          "name": name, "limit": limit[family], "unit": "Count"})
    return items
