"""A time zone's wall clock against real time: which instants a wall-clock time stands for when the clocks
change (one, two in a repeated hour, or the end of the gap for a skipped one), and where they change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo


def instants(wall: datetime, zone: ZoneInfo) -> list[datetime]:
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


def latest_wall(local: datetime) -> datetime:
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


def to_instant(wall: datetime, zone: tzinfo) -> datetime:
    """A naive local time as an aware one: the first of two, and the end of the gap for a skipped one."""
    aware = wall.replace(tzinfo=zone, fold=0)
    if isinstance(zone, ZoneInfo) and aware.utcoffset() != wall.replace(tzinfo=zone, fold=1).utcoffset():
        return instants(wall, zone)[0].astimezone(zone)
    return aware


def require_aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware time, got {at.isoformat()}")
    return at
