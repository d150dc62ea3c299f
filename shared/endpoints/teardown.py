"""Teardown: delete an endpoint (with its deployments) or one deployment, and mark the runs TORN_DOWN.

Deletions are started and not waited for — the caller gets 202 and a status URL — and deleting what is
already gone is not an error. Azure refuses to delete a deployment that still takes traffic, so its share
first moves to the endpoint's other deployments (in proportion), or to none; if that update does not
finish within a short wait, the deletion is recorded as pending and completed by the status route or
the idle-teardown timer, whichever runs first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from shared.endpoints.control import ControlPlane, mirror_of, model_of, provisioning_state, state_of, traffic_of
from shared.records import RecordStore
from shared.runs import Run, RunState, RunStore

log = logging.getLogger(__name__)
TEARDOWN_FROM = frozenset({RunState.DEPLOYED, RunState.DEPLOYING, RunState.REGISTERED, RunState.DEPLOY_FAILED,
                           RunState.RETIRED})
TRAFFIC_WAIT_S = 20.0
PENDING_PREFIX = "teardowns/"
DELETING, DELETED, PENDING = "Deleting", "Deleted", "PendingTrafficUpdate"


def rebalance(traffic: Mapping[str, int], removed: str) -> dict[str, int]:
    """``removed`` gets 0; the others keep their proportions and sum to 100 (or all stay 0)."""
    rest = {k: int(v) for k, v in traffic.items() if k != removed}
    total = sum(w for w in rest.values() if w > 0)
    out = dict.fromkeys(traffic, 0)
    if total == 0:
        return out
    shares = {k: w * 100 / total for k, w in rest.items() if w > 0}
    floors = {k: int(v) for k, v in shares.items()}
    left = 100 - sum(floors.values())
    for k in sorted(shares, key=lambda k: shares[k] - floors[k], reverse=True)[:left]:  # largest remainder
        floors[k] += 1
    out.update(floors)
    return out


@dataclass
class Teardown:
    control: ControlPlane
    runs: Callable[[], RunStore]
    records: Callable[[], RecordStore]
    invalidate: Callable[[str], None] = lambda endpoint: None  # drop cached scoring details of the endpoint
    forget: Callable[[str], None] = lambda endpoint: None  # drop its activity record (a new one starts afresh)

    def endpoint(self, name: str, note: str) -> dict[str, Any]:
        started = self.control.delete_endpoint(name)
        state = DELETING if started else DELETED
        log.info("teardown: endpoint %s → %s (%s)", name, state, note)
        self.invalidate(name)
        self._clear_pending_and_forget(name)
        torn = self._tear_down_runs(lambda run: run.endpoint == name, note)
        return {"endpoint": name, "state": state, "runs_torn_down": torn}

    def _clear_pending_and_forget(self, name: str) -> None:
        records = self.records()
        for key, _ in list(records.entries(f"{PENDING_PREFIX}{name}/")):
            records.delete(key)
        self.forget(name)

    def deployment(self, name: str, deployment: str, note: str) -> dict[str, Any]:
        endpoint = self.control.endpoint(name)
        exists = endpoint is not None and self.control.deployment(name, deployment) is not None
        state = DELETED
        if endpoint is not None and exists:
            traffic = traffic_of(endpoint)
            finished = True
            if traffic.get(deployment, 0) > 0:
                new = rebalance(traffic, deployment)
                log.info("teardown: moving traffic of %s off %s: %s", name, deployment, new)
                finished = self.control.wait(self.control.set_traffic(endpoint, new), TRAFFIC_WAIT_S)
            if finished:
                state = self._delete_deployment(name, deployment)
            else:
                self._set_pending(name, deployment, note)
                state = PENDING
        self.invalidate(name)
        torn = self._tear_down_runs(lambda run: run.endpoint == name and run.deployment == deployment, note)
        return {"endpoint": name, "deployment": deployment, "state": state, "runs_torn_down": torn}

    def _delete_deployment(self, name: str, deployment: str) -> str:
        started = self.control.delete_deployment(name, deployment)
        self.records().delete(self._pending_key(name, deployment))
        return DELETING if started else DELETED

    @staticmethod
    def _pending_key(name: str, deployment: str) -> str:
        return f"{PENDING_PREFIX}{name}/{deployment}.json"

    def _set_pending(self, name: str, deployment: str, note: str) -> None:
        data = orjson.dumps({"endpoint": name, "deployment": deployment, "note": note})
        self.records().create(self._pending_key(name, deployment), data)  # None when it exists: fine

    def _pending(self, name: str | None) -> list[tuple[str, str]]:
        records = self.records()
        out = []
        for key, _ in list(records.entries(PENDING_PREFIX + (f"{name}/" if name else ""))):
            record = records.read(key)
            if record is not None:
                pending = orjson.loads(record.data)
                out.append((str(pending["endpoint"]), str(pending["deployment"])))
        return out

    def resume_pending(self, name: str | None = None) -> int:
        """Finish deletions that waited for a traffic update; returns how many were started."""
        started = 0
        for endpoint_name, deployment in self._pending(name):
            endpoint = self.control.endpoint(endpoint_name)
            if endpoint is None:
                self.records().delete(self._pending_key(endpoint_name, deployment))
            elif traffic_of(endpoint).get(deployment, 0) == 0 and provisioning_state(endpoint) != "updating":
                self._delete_deployment(endpoint_name, deployment)
                started += 1
        return started

    def _tear_down_runs(self, matches: Callable[[Run], bool], note: str) -> list[str]:
        runs = self.runs()
        torn = []
        for run in list(runs.list(TEARDOWN_FROM)):
            if run.state in TEARDOWN_FROM and matches(run):
                after = runs.advance(run.run_id, RunState.TORN_DOWN, note=note)
                if after.state == RunState.TORN_DOWN:
                    torn.append(run.run_id)
        if torn:
            log.info("teardown: runs %s → TORN_DOWN", ", ".join(torn))
        return torn

    def endpoint_status(self, name: str) -> dict[str, Any]:
        self.resume_pending(name)
        endpoint = self.control.endpoint(name)
        if endpoint is None:
            return {"endpoint": name, "exists": False, "state": DELETED, "deployments": []}
        traffic = traffic_of(endpoint)
        deployments = self.control.deployments(name)
        pending = [d for _, d in self._pending(name)]
        return {"endpoint": name, "exists": True, "state": state_of(endpoint), "traffic": traffic,
                "mirror": mirror_of(endpoint),
                "deployments": [self._deployment_dict(d, traffic) for d in deployments],
                "pending_deletions": pending, "tags": dict(endpoint.get("tags") or {})}

    def deployment_status(self, name: str, deployment: str) -> dict[str, Any]:
        self.resume_pending(name)
        found = self.control.deployment(name, deployment)
        endpoint = self.control.endpoint(name) if found is not None else None
        if found is None or endpoint is None:
            return {"endpoint": name, "deployment": deployment, "exists": False, "state": DELETED}
        body = self._deployment_dict(found, traffic_of(endpoint))
        if (name, deployment) in self._pending(name):
            body["state"] = PENDING
        return {"endpoint": name, "deployment": deployment, "exists": True, **body}

    @staticmethod
    def _deployment_dict(deployment: Mapping[str, Any], traffic: Mapping[str, int]) -> dict[str, Any]:
        name = str(deployment.get("name"))
        model = (deployment.get("properties") or {}).get("model")
        return {"name": name, "state": state_of(deployment), "traffic": int(traffic.get(name, 0)),
                "model": model_of(model, deployment.get("tags"))}

    def tuneflow_endpoints(self, default: str) -> list[str]:
        """Endpoints tuneflow manages: the configured one and any a live run is on."""
        names = [default]
        for run in self.runs().list(TEARDOWN_FROM):
            if run.endpoint and run.endpoint not in names and run.state in TEARDOWN_FROM:
                names.append(run.endpoint)
        return names
