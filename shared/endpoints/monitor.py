"""A deployment's traffic as Azure Monitor reports it: what a mirror rollout is judged on.

Mirrored calls never pass through tuneflow's scoring proxy (Azure ML drops their answers), so the
candidate's numbers come from the endpoint's platform metrics: ``RequestsPerMinute`` split by
``deployment`` and ``statusCodeClass``, and ``RequestLatency_P95`` by ``deployment``, read with the Monitor
REST API (``{endpoint id}/providers/Microsoft.Insights/metrics``, api-version 2023-10-01, one-minute grain).
Monitor's own latency is a minute or two; a bake shorter than that judges on what has arrived.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared.endpoints.live import Window

if TYPE_CHECKING:
    from shared.endpoints.control import ControlPlane

API_VERSION = "2023-10-01"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window(control: ControlPlane, endpoint: str, deployment: str, since: datetime) -> Window:
    """The deployment's calls (live and mirrored), failures (5xx) and worst minute's p95 since ``since``."""
    flt = quote(f"deployment eq '{deployment}' and statusCodeClass eq '*'")
    url = (control.url(f"/onlineEndpoints/{endpoint}/providers/Microsoft.Insights/metrics")
           + f"?api-version={API_VERSION}&metricnames=RequestsPerMinute,RequestLatency_P95&aggregation=Total,Average"
           f"&interval=PT1M&timespan={_iso(since)}/{_iso(datetime.now(UTC))}&$filter={flt}")
    body: dict[str, Any] = control.call("GET", url, what=f"reading the metrics of {endpoint}/{deployment}").json()
    requests = errors = 0
    p95: float | None = None
    for metric in body.get("value") or []:
        name = (metric.get("name") or {}).get("value")
        for series in metric.get("timeseries") or []:
            dims = {(m.get("name") or {}).get("value", "").lower(): m.get("value")
                    for m in series.get("metadatavalues") or []}
            if dims.get("deployment") not in (None, deployment):
                continue
            for point in series.get("data") or []:
                if name == "RequestsPerMinute":
                    count = int(point.get("total") or 0)
                    requests += count
                    errors += count if str(dims.get("statuscodeclass")) == "5xx" else 0
                elif name == "RequestLatency_P95" and point.get("average") is not None:
                    p95 = max(p95 or 0.0, float(point["average"]))
    return Window(requests, errors, p95)
