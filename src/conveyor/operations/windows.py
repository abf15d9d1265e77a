"""`conveyor windows` and the dashboard's windows page: each environment's deploy window now, and its week ahead.

Both ask the deploy gate's own judge (`gates.windows.evaluate`): the week ahead is the chain of its verdicts,
each starting where the one before said the window next changes, so the calendar shows what a deploy would
meet, rule by rule, DST and cron rules included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Any

from conveyor.config.windows import Window
from conveyor.config.windows.wallclock import to_instant
from conveyor.gates.windows import evaluate
from conveyor.operations.workspace import Workspace

CHANGES_LIMIT = 5000  # verdicts one calendar asks for at most (a cron rule firing every minute changes often)


def window_states(ws: Workspace, environments: list[str], moment: datetime) -> list[dict[str, Any]]:
    """Each environment's window at `moment` as `windows --json` gives it (open for an environment without one)."""
    docs = []
    for env in environments:
        name = ws.config.environments[env].window
        if name is None:
            docs.append({"environment": env, "window": None, "open": True, "rule": "no window configured",
                         "reason": None, "at": moment.isoformat(), "next_open": None, "next_close": None,
                         "timezone": None})
            continue
        docs.append({"environment": env, **evaluate(name, ws.config.windows[name], moment).to_json()})
    return docs


@dataclass(frozen=True)
class Span:
    """A stretch of time in which the window stays open or closed, and the rule that said so at its start."""

    start: datetime
    end: datetime
    open: bool
    rule: str
    reason: str | None


@dataclass(frozen=True)
class Stretch:
    """A span's part of one calendar day, as a share of that day (a DST day has 23 or 25 hours)."""

    left: float  # percent of the day before it starts
    width: float  # percent of the day it lasts
    span: Span


@dataclass(frozen=True)
class Day:
    """One local day of the window's calendar."""

    day: date
    stretches: tuple[Stretch, ...]
    now: float | None  # percent of the day at which `now` falls, when it is this day


def spans(name: str, window: Window, start: datetime, end: datetime) -> list[Span]:
    """Open and closed spans of `window` covering [start, end), as the deploy gate judges them."""
    out: list[Span] = []
    at = start
    for _ in range(CHANGES_LIMIT):
        verdict = evaluate(name, window, at)
        change = verdict.next_close if verdict.open else verdict.next_open
        stop = end if change is None or change > end else change
        out.append(Span(at, stop, verdict.open, verdict.rule, verdict.reason))
        if stop >= end:
            break
        at = stop
    return out


def week_ahead(name: str, window: Window, now: datetime, days: int = 7) -> list[Day]:
    """The calendar of `days` local days from today (in the window's time zone), split into open and closed."""
    zone = window.zone
    first = now.astimezone(zone).date()
    midnights = [to_instant(datetime.combine(first + timedelta(days=n), time()), zone) for n in range(days + 1)]
    calendar = []
    for day, (begin, finish) in enumerate(pairwise(midnights)):
        # Day by day: a closed stretch across midnight shows, on each day, the rule that holds it there.
        # In seconds since the epoch: two times in the same zone subtract as wall clocks, blind to DST.
        origin, length = begin.timestamp(), finish.timestamp() - begin.timestamp()
        stretches = [Stretch(round((span.start.timestamp() - origin) / length * 100, 3),
                             round((span.end.timestamp() - span.start.timestamp()) / length * 100, 3), span)
                     for span in spans(name, window, begin, finish)]
        mark = (now.timestamp() - origin) / length * 100 if begin <= now < finish else None
        calendar.append(Day(first + timedelta(days=day), tuple(stretches), None if mark is None else round(mark, 3)))
    return calendar
