"""Timer triggers: fire on the NCRONTAB schedule, one invocation at a time, as the host does.

Times are UTC unless WEBSITE_TIME_ZONE names an IANA zone (Azure also accepts Windows zone names
there; devhost does not). The next occurrence is computed after an invocation finishes, so a slow
run never overlaps the next one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from devhost.bindings import timer_value
from devhost.config import ConfigError
from devhost.discovery import FunctionSpec
from devhost.invoker import Invoker, Outcome
from devhost.ncrontab import Schedule

log = logging.getLogger("devhost")


def timezone(environ: Mapping[str, str]) -> dt.tzinfo:
    name = environ.get("WEBSITE_TIME_ZONE")
    if not name:
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(f"WEBSITE_TIME_ZONE={name!r} is not an IANA time zone devhost knows") from e


class TimerRunner:
    def __init__(self, spec: FunctionSpec, schedule: Schedule, invoker: Invoker, tz: dt.tzinfo) -> None:
        self.spec = spec
        self.schedule = schedule
        self.invoker = invoker
        self.tz = tz
        self.last: dt.datetime | None = None
        self.next: dt.datetime | None = None
        self._lock = asyncio.Lock()

    def status(self) -> dict[str, Any]:
        now = dt.datetime.now(self.tz).isoformat()
        return {
            "Last": self.last.isoformat() if self.last else None,
            "Next": self.next.isoformat() if self.next else None,
            "LastUpdated": now,
        }

    async def fire(self, reason: str) -> Outcome:
        async with self._lock:  # the host never overlaps runs of one timer function
            value = timer_value(self.status() if self.last else None)
            outcome = await self.invoker.invoke(self.spec, value, reason=reason)
            self.last = dt.datetime.now(self.tz)
            return outcome

    async def run(self) -> None:
        if self.spec.trigger.get("runOnStartup"):
            await self.fire("Timer fired at startup (runOnStartup).")
        cursor = dt.datetime.now(self.tz)
        while True:
            now = dt.datetime.now(self.tz)
            self.next = self.schedule.next_after(max(cursor, now))
            await asyncio.sleep(max((self.next - dt.datetime.now(self.tz)).total_seconds(), 0))
            cursor = self.next  # an early wake-up must not fire the same occurrence twice
            await self.fire(f"Timer fired at {self.next.isoformat()}")
