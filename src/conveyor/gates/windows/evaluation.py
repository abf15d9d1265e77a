"""Evaluation: whether a window is open at an instant, which rule decided, and the next instant that changes.

The search for the next open or close tests the verdict only where it can change (a rule's boundary on the
wall clock, midnight, a clock change, a cron firing's start or end), a few instants a day.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.config.windows.model import Window, open_at
from conveyor.config.windows.wallclock import instants, require_aware

HORIZON = timedelta(days=400)
"""How far ahead `evaluate` looks for the next open or close; beyond it the answer is None."""

_ONE_DAY = timedelta(days=1)


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
    local = require_aware(at).astimezone(zone)
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
            for instant in instants(datetime.combine(day, time(minute // 60, minute % 60)), zone):
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
            if open_at(deny, allow, instant.astimezone(zone)) != state:
                return instant
        day += timedelta(days=1)
    return None
