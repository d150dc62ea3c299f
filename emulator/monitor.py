"""Azure Monitor's platform metrics of online endpoints, as the scoring router sees the calls.

Every call an endpoint's router answers — live ones and mirrored copies alike — is counted per deployment
in one-minute buckets. ``GET {endpoint id}/providers/Microsoft.Insights/metrics`` serves them in the
Monitor REST API's shape (api-version 2023-10-01): ``RequestsPerMinute`` (Total, dimensions ``deployment``
and ``statusCodeClass``) and ``RequestLatency_P95`` (Average, in ms, dimension ``deployment``), over
``timespan`` at ``interval`` PT1M, filtered by ``$filter`` (``deployment eq 'green' and statusCodeClass eq
'*'``). Azure computes these from its own front door; here the router is that front door.
"""

from __future__ import annotations

import re
import statistics
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import arm
from emulator.routes_workspace import emu_of

if TYPE_CHECKING:
    from emulator.core import Emulator

METRICS = ("RequestsPerMinute", "RequestLatency_P95")
_CLAUSE = re.compile(r"\s*(\w+)\s+eq\s+'([^']*)'\s*", re.I)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class EndpointMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (endpoint, deployment, minute) → status class → count; and the latencies (ms) of that minute
        self._counts: dict[tuple[str, str, datetime], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._latency: dict[tuple[str, str, datetime], list[float]] = defaultdict(list)

    def record(self, endpoint: str, deployment: str, status: int, latency_ms: float) -> None:
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        with self._lock:
            self._counts[(endpoint, deployment, minute)][status_class(status)] += 1
            self._latency[(endpoint, deployment, minute)].append(latency_ms)

    def series(self, endpoint: str, start: datetime, end: datetime) -> list[tuple[str, datetime, dict[str, int],
                                                                                  list[float]]]:
        with self._lock:
            return [(dep, minute, dict(counts), list(self._latency[(ep, dep, minute)]))
                    for (ep, dep, minute), counts in self._counts.items()
                    if ep == endpoint and start - timedelta(minutes=1) < minute <= end]


def _p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def _filters(text: str) -> dict[str, str] | None:
    found: dict[str, str] = {}
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.I) if text.strip() else []:
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            return None
        found[match.group(1).lower()] = match.group(2)
    return found


async def metrics(request: Request) -> Response:
    emu: Emulator = emu_of(request)
    name = request.path_params["name"]
    if name not in emu.deployments.endpoints:
        return arm.error(404, "ResourceNotFound", f"Endpoint '{name}' was not found.")
    q = request.query_params
    wanted = [m.strip() for m in (q.get("metricnames") or "").split(",") if m.strip()]
    unknown = [m for m in wanted if m not in METRICS]
    if not wanted or unknown:
        return arm.bad_request(f"Unknown or missing metricnames {unknown or wanted}; supported: {', '.join(METRICS)}")
    try:
        start_text, end_text = (q.get("timespan") or "").split("/", 1)
        start, end = arm.parse_iso(start_text), arm.parse_iso(end_text)
    except ValueError:
        return arm.bad_request("timespan must be '<start>/<end>' in ISO 8601.")
    filters = _filters(q.get("$filter") or "")
    if filters is None:
        return arm.bad_request("$filter supports clauses \"<dimension> eq '<value>'\" joined by 'and'.")
    rows = emu.metrics.series(name, start, end)
    want_dep = filters.get("deployment", "*")
    want_class = filters.get("statuscodeclass", "*")
    value = []
    for metric in wanted:
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for dep, minute, counts, latencies in sorted(rows, key=lambda r: (r[0], r[1])):
            if want_dep not in ("*", dep):
                continue
            stamp = minute.isoformat().replace("+00:00", "Z")
            if metric == "RequestsPerMinute":
                for klass, count in counts.items():
                    if want_class in ("*", klass):
                        groups[(dep, klass)].append({"timeStamp": stamp, "total": float(count)})
            else:
                groups[(dep,)].append({"timeStamp": stamp, "average": _p95(latencies)})
        timeseries = []
        for dims, data in groups.items():
            meta = [{"name": {"value": "deployment", "localizedValue": "deployment"}, "value": dims[0]}]
            if len(dims) > 1:
                meta.append({"name": {"value": "statusCodeClass", "localizedValue": "statusCodeClass"},
                             "value": dims[1]})
            timeseries.append({"metadatavalues": meta, "data": data})
        value.append({"id": f"{request.url.path}/{metric}", "type": "Microsoft.Insights/metrics",
                      "name": {"value": metric, "localizedValue": metric},
                      "unit": "Count" if metric == "RequestsPerMinute" else "MilliSeconds", "timeseries": timeseries,
                      "errorCode": "Success"})
    return arm.json_response({"cost": 0, "timespan": q.get("timespan"), "interval": q.get("interval") or "PT1M",
                              "value": value, "resourceregion": emu.cfg.location,
                              "namespace": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"})


def routes(ws: str) -> list[Route]:
    return [Route(ws + "/onlineEndpoints/{name}/providers/Microsoft.Insights/metrics", metrics, methods=["GET"])]
