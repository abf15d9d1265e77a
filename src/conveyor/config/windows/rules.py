"""Day, hour, month-day and date rules: reading each field, and whether a wall-clock time matches them all.

A field is checked when the config is loaded (`WindowRule`'s validators call the `parse_*` functions) and
parsed once more into a `RuleSpec`, the form the search reads thousands of times.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

MINUTES_PER_DAY = 24 * 60

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NUMBERS = {name: i for i, name in enumerate(DAY_NAMES)} | {
    name.lower(): i for i, name in enumerate(calendar.day_name)
}

_HOURS_RE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH_DAY_RE = re.compile(r"(\d+|last)(?:-(\d+|last))?")


def parse_days(value: str | list[str]) -> frozenset[int]:
    """Weekday numbers (Monday is 0) named by "mon-thu", "fri-mon", "mon-fri,sun" or a list of those."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("expected at least one day")
    days: set[int] = set()
    for item in items:
        for part in item.split(","):
            days |= _parse_day_range(part.strip().lower(), item)
    return frozenset(days)


def _parse_day_range(part: str, item: str) -> set[int]:
    """One "mon" or "fri-mon" (a range may wrap past Sunday)."""
    if not part:
        raise ValueError(f"expected days like mon-fri or [mon, wed], got {item!r}")
    first_name, dash, last_name = part.partition("-")
    first = _day_number(first_name)
    last = _day_number(last_name) if dash else first
    return {(first + i) % 7 for i in range((last - first) % 7 + 1)}


def _day_number(name: str) -> int:
    """Monday is 0; accepts "mon" and "monday"."""
    number = _DAY_NUMBERS.get(name.strip())
    if number is None:
        raise ValueError(f"unknown day {name.strip()!r} (expected mon..sun)")
    return number


def parse_hours(value: str) -> tuple[int, int]:
    """Start and end as minutes after midnight; the end is exclusive and may be 1440 (24:00)."""
    match = _HOURS_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f'expected "HH:MM-HH:MM", got {value!r}')
    start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
    for hour in (start_h, end_h):
        if hour > 24:
            raise ValueError(f"hour {hour} is out of range")
    for minute in (start_m, end_m):
        if minute > 59:
            raise ValueError(f"minute {minute} is out of range")
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start >= MINUTES_PER_DAY:
        raise ValueError("24:00 can only end a range")
    if end > MINUTES_PER_DAY:
        raise ValueError(f"{end_h}:{end_m:02d} is out of range (24:00 is the latest end)")
    if start == end:
        raise ValueError("start and end are the same; write 00:00-24:00 for the whole day")
    return start, end


@dataclass(frozen=True)
class _MonthDays:
    """Days of the month: fixed numbers, and days counted back from the month's last day."""

    fixed: frozenset[int]
    from_end: frozenset[int]  # 0 is the last day, 1 the one before it, ...

    def matches(self, day: date) -> bool:
        """Whether `day` is one of these days of its month."""
        if day.day in self.fixed:
            return True
        return (calendar.monthrange(day.year, day.month)[1] - day.day) in self.from_end


def parse_month_days(value: str | list[str]) -> _MonthDays:
    """Month days from "28-31,1-2", "last", "last-2" (the last three days), "25-last", or a list."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("expected at least one month day")
    fixed: set[int] = set()
    from_end: set[int] = set()
    for item in items:
        for raw in item.split(","):
            part = raw.strip().lower()
            match = _MONTH_DAY_RE.fullmatch(part)
            if match is None or match.groups() == ("last", "last"):
                raise ValueError(f"expected month days like 28-31,1-2 or last-2, got {item!r}")
            first, last = match.groups()
            if first == "last":
                back = 0 if last is None else int(last)
                if back > 30:
                    raise ValueError(f"{part} is out of range (last-0..last-30)")
                from_end.update(range(back + 1))
            elif last is None:
                fixed.add(_month_day(first))
            else:
                # "25-last" is every day from the 25th on, which is 25..31 in any month.
                low, high = _month_day(first), 31 if last == "last" else _month_day(last)
                if high < low:
                    raise ValueError(
                        f"range ends before it starts: {part} (write 28-31,1-2 to span the month end)"
                    )
                fixed.update(range(low, high + 1))
    return _MonthDays(frozenset(fixed), frozenset(from_end))


def _month_day(text: str) -> int:
    """A day number 1..31."""
    number = int(text)
    if not 1 <= number <= 31:
        raise ValueError(f"month day {number} is out of range (1-31)")
    return number


def parse_dates(value: str | list[str]) -> tuple[tuple[date, date], ...]:
    """Inclusive (first, last) ranges from "2026-12-24..2027-01-01", "2026-12-25" or a list of those."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("expected at least one date")
    ranges: list[tuple[date, date]] = []
    for item in items:
        first_text, dots, last_text = item.strip().partition("..")
        first = _date(first_text.strip(), item)
        last = _date(last_text.strip(), item) if dots else first
        if last < first:
            raise ValueError(f"range ends before it starts: {item.strip()}")
        ranges.append((first, last))
    return tuple(ranges)


def _date(text: str, item: str) -> date:
    """A YYYY-MM-DD date; `item` is the whole entry, for the message."""
    if not _DATE_RE.fullmatch(text):
        raise ValueError(f"expected a date range like 2026-12-24..2027-01-01, got {item!r}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text} is not a valid date") from None


def as_text(value: Any) -> Any:
    """YAML hands us ints for `month_days: 15` and dates for `dates: 2026-12-25`; the models keep text."""
    if isinstance(value, list):
        return [as_text(item) for item in value]
    if isinstance(value, bool | datetime):
        return value  # not something we read as text: let the type check reject it
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    return value


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule's fields, parsed once; plain attributes because the search reads them thousands of times."""

    days: frozenset[int] | None
    hours: tuple[int, int] | None
    month_days: _MonthDays | None
    dates: tuple[tuple[date, date], ...] | None

    def matches(self, local: datetime) -> bool:
        """Whether the rule covers the wall-clock time `local` (its date and time; the zone is ignored)."""
        day = local.date()
        if self.hours is not None:
            minute = local.hour * 60 + local.minute
            start, end = self.hours
            if start < end:
                if not start <= minute < end:
                    return False
            elif minute < end:
                # The part after midnight belongs to the day the range started on.
                day -= timedelta(days=1)
            elif minute < start:
                return False
        if self.days is not None and day.weekday() not in self.days:
            return False
        if self.month_days is not None and not self.month_days.matches(day):
            return False
        return self.dates is None or any(first <= day <= last for first, last in self.dates)
