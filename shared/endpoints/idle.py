"""Idle teardown: delete an endpoint that has served no scoring call for a while.

A forgotten GPU endpoint costs money every hour. The timer looks at each endpoint tuneflow manages;
its last activity is the latest of: the last scoring call (``Activity``), the first time the timer
saw it, and the last time a run was deployed onto it. Past its idle minutes — the endpoint's own tag
(a manifest's ``idle_teardown_minutes``) or ``TUNEFLOW_IDLE_TEARDOWN_MINUTES`` — it is torn down like
``DELETE /api/endpoints/{name}``, with the reason on every affected run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.azureml import tags
from shared.endpoints.activity import Activity, ActivityRecord
from shared.endpoints.teardown import Teardown
from shared.errors import TuneflowError
from shared.runs import RunState, RunStore

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)


def last_deployed(runs: RunStore, endpoint: str) -> datetime | None:
    """When a run last went onto ``endpoint``: only live runs are read (the listing filters on metadata);
    a retired or torn-down run's deployment is older than the one that replaced it."""
    live = (RunState.DEPLOYING, RunState.DEPLOYED)
    times = [datetime.fromisoformat(t.at) for run in runs.list(live) if run.endpoint == endpoint
             for t in run.history if t.state in live]
    return max(times, default=None)


def idle_minutes(settings: Settings, endpoint: Mapping[str, Any] | None) -> tuple[float, str]:
    """The endpoint's idle limit in minutes (0: never) and where it comes from."""
    raw = ((endpoint or {}).get("tags") or {}).get(tags.IDLE_MINUTES)
    try:
        minutes = float(raw) if raw is not None else None
    except (TypeError, ValueError):
        minutes = None
    if minutes is None or math.isnan(minutes) or minutes < 0:  # absent, or not a number we wrote
        return settings.idle_teardown_minutes, "TUNEFLOW_IDLE_TEARDOWN_MINUTES"
    return minutes, f"its manifest's idle_teardown_minutes (tag {tags.IDLE_MINUTES})"


def idle_deadline(minutes: float, record: ActivityRecord | None, deployed: datetime | None) -> datetime | None:
    """When idle teardown would delete the endpoint if nobody scores it; None when it never would (off), or
    its idle clock has not started (the next pass starts it)."""
    if minutes <= 0 or record is None:
        return None
    last = max(record.last_active, deployed) if deployed else record.last_active
    return last + timedelta(minutes=minutes)


def idle_teardown(settings: Settings, activity: Activity, teardown: Teardown, runs: Callable[[], RunStore],
                  now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> list[str]:
    """One pass; returns the endpoints torn down."""
    teardown.resume_pending()
    activity.flush()  # this instance's own recent calls first
    torn = []
    for name in teardown.tuneflow_endpoints(settings.endpoint):
        try:
            endpoint = teardown.control.endpoint(name)
        except TuneflowError as exc:
            log.warning("idle teardown: cannot read %s: %s", name, exc)
            continue
        if endpoint is None:
            continue
        minutes, source = idle_minutes(settings, endpoint)
        if minutes <= 0:
            continue
        limit = timedelta(minutes=minutes)
        record = activity.get(name)
        deployed = last_deployed(runs(), name)
        last = max(record.last_active, deployed) if deployed else record.last_active
        idle = now() - last
        if idle < limit:
            log.info("idle teardown: %s active %.1f min ago; kept", name, idle.total_seconds() / 60)
            continue
        note = (f"idle teardown: no scoring call for {idle.total_seconds() / 60:.1f} min "
                f"(limit {minutes:g} min: {source})")
        log.warning("idle teardown: deleting endpoint %s: %s", name, note)
        teardown.endpoint(name, note)
        torn.append(name)
    return torn
