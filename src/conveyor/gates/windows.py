"""Deploy windows: when an environment may be deployed to, in a named time zone's wall-clock time.

A window has `allow` and `deny` rules. Every field a rule gives (days, hours, month_days, dates) must
match for the rule to match; a matching deny rule closes the window whatever the allow rules say, and a
window without allow rules is open unless a deny rule matches. Rules read the local wall clock, so
"09:00-16:00" means nine to four in the window's zone on every day, summer time or not.

A rule may instead be a cron expression and a duration, the way GitLab deploy freezes and Argo CD sync
windows are written: `{cron: "0 18 * * 5", duration: 63h}` matches from each time the cron fires (on the
window's wall clock) for that long (in real time). cronsim reads the expression on the wall clock; when
the clocks change, the window's own rule applies (see `_CronSpec`), not Debian cron's.

Evaluation is pure: the clock is an argument, and `now()` is where the real (or injected) time comes from.
"""

from __future__ import annotations

import bisect
import calendar
import heapq
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from conveyor.config.values import format_duration, parse_duration

__all__ = [
    "HORIZON",
    "Window",
    "WindowRule",
    "WindowVerdict",
    "evaluate",
    "now",
    "parse_at",
]

HORIZON = timedelta(days=400)
"""How far ahead `evaluate` looks for the next open or close; beyond it the answer is None."""

_MINUTES_PER_DAY = 24 * 60

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NUMBERS = {name: i for i, name in enumerate(_DAY_NAMES)} | {
    name.lower(): i for i, name in enumerate(calendar.day_name)
}

_HOURS_RE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH_DAY_RE = re.compile(r"(\d+|last)(?:-(\d+|last))?")

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_CRON_FIELDS = (  # name, lowest, highest
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),  # 0 and 7 are both Sunday
)
_CRON_NAMES: dict[int, tuple[dict[str, int], str]] = {  # field number -> names, and how to say what they are
    4: ({name: i for i, name in enumerate(_MONTH_NAMES, start=1)}, "a month name (jan..dec)"),
    5: ({name: (i + 1) % 7 for i, name in enumerate(_DAY_NAMES)}, "a day name (sun..sat)"),
}
_CRON_ITEM_RE = re.compile(r"(?:(\*)|([a-z0-9]+)(?:-([a-z0-9]+))?)(?:/([0-9]+))?", re.IGNORECASE)
_LONGEST_CRON_DURATION = timedelta(days=366)
_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)
_A_DAY = datetime(2000, 1, 3)  # any day serves where every day fires
_REMEMBERED_DAYS = 4096  # days a cron remembers whether it fires on: ten years of searching ahead


# --- parsing ---------------------------------------------------------------------------------------------


def _parse_days(value: str | list[str]) -> frozenset[int]:
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


def _parse_hours(value: str) -> tuple[int, int]:
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
    if start >= _MINUTES_PER_DAY:
        raise ValueError("24:00 can only end a range")
    if end > _MINUTES_PER_DAY:
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


def _parse_month_days(value: str | list[str]) -> _MonthDays:
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


def _parse_dates(value: str | list[str]) -> tuple[tuple[date, date], ...]:
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


def _as_text(value: Any) -> Any:
    """YAML hands us ints for `month_days: 15` and dates for `dates: 2026-12-25`; the models keep text."""
    if isinstance(value, list):
        return [_as_text(item) for item in value]
    if isinstance(value, bool | datetime):
        return value  # not something we read as text: let the type check reject it
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    return value


def _parse_cron(text: str) -> _Cron:
    """A standard 5-field cron expression: minute hour day-of-month month day-of-week.

    cronsim reads it (values, ranges, steps, names, Sunday as 0 or 7, and Vixie cron's rule for the two
    day fields); each item is checked here first because cronsim names only the field ("Bad hour"), and
    because it also reads extensions (L, W, #, a seconds field) that GitLab's and Argo CD's crons do not.
    """
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron needs 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}: {text!r}"
        )
    expression = " ".join(_check_cron_field(part, number) for number, part in enumerate(fields, start=1))
    try:
        return _Cron.parse(expression)
    except CronSimError:
        # Every item has passed the check: what cronsim still refuses is the combination, a day of the
        # month that none of the months has (when the day-of-week field does not add days of its own).
        raise ValueError(f"cron {text!r} never fires: those months have no such days") from None


def _check_cron_field(text: str, number: int) -> str:
    """Check each item of one field (`*`, `5`, `1,15`, `1-5`, `*/15`, `1-30/2`, `5/15`, `mon-fri`) and return
    the field as cronsim should read it."""
    name, _, _ = _CRON_FIELDS[number - 1]
    where = f"cron field {number} ({name})"
    read: list[str] = []
    for item in text.split(","):
        if not item:
            raise ValueError(f"{where} {text!r} has an empty list item")
        match = _CRON_ITEM_RE.fullmatch(item)
        if match is None:
            raise ValueError(f"{where} {item!r} is not a value, a range or a step (like 5, 1-5, */15 or 1-30/2)")
        star, first_text, last_text, step_text = match.groups()
        to_sunday = False
        if not star:
            first = _cron_value(first_text, number)
            if last_text is not None:
                last = _cron_value(last_text, number)
                # "fri-sun" runs to the Sunday at the end of the week, which cronsim reads only as 7.
                to_sunday = number == 5 and last == 0 < first
                if not to_sunday and last < first:
                    raise ValueError(f"{where} {item!r} ends before it starts")
        if step_text is not None and int(step_text) < 1:
            raise ValueError(f"{where} {item!r} has a step of 0 (steps are 1 or more)")
        read.append(item.replace(f"-{last_text}", "-7") if to_sunday else item)
    return ",".join(read)


def _cron_value(text: str, number: int) -> int:
    """One number, or a month or day name, checked against the field's range."""
    name, lowest, highest = _CRON_FIELDS[number - 1]
    where = f"cron field {number} ({name})"
    if text.isascii() and text.isdigit():
        value = int(text)
        if not lowest <= value <= highest:
            raise ValueError(f"{where} {text!r} is out of range {lowest}-{highest}")
        return value
    if number in _CRON_NAMES:
        names, what = _CRON_NAMES[number]
        if text.lower() in names:
            return names[text.lower()]
        raise ValueError(f"{where} {text!r} is not a number or {what}")
    raise ValueError(f"{where} {text!r} is not a number")


def _parse_cron_duration(text: str) -> timedelta:
    """How long a cron rule matches after each firing: more than nothing, and at most a year."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"duration must be more than zero, got {text!r}")
    duration = timedelta(seconds=seconds)
    if duration > _LONGEST_CRON_DURATION:
        raise ValueError(f"duration must be at most 366d (a year), got {text!r}")
    return duration


# --- models ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RuleSpec:
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


@dataclass(frozen=True, slots=True)
class _Cron:
    """A cron expression on a naive wall clock: the days it fires on, and the minutes of those days.

    cronsim decides both. It is given naive times, so none of its own DST rules apply (Debian cron's, which
    fire an every-minute job in both passes of a repeated hour); `_CronSpec` turns wall-clock firings into
    instants by the window's rule instead.
    """

    expression: str  # as cronsim reads it
    minutes_of_day: tuple[int, ...]  # sorted; the same on every day it fires
    _fires: dict[date, bool] = field(default_factory=dict, compare=False, repr=False)  # fires_on, remembered

    @classmethod
    def parse(cls, expression: str) -> _Cron:
        """From a checked expression; raises CronSimError for one that can never fire."""
        CronSim(expression, _A_DAY)
        # The same minutes fire on every day that fires: read them off a day on which every day does.
        minute, hour, *_ = expression.split()
        minutes: list[int] = []
        for firing in CronSim(f"{minute} {hour} * * *", _A_DAY - _ONE_SECOND):
            if firing.date() != _A_DAY.date():
                break
            minutes.append(firing.hour * 60 + firing.minute)
        return cls(expression, tuple(minutes))

    def fires_on(self, day: date) -> bool:
        """Whether the cron fires at all on `day`: its first firing from that midnight on is that day."""
        fires = self._fires.get(day)
        if fires is None:
            midnight = datetime.combine(day, time())
            first = next(CronSim(self.expression, midnight - _ONE_SECOND), None)
            fires = first is not None and first.date() == day
            if len(self._fires) >= _REMEMBERED_DAYS:
                self._fires.clear()
            self._fires[day] = fires
        return fires

    def last_firing(self, wall: datetime, first_day: date) -> datetime | None:
        """The latest naive wall-clock firing at or before `wall`, looking no further back than first_day."""
        day = wall.date()
        limit = wall.hour * 60 + wall.minute
        while day >= first_day:
            if self.fires_on(day):
                index = bisect.bisect_right(self.minutes_of_day, limit)
                if index:
                    minute = self.minutes_of_day[index - 1]
                    return datetime.combine(day, time(minute // 60, minute % 60))
            day -= _ONE_DAY
            limit = _MINUTES_PER_DAY - 1
        return None


@dataclass(frozen=True, slots=True)
class _CronSpec:
    """A cron rule, parsed: it matches from each firing time f while f <= t < f + duration.

    The cron reads the window's wall clock and the duration is real elapsed time, so a 58h freeze lasts
    58 hours even when the clocks change inside it (and then ends an hour earlier or later on the wall
    clock). A firing time the clocks skip (spring forward) fires at the instant the gap ends; one they
    show twice (fall back) fires once, at its first occurrence, so nothing fires in the second pass of a
    repeated hour. Both are one rule: a time fires at the first instant the wall clock reads it or later.
    """

    cron: _Cron
    duration: timedelta
    # The firing minutes of one day grouped into runs in which each firing starts before (or as) the
    # one before it ends, as (first, last): on a day without a clock change one run is one stretch of
    # matching, so the search needs only its two ends.
    runs: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, cron: str, duration: str) -> _CronSpec:
        """From the (already validated) `cron` and `duration` fields."""
        parsed, length = _parse_cron(cron), _parse_cron_duration(duration)
        runs: list[tuple[int, int]] = []
        for minute in parsed.minutes_of_day:
            if runs and timedelta(minutes=minute - runs[-1][1]) <= length:
                runs[-1] = (runs[-1][0], minute)
            else:
                runs.append((minute, minute))
        return cls(parsed, length, tuple(runs))

    def matches(self, local: datetime) -> bool:
        """Whether a firing covers `local`: an aware time in the window's zone, or a naive wall-clock time
        (read as a clock that never changes)."""
        zone = local.tzinfo
        if zone is None:
            wall = self.cron.last_firing(local, (local - self.duration).date())
            return wall is not None and wall <= local < wall + self.duration
        instant = local.astimezone(UTC)
        # Through UTC and back: a time the clocks skipped, given as it is, becomes the time it stands for.
        local = instant.astimezone(zone)
        # The newest firing that has happened ends last (durations are equal), so it alone decides.
        wall = self.cron.last_firing(_latest_wall(local), (instant - self.duration).astimezone(zone).date())
        if wall is None:
            return False
        fired = _to_instant(wall, zone).astimezone(UTC)
        return fired <= instant < fired + self.duration

    def spans(self, day: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
        """UTC (start, end) of the stretches in which firings on local `day` match; their ends are the
        only instants at which this rule can start or stop matching."""
        if not self.cron.fires_on(day):
            return []

        def fired(minute: int) -> datetime:
            return _to_instant(datetime.combine(day, time(minute // 60, minute % 60)), zone).astimezone(UTC)

        midnight, next_midnight = datetime.combine(day, time(), zone), datetime.combine(day + _ONE_DAY, time(), zone)
        if midnight.utcoffset() == next_midnight.utcoffset():
            return [(fired(first), fired(last) + self.duration) for first, last in self.runs]
        # The clocks change today, so wall-clock gaps between firings are not real ones: group the
        # firings by their real instants instead (in order, as the wall clock's are).
        spans: list[tuple[datetime, datetime]] = []
        for minute in self.cron.minutes_of_day:
            start = fired(minute)
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], start + self.duration)
            else:
                spans.append((start, start + self.duration))
        return spans


_Spec = _RuleSpec | _CronSpec


class WindowRule(BaseModel):
    """One allow or deny rule: every field given must match the local wall clock, or a cron and a duration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: str | list[str] | None = Field(
        default=None, description='Weekdays: "mon-thu", "fri", "fri-mon", "mon-fri,sun" or [mon, wed].'
    )
    hours: str | None = Field(
        default=None,
        description='"HH:MM-HH:MM", start inclusive, end exclusive; may cross midnight; "00:00-24:00".',
    )
    month_days: str | list[str] | None = Field(
        default=None, description='Days of the month: "28-31,1-2", "last", "last-2" (the last three days).'
    )
    dates: str | list[str] | None = Field(
        default=None, description='"2026-12-24..2027-01-01" (inclusive), "2026-12-25", or a list of those.'
    )
    cron: str | None = Field(
        default=None,
        description='A 5-field cron expression on the window\'s wall clock, e.g. "0 18 * * 5"; needs a duration '
        "and no days, hours, month_days or dates.",
    )
    duration: str | None = Field(
        default=None,
        description='How long a cron rule matches after each firing, in real time: "63h", "1h30m", "2d".',
    )
    reason: str | None = Field(default=None, description="Shown when this rule decides.")

    _spec: _Spec = PrivateAttr()

    @field_validator("days", "month_days", "dates", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _as_text(value)

    @field_validator("days")
    @classmethod
    def _check_days(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None:
            _parse_days(value)
        return value

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_hours(value)
        return value

    @field_validator("month_days")
    @classmethod
    def _check_month_days(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None:
            _parse_month_days(value)
        return value

    @field_validator("dates")
    @classmethod
    def _check_dates(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None:
            _parse_dates(value)
        return value

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_cron(value)
        return value

    @field_validator("duration", mode="before")
    @classmethod
    def _duration_text(cls, value: Any) -> Any:
        # YAML hands us numbers for `duration: 3600` (seconds, as everywhere else in the config).
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("duration")
    @classmethod
    def _check_duration(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_cron_duration(value)
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> WindowRule:
        if self.cron is not None:
            others = [name for name in ("days", "hours", "month_days", "dates") if getattr(self, name) is not None]
            if others:
                listed = ", ".join(others[:-1]) + " or " + others[-1] if len(others) > 1 else others[0]
                raise ValueError(f"a cron rule cannot also have {listed} (say when it fires in the cron)")
            if self.duration is None:
                raise ValueError("cron needs a duration")
            return self
        if self.duration is not None:
            raise ValueError("duration needs a cron")
        # A rule with no fields would match every instant: an allow rule would open the window for
        # good, a deny rule close it for good. Nobody means that by an empty rule.
        if self.days is None and self.hours is None and self.month_days is None and self.dates is None:
            raise ValueError("a rule needs at least one of days, hours, month_days, dates")
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Parse the (already validated) fields once, for evaluation."""
        if self.cron is not None and self.duration is not None:
            self._spec = _CronSpec.parse(self.cron, self.duration)
            return
        self._spec = _RuleSpec(
            days=None if self.days is None else _parse_days(self.days),
            hours=None if self.hours is None else _parse_hours(self.hours),
            month_days=None if self.month_days is None else _parse_month_days(self.month_days),
            dates=None if self.dates is None else _parse_dates(self.dates),
        )

    def matches(self, local: datetime) -> bool:
        """Whether this rule covers the time `local`, an aware time in the window's zone.

        The day and time rules read its wall clock (date and time; the zone is ignored). A cron rule needs
        the zone to measure its duration in real time; given a naive time it reads it as a clock that
        never changes.
        """
        return self._spec.matches(local)

    def _boundary_minutes(self) -> frozenset[int]:
        """Minutes after midnight at which this rule can start or stop matching (besides midnight)."""
        spec = self._spec
        if isinstance(spec, _CronSpec) or spec.hours is None:
            return frozenset()  # a cron rule's boundaries are instants: see _CronSpec.spans
        return frozenset(minute % _MINUTES_PER_DAY for minute in spec.hours)

    def _can_match_between(self, first: date, last: date) -> bool:
        """Whether this rule's dates leave it any chance to match on a day in first..last."""
        spec = self._spec
        if isinstance(spec, _CronSpec) or spec.dates is None:
            return True
        return any(start <= last and first <= end for start, end in spec.dates)

    def describe(self, kind: str) -> str:
        """A one-line description, e.g. `deny month_days 28-31,1-2 (month-end payment runs)`."""
        words = [kind]
        if self.cron is not None and self.duration is not None:
            words.append(f'cron "{" ".join(self.cron.split())}" for {_duration_text(self.duration)}')
        if self.days is not None:
            words.append(_joined(self.days))
        if self.hours is not None:
            words.append(self.hours)
        if self.month_days is not None:
            words.append(f"month_days {_joined(self.month_days)}")
        if self.dates is not None:
            words.append(f"dates {_joined(self.dates)}")
        if self.reason:
            words.append(f"({self.reason})")
        return " ".join(words)


def _joined(value: str | list[str]) -> str:
    return ",".join(value) if isinstance(value, list) else value


def _duration_text(value: str) -> str:
    """A duration as written ("63h", "2d"), or as a short form when it was a plain number of seconds."""
    text = value.strip()
    try:
        return format_duration(float(text))
    except ValueError:
        return text


class Window(BaseModel):
    """A named deploy window: a time zone, allow rules and deny rules (deny wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = Field(description='An IANA time zone, e.g. "Europe/London"; rules read its wall clock.')
    allow: list[WindowRule] = Field(
        default_factory=list, description="Open when one matches; none at all means always open."
    )
    deny: list[WindowRule] = Field(
        default_factory=list, description="Closed when one matches; wins over allow."
    )

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        _zone(value)
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The time zone the rules are read in."""
        return _zone(self.timezone)

    def is_open(self, at: datetime) -> bool:
        """Whether deployments may start at the instant `at` (timezone-aware)."""
        local = _require_aware(at).astimezone(self.zone)
        return _open_at(self._specs(self.deny), self._specs(self.allow), local)

    def _decide(self, local: datetime) -> tuple[bool, str, WindowRule | None]:
        """Open or closed at a local time, the deciding rule's description, and that rule if any."""
        for rule in self.deny:
            if rule.matches(local):
                return False, rule.describe("deny"), rule
        for rule in self.allow:
            if rule.matches(local):
                return True, rule.describe("allow"), rule
        if self.allow:
            return False, "no allow rule matches", None
        return True, "no deny rule matches" if self.deny else "no rules", None

    @staticmethod
    def _specs(rules: list[WindowRule]) -> list[_Spec]:
        return [rule._spec for rule in rules]

    def _cron_specs(self) -> list[_CronSpec]:
        return [rule._spec for rule in (*self.allow, *self.deny) if isinstance(rule._spec, _CronSpec)]

    def _boundaries(self, first: date, last: date) -> list[int]:
        """Local minutes of the day at which the verdict can change on days first..last; midnight can."""
        minutes = {0}
        for rule in (*self.allow, *self.deny):
            # Last year's holiday rules would otherwise add candidates to every day we search.
            if rule._can_match_between(first, last):
                minutes |= rule._boundary_minutes()
        return sorted(minutes)


def _open_at(deny: list[_Spec], allow: list[_Spec], local: datetime) -> bool:
    """The verdict alone, without naming the rule: what the search asks at every candidate instant."""
    if any(spec.matches(local) for spec in deny):
        return False
    return not allow or any(spec.matches(local) for spec in allow)


def _zone(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {key!r}") from None


# --- evaluation ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowVerdict:
    """Whether a window is open at an instant, which rule decided, and when that next changes."""

    window: str
    open: bool
    rule: str
    reason: str | None
    at: datetime
    next_open: datetime | None  # None when open now, or when it stays closed past the horizon
    next_close: datetime | None  # None when closed now, or when it stays open past the horizon
    timezone: str

    def to_json(self) -> dict[str, Any]:
        """The `conveyor windows --json` fields; times are ISO 8601 with the window zone's offset."""
        return {
            "window": self.window,
            "open": self.open,
            "rule": self.rule,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "next_open": None if self.next_open is None else self.next_open.isoformat(),
            "next_close": None if self.next_close is None else self.next_close.isoformat(),
            "timezone": self.timezone,
        }


def evaluate(name: str, window: Window, at: datetime) -> WindowVerdict:
    """Decide whether window `name` is open at `at`, and find the next instant that changes."""
    zone = window.zone
    local = _require_aware(at).astimezone(zone)
    is_open, rule_text, rule = window._decide(local)
    change = None if not window.allow and not window.deny else _next_change(window, zone, local, is_open)
    change_local = None if change is None else change.astimezone(zone)
    return WindowVerdict(
        window=name,
        open=is_open,
        rule=rule_text,
        reason=None if rule is None else rule.reason,
        at=local,
        next_open=None if is_open else change_local,
        next_close=change_local if is_open else None,
        timezone=window.timezone,
    )


def _next_change(window: Window, zone: ZoneInfo, start: datetime, state: bool) -> datetime | None:
    """The first instant after `start` (within the horizon) at which the window is not `state`.

    The verdict only changes where the local wall clock reaches a rule boundary or midnight, or where
    the clocks jump (a DST change) across one, or where a cron rule's firing starts or ends. So we list
    those instants day by day, in order, and test the verdict only there: a few per day instead of one
    per minute.
    """
    start_utc = start.astimezone(UTC)
    horizon = start_utc + HORIZON
    pending: list[datetime] = []
    day = start.date() - timedelta(days=1)
    last_day = horizon.astimezone(zone).date() + timedelta(days=1)
    # A range crossing midnight reads the day before, hence the extra day at the start.
    boundaries = window._boundaries(day - timedelta(days=1), last_day)
    deny, allow = window._specs(window.deny), window._specs(window.allow)
    crons = window._cron_specs()
    for cron in crons:
        # Firings before the first day searched can still be matching at the start, and end after it.
        earlier = (start_utc - cron.duration).astimezone(zone).date()
        while earlier < day:
            for _, end in cron.spans(earlier, zone):
                if end > start_utc:
                    heapq.heappush(pending, end)
            earlier += _ONE_DAY
    while day <= last_day:
        for minute in boundaries:
            for instant in _instants(datetime.combine(day, time(minute // 60, minute % 60)), zone):
                if instant > start_utc:
                    heapq.heappush(pending, instant)
        for cron in crons:
            for span in cron.spans(day, zone):
                for instant in span:
                    if instant > start_utc:
                        heapq.heappush(pending, instant)
        # Offsets are within a day of UTC, so every boundary on a later local day is at or after
        # this day's midnight read as UTC: everything earlier than that is complete and in order.
        settled = datetime.combine(day, time(), tzinfo=UTC)
        while pending and (pending[0] < settled or day == last_day):
            instant = heapq.heappop(pending)
            if instant > horizon:
                return None
            if _open_at(deny, allow, instant.astimezone(zone)) != state:
                return instant
        day += timedelta(days=1)
    return None


def _instants(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which the zone's clock shows the naive time `wall`, plus any clock jump there.

    Usually one instant. During a fall-back hour the clock shows it twice, and the jump back between
    the two matters too; a time skipped by a spring-forward maps to the jump itself, the first instant
    after the gap.
    """
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    early, late = sorted((first.astimezone(UTC), second.astimezone(UTC)))
    jump = _offset_change(zone, early, late)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return [early, jump, late]  # an ambiguous time: both exist
    return [jump]  # a skipped time


def _offset_change(zone: tzinfo, before: datetime, after: datetime) -> datetime:
    """The first instant in (before, after] whose UTC offset differs from `before`'s, to the second."""
    offset = before.astimezone(zone).utcoffset()
    second = timedelta(seconds=1)
    while after - before > second:
        middle = before + (after - before) // 2
        middle -= timedelta(microseconds=middle.microsecond)
        if middle <= before:
            middle = before + second
        if middle.astimezone(zone).utcoffset() == offset:
            before = middle
        else:
            after = middle
    return after


def _latest_wall(local: datetime) -> datetime:
    """The latest naive wall-clock time the zone's clock has shown by the aware time `local`.

    That is `local`'s own wall time, except in the second pass of a repeated (fall-back) hour: then the
    clock read later than now before it went back, and every time up to that is already past.
    """
    zone = local.tzinfo
    wall = local.replace(tzinfo=None)
    first = wall.replace(tzinfo=zone, fold=0)
    if zone is None or first.utcoffset() == local.utcoffset():
        return wall
    jump = _offset_change(zone, first.astimezone(UTC), local.astimezone(UTC))
    return (jump - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None)


def _to_instant(wall: datetime, zone: tzinfo) -> datetime:
    """A naive local time as an aware one: the first of two, and the end of the gap for a skipped one."""
    aware = wall.replace(tzinfo=zone, fold=0)
    if isinstance(zone, ZoneInfo) and aware.utcoffset() != wall.replace(tzinfo=zone, fold=1).utcoffset():
        return _instants(wall, zone)[0].astimezone(zone)
    return aware


def _require_aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware time, got {at.isoformat()}")
    return at


# --- the clock -------------------------------------------------------------------------------------------


def parse_at(text: str, default_tz: tzinfo) -> datetime:
    """An aware time from ISO 8601 ("2026-03-29T01:30:00Z", "...+01:00", or naive in `default_tz`)."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a time like 2026-03-29T09:30 or 2026-03-29T09:30:00+01:00, got {text!r}"
        ) from None
    if parsed.tzinfo is not None:
        return parsed
    return _to_instant(parsed, default_tz)


_AT: ContextVar[datetime | None] = ContextVar("conveyor_windows_at", default=None)


@contextmanager
def evaluated_at(moment: datetime) -> Iterator[None]:
    """Judge windows at `moment` instead of now, inside this block: for the read-only commands that ask
    "what if" (`plan --at`, `windows --at`). Nothing that changes a host runs under it."""
    token = _AT.set(moment)
    try:
        yield
    finally:
        _AT.reset(token)


def now() -> datetime:
    """The current time. No environment variable moves it: a deploy judges its windows by the real clock
    (a clock set from outside would open a closed window with no audit)."""
    return _AT.get() or datetime.now(UTC)
