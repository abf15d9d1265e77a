"""Cron rules: `{cron: "0 18 * * 5", duration: 63h}` matches from each time the cron fires for that long.

The expression is checked item by item here (for messages that name the item), then read by cronsim on
the window's naive wall clock; `CronSpec` turns those wall-clock firings into real instants by the
window's own rule when the clocks change, and the duration is measured in real time.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from conveyor.config.windows.rules import DAY_NAMES, MINUTES_PER_DAY
from conveyor.config.windows.wallclock import latest_wall, to_instant
from conveyor.values import parse_duration

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
    5: ({name: (i + 1) % 7 for i, name in enumerate(DAY_NAMES)}, "a day name (sun..sat)"),
}
_CRON_ITEM_RE = re.compile(r"(?:(\*)|([a-z0-9]+)(?:-([a-z0-9]+))?)(?:/([0-9]+))?", re.IGNORECASE)
_LONGEST_CRON_DURATION = timedelta(days=366)
_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)
_A_DAY = datetime(2000, 1, 3)  # any day serves where every day fires
_REMEMBERED_DAYS = 4096  # days a cron remembers whether it fires on: ten years of searching ahead


def parse_cron(text: str) -> _Cron:
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


def parse_cron_duration(text: str) -> timedelta:
    """How long a cron rule matches after each firing: more than nothing, and at most a year."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"duration must be more than zero, got {text!r}")
    duration = timedelta(seconds=seconds)
    if duration > _LONGEST_CRON_DURATION:
        raise ValueError(f"duration must be at most 366d (a year), got {text!r}")
    return duration


@dataclass(frozen=True, slots=True)
class _Cron:
    """A cron expression on a naive wall clock: the days it fires on, and the minutes of those days.

    cronsim decides both. It is given naive times, so none of its own DST rules apply (Debian cron's, which
    fire an every-minute job in both passes of a repeated hour); `CronSpec` turns wall-clock firings into
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
            limit = MINUTES_PER_DAY - 1
        return None


@dataclass(frozen=True, slots=True)
class CronSpec:
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
    def parse(cls, cron: str, duration: str) -> CronSpec:
        """From the (already validated) `cron` and `duration` fields."""
        parsed, length = parse_cron(cron), parse_cron_duration(duration)
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
        wall = self.cron.last_firing(latest_wall(local), (instant - self.duration).astimezone(zone).date())
        if wall is None:
            return False
        fired = to_instant(wall, zone).astimezone(UTC)
        return fired <= instant < fired + self.duration

    def spans(self, day: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
        """UTC (start, end) of the stretches in which firings on local `day` match; their ends are the
        only instants at which this rule can start or stop matching."""
        if not self.cron.fires_on(day):
            return []

        def fired(minute: int) -> datetime:
            return to_instant(datetime.combine(day, time(minute // 60, minute % 60)), zone).astimezone(UTC)

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
