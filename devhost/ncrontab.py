"""NCRONTAB schedules as the Functions timer trigger reads them.

Six fields `sec min hour day month day-of-week` (a five-field expression is read without seconds,
as the host does), each `*`, a number or name, a range `a-b`, a step `*/n` or `a-b/n`, or a comma
list of those. Like NCrontab (and unlike Vixie cron) day-of-month and day-of-week must BOTH match.
A TimeSpan (`hh:mm:ss`) schedule is accepted too and fires every interval.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_MONTHS = {
    m: i
    for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}

# (low, high, names) per field, in expression order.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")


class ScheduleError(ValueError):
    """The expression is not a valid NCRONTAB (or TimeSpan) schedule."""


def _parse_value(text: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise ScheduleError(f"{field}: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise ScheduleError(f"{field}: {value} is outside {low}-{high}")
    return value


def _parse_field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"{field}: empty list item in {text!r}")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{field}: bad step {step_text!r}")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start = _parse_value(a, low, high, names, field)
            end = _parse_value(b, low, high, names, field)
            if end < start:
                raise ScheduleError(f"{field}: range {base!r} runs backwards")
        else:
            start = _parse_value(base, low, high, names, field)
            # `5/10` means "from 5 every 10", as in NCrontab.
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    def matches(self, t: dt.datetime) -> bool:
        return (
            t.second in self.seconds
            and t.minute in self.minutes
            and t.hour in self.hours
            and t.day in self.days
            and t.month in self.months
            and (t.isoweekday() % 7) in self.weekdays
        )

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first occurrence strictly after `after` (same tzinfo as `after`)."""
        t = after.replace(microsecond=0) + dt.timedelta(seconds=1)
        limit = t + dt.timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
                continue
            if t.day not in self.days or (t.isoweekday() % 7) not in self.weekdays:
                t = (t + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            if t.hour not in self.hours:
                t = (t + dt.timedelta(hours=1)).replace(minute=0, second=0)
                continue
            if t.minute not in self.minutes:
                t = (t + dt.timedelta(minutes=1)).replace(second=0)
                continue
            if t.second not in self.seconds:
                t = t + dt.timedelta(seconds=1)
                continue
            return t
        raise ScheduleError(f"schedule {self.expression!r} never fires")


@dataclass(frozen=True)
class IntervalSchedule:
    expression: str
    interval: dt.timedelta

    def next_after(self, after: dt.datetime) -> dt.datetime:
        return after + self.interval


Schedule = CronSchedule | IntervalSchedule


def parse_schedule(expression: str) -> Schedule:
    text = expression.strip()
    span = _TIMESPAN.match(text)
    if span:
        days, hours, minutes, seconds, fraction = span.groups()
        interval = dt.timedelta(
            days=int(days or 0),
            hours=int(hours),
            minutes=int(minutes),
            seconds=int(seconds or 0),
            microseconds=int((fraction or "0").ljust(7, "0")) // 10,
        )
        if interval <= dt.timedelta(0):
            raise ScheduleError(f"TimeSpan schedule {expression!r} must be positive")
        return IntervalSchedule(expression, interval)
    parts = text.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    if len(parts) != 6:
        raise ScheduleError(f"{expression!r}: an NCRONTAB expression has 6 fields (sec min hour day month day-of-week)")
    fields = [
        _parse_field(p, name, low, high, names) for p, (name, low, high, names) in zip(parts, _FIELDS, strict=False)
    ]
    return CronSchedule(text, *fields)
