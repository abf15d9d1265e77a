"""Deploy windows: cron rules with a duration (GitLab freezes, Argo CD sync windows).

The (window, instant) -> verdict tables for cron windows are in fixtures/windows/*-cron*.json, read by
test_windows.py with the others; this file has the rule-level tables, the brute-force checks and the errors.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from conveyor.config.loader import parse_config
from conveyor.errors import ConfigError
from conveyor.gates.windows import Window, WindowRule, evaluate

LONDON = ZoneInfo("Europe/London")
TORONTO = ZoneInfo("America/Toronto")
JOHANNESBURG = ZoneInfo("Africa/Johannesburg")


def _cron(cron: str, duration: str | int = "1h", **more: Any) -> dict[str, Any]:
    return {"cron": cron, "duration": duration, **more}


# --- matching -------------------------------------------------------------------------------------------

# (rule, zone, wall-clock time in that zone, matches). 2026-06-01 is a Monday.
MATCHES = [
    # A weekend freeze: Friday 18:00 for 63h, to Monday 09:00.
    (_cron("0 18 * * 5", "63h"), LONDON, datetime(2026, 6, 5, 17, 59, 59), False),
    (_cron("0 18 * * 5", "63h"), LONDON, datetime(2026, 6, 5, 18, 0), True),
    (_cron("0 18 * * 5", "63h"), LONDON, datetime(2026, 6, 7, 12, 0), True),
    (_cron("0 18 * * 5", "63h"), LONDON, datetime(2026, 6, 8, 8, 59, 59), True),
    (_cron("0 18 * * 5", "63h"), LONDON, datetime(2026, 6, 8, 9, 0), False),
    (_cron("0 18 * * 5", "63h"), LONDON, datetime(2026, 6, 4, 12, 0), False),
    # Lists, ranges and steps.
    (_cron("*/15 9-17 * * mon-fri", "5m"), LONDON, datetime(2026, 6, 3, 9, 4), True),
    (_cron("*/15 9-17 * * mon-fri", "5m"), LONDON, datetime(2026, 6, 3, 9, 5), False),
    (_cron("*/15 9-17 * * mon-fri", "5m"), LONDON, datetime(2026, 6, 3, 17, 49), True),
    (_cron("*/15 9-17 * * mon-fri", "5m"), LONDON, datetime(2026, 6, 3, 18, 0), False),
    (_cron("*/15 9-17 * * mon-fri", "5m"), LONDON, datetime(2026, 6, 6, 9, 1), False),  # Saturday
    (_cron("0 1-11/2 * * *", "30m"), LONDON, datetime(2026, 6, 3, 3, 10), True),
    (_cron("0 1-11/2 * * *", "30m"), LONDON, datetime(2026, 6, 3, 4, 10), False),
    (_cron("0 1-11/2 * * *", "30m"), LONDON, datetime(2026, 6, 3, 13, 10), False),
    (_cron("5/15 * * * *", "1m"), LONDON, datetime(2026, 6, 3, 12, 20), True),  # 5/15 is 5-59/15
    (_cron("5/15 * * * *", "1m"), LONDON, datetime(2026, 6, 3, 12, 15), False),
    (_cron("0,30 12 1,15 * *", "10m"), LONDON, datetime(2026, 6, 15, 12, 35), True),
    (_cron("0,30 12 1,15 * *", "10m"), LONDON, datetime(2026, 6, 14, 12, 35), False),
    (_cron("0 12 5-5/10 * *", "1h"), LONDON, datetime(2026, 6, 5, 12, 30), True),  # a one-day range, stepped
    (_cron("0 12 5-5/10 * *", "1h"), LONDON, datetime(2026, 6, 15, 12, 30), False),  # is that one day
    # Names, and Sunday as 0, 7 or the end of a range.
    (_cron("0 0 1 jan *", "1d"), LONDON, datetime(2027, 1, 1, 12, 0), True),
    (_cron("0 0 1 jan *", "1d"), LONDON, datetime(2027, 2, 1, 12, 0), False),
    (_cron("0 0 1 JUN-aug *", "1d"), LONDON, datetime(2026, 7, 1, 12, 0), True),
    (_cron("0 0 * * 7", "1d"), LONDON, datetime(2026, 6, 7, 12, 0), True),
    (_cron("0 0 * * 0", "1d"), LONDON, datetime(2026, 6, 7, 12, 0), True),
    (_cron("0 0 * * 0", "1d"), LONDON, datetime(2026, 6, 8, 12, 0), False),
    (_cron("0 0 * * fri-sun", "1d"), LONDON, datetime(2026, 6, 7, 12, 0), True),
    (_cron("0 0 * * fri-sun", "1d"), LONDON, datetime(2026, 6, 8, 12, 0), False),
    (_cron("0 0 * * 5-7", "1d"), LONDON, datetime(2026, 6, 6, 12, 0), True),
    # Both day fields restricted: either one fires (the 1st, and every Monday).
    (_cron("0 0 1 * mon", "1d"), LONDON, datetime(2026, 7, 1, 12, 0), True),  # a Wednesday
    (_cron("0 0 1 * mon", "1d"), LONDON, datetime(2026, 7, 6, 12, 0), True),  # a Monday
    (_cron("0 0 1 * mon", "1d"), LONDON, datetime(2026, 7, 7, 12, 0), False),
    # Only one restricted: that one alone decides ("*/2" counts as unrestricted, as Vixie cron reads it).
    (_cron("0 0 * * mon", "1d"), LONDON, datetime(2026, 7, 1, 12, 0), False),
    (_cron("0 0 */2 * mon", "1d"), LONDON, datetime(2026, 6, 1, 12, 0), True),  # Monday the 1st
    (_cron("0 0 */2 * mon", "1d"), LONDON, datetime(2026, 6, 8, 12, 0), False),  # Monday the 8th
    (_cron("0 0 */2 * mon", "1d"), LONDON, datetime(2026, 6, 3, 12, 0), False),  # Wednesday the 3rd
    # A freeze crossing a month end, and one crossing a year end.
    (_cron("0 20 30 * *", "60h"), JOHANNESBURG, datetime(2026, 5, 3, 7, 59), True),
    (_cron("0 20 30 * *", "60h"), JOHANNESBURG, datetime(2026, 5, 3, 8, 0), False),
    (_cron("0 20 30 * *", "60h"), JOHANNESBURG, datetime(2026, 3, 1, 12, 0), False),  # no 30 February
    (_cron("0 18 24 12 *", "9d"), JOHANNESBURG, datetime(2027, 1, 2, 17, 59), True),
    (_cron("0 18 24 12 *", "9d"), JOHANNESBURG, datetime(2027, 1, 2, 18, 0), False),
    # Every minute of an hour, for a minute each: the whole hour.
    (_cron("* 3 * * *", "1m"), LONDON, datetime(2026, 6, 3, 3, 59, 59), True),
    (_cron("* 3 * * *", "1m"), LONDON, datetime(2026, 6, 3, 4, 0), False),
    # Durations are real time: the freeze from Friday 22:00 GMT (27 March) ends at 09:00 BST, not 08:00.
    (_cron("0 22 * * 5", "58h"), LONDON, datetime(2026, 3, 30, 8, 30), True),
    (_cron("0 22 * * 5", "58h"), LONDON, datetime(2026, 3, 30, 9, 0), False),
    (_cron("0 22 * * 5", "58h"), TORONTO, datetime(2026, 3, 9, 8, 59), True),  # from 22:00 EST
    (_cron("0 22 * * 5", "58h"), TORONTO, datetime(2026, 3, 9, 9, 0), False),
    # ... and from Friday 22:00 EDT (30 October) it ends at 07:00 EST.
    (_cron("0 22 * * 5", "58h"), TORONTO, datetime(2026, 11, 2, 6, 59), True),
    (_cron("0 22 * * 5", "58h"), TORONTO, datetime(2026, 11, 2, 7, 0), False),
    # A skipped time fires where the gap ends: 01:30 on 29 March is 02:00 BST.
    (_cron("30 1 * * *", "45m"), LONDON, datetime(2026, 3, 29, 2, 44), True),
    (_cron("30 1 * * *", "45m"), LONDON, datetime(2026, 3, 29, 2, 45), False),
    (_cron("30 2 * * *", "1h"), TORONTO, datetime(2026, 3, 8, 3, 59), True),
    (_cron("30 2 * * *", "1h"), TORONTO, datetime(2026, 3, 8, 1, 59), False),
]


@pytest.mark.parametrize(("rule", "zone", "wall", "matches"), MATCHES)
def test_a_cron_rule_matches_from_each_firing_for_its_duration(
    rule: dict[str, Any], zone: ZoneInfo, wall: datetime, matches: bool
) -> None:
    local = wall.replace(tzinfo=zone)
    assert WindowRule.model_validate(rule).matches(local) is matches
    # The same instant given in UTC reads the same.
    assert Window.model_validate({"timezone": zone.key, "deny": [rule]}).is_open(local.astimezone(UTC)) is not matches


def test_a_repeated_firing_time_fires_once_at_its_first_occurrence() -> None:
    rule = WindowRule.model_validate(_cron("30 1 * * *", "20m"))
    first_0140 = datetime(2026, 10, 25, 0, 40, tzinfo=UTC).astimezone(LONDON)  # 01:40 BST
    second_0140 = datetime(2026, 10, 25, 1, 40, tzinfo=UTC).astimezone(LONDON)  # 01:40 GMT

    assert (first_0140.replace(tzinfo=None), second_0140.replace(tzinfo=None)) == (
        datetime(2026, 10, 25, 1, 40),
        datetime(2026, 10, 25, 1, 40),
    )
    assert rule.matches(first_0140) is True
    assert rule.matches(second_0140) is False


def test_a_naive_time_is_read_as_a_clock_that_never_changes() -> None:
    rule = WindowRule.model_validate(_cron("0 22 * * 5", "58h"))

    assert rule.matches(datetime(2026, 3, 30, 7, 59)) is True
    assert rule.matches(datetime(2026, 3, 30, 8, 0)) is False  # 58 wall-clock hours, no zone to say otherwise


# --- the semantics, brute force ---------------------------------------------------------------------------


def _oracle(
    zone: ZoneInfo, fires: Callable[[datetime], bool], duration: timedelta, first: datetime, minutes: int
) -> list[bool]:
    """Minute by minute from `first`: is some firing's [instant, instant + duration) covering it?

    Written apart from the module on purpose: a wall-clock minute fires at the first real minute at which
    the zone's clock has read it or later; that one rule covers skipped and repeated times alike.
    """
    minute = timedelta(minutes=1)
    instant = first - duration - timedelta(days=1)
    reached = (instant - minute).astimezone(zone).replace(tzinfo=None)
    covered_until = instant
    states = []
    while instant < first + minutes * minute:
        wall = instant.astimezone(zone).replace(tzinfo=None)
        while reached < wall:
            reached += minute
            if fires(reached):
                covered_until = max(covered_until, instant + duration)
        if instant >= first:
            states.append(instant < covered_until)
        instant += minute
    return states


ORACLE_CASES = [
    pytest.param(
        LONDON, "30 1 * * *", "1h", lambda w: (w.hour, w.minute) == (1, 30), datetime(2026, 3, 27, tzinfo=UTC),
        id="london-0130-spring",
    ),
    pytest.param(
        LONDON, "30 1 * * *", "1h", lambda w: (w.hour, w.minute) == (1, 30), datetime(2026, 10, 23, tzinfo=UTC),
        id="london-0130-autumn",
    ),
    pytest.param(
        LONDON, "*/20 1-2 * * *", "15m", lambda w: w.minute % 20 == 0 and w.hour in {1, 2},
        datetime(2026, 3, 27, tzinfo=UTC), id="london-every-20-spring",
    ),
    pytest.param(
        LONDON, "*/20 1-2 * * *", "15m", lambda w: w.minute % 20 == 0 and w.hour in {1, 2},
        datetime(2026, 10, 23, tzinfo=UTC), id="london-every-20-autumn",
    ),
    pytest.param(
        LONDON, "* 1 * * sun", "1m", lambda w: w.hour == 1 and w.weekday() == 6,
        datetime(2026, 3, 27, tzinfo=UTC), id="london-every-minute-spring",
    ),
    pytest.param(
        LONDON, "* 1 * * sun", "1m", lambda w: w.hour == 1 and w.weekday() == 6,
        datetime(2026, 10, 23, tzinfo=UTC), id="london-every-minute-autumn",
    ),
    pytest.param(
        LONDON, "0 18 * * 5", "63h", lambda w: (w.weekday(), w.hour, w.minute) == (4, 18, 0),
        datetime(2026, 3, 26, tzinfo=UTC), id="london-weekend-freeze-spring",
    ),
    pytest.param(
        LONDON, "0 18 * * 5", "63h", lambda w: (w.weekday(), w.hour, w.minute) == (4, 18, 0),
        datetime(2026, 10, 22, tzinfo=UTC), id="london-weekend-freeze-autumn",
    ),
    pytest.param(
        TORONTO, "15 1 * * *", "90m", lambda w: (w.hour, w.minute) == (1, 15), datetime(2026, 3, 6, tzinfo=UTC),
        id="toronto-0115-spring",
    ),
    pytest.param(
        TORONTO, "15 1 * * *", "90m", lambda w: (w.hour, w.minute) == (1, 15), datetime(2026, 10, 30, tzinfo=UTC),
        id="toronto-0115-autumn",
    ),
    pytest.param(
        TORONTO, "*/10 0-3 * * *", "7m", lambda w: w.minute % 10 == 0 and w.hour <= 3,
        datetime(2026, 3, 6, tzinfo=UTC), id="toronto-every-10-spring",
    ),
    pytest.param(
        TORONTO, "*/10 0-3 * * *", "7m", lambda w: w.minute % 10 == 0 and w.hour <= 3,
        datetime(2026, 10, 30, tzinfo=UTC), id="toronto-every-10-autumn",
    ),
    pytest.param(
        TORONTO, "0 22 * * 5", "58h", lambda w: (w.weekday(), w.hour, w.minute) == (4, 22, 0),
        datetime(2026, 3, 5, tzinfo=UTC), id="toronto-weekend-spring",
    ),
    pytest.param(
        TORONTO, "0 22 * * 5", "58h", lambda w: (w.weekday(), w.hour, w.minute) == (4, 22, 0),
        datetime(2026, 10, 29, tzinfo=UTC), id="toronto-weekend-autumn",
    ),
    pytest.param(
        TORONTO, "0 0 1 * mon", "2h", lambda w: (w.hour, w.minute) == (0, 0) and (w.day == 1 or w.weekday() == 0),
        datetime(2026, 10, 29, tzinfo=UTC), id="toronto-either-day-autumn",
    ),
]


@pytest.mark.parametrize(("zone", "cron", "duration", "fires", "first"), ORACLE_CASES)
def test_a_cron_rule_matches_like_a_minute_by_minute_reading_of_the_clock(
    zone: ZoneInfo, cron: str, duration: str, fires: Callable[[datetime], bool], first: datetime
) -> None:
    rule = WindowRule.model_validate(_cron(cron, duration))
    minutes = 5 * 24 * 60
    expected = _oracle(zone, fires, timedelta(seconds=_seconds(duration)), first, minutes)
    assert len(set(expected)) == 2, "the check needs a rule that changes in the span"

    found = [rule.matches((first + timedelta(minutes=m)).astimezone(zone)) for m in range(minutes)]

    mismatches = [first + timedelta(minutes=m) for m in range(minutes) if found[m] != expected[m]]
    assert mismatches == []


def _seconds(duration: str) -> int:
    return int(duration[:-1]) * {"m": 60, "h": 3600}[duration[-1]]


# Brute force, a minute at a time, checks next_open/next_close with cron rules on the weeks the clocks change.
WEEKEND_FREEZE = {
    "timezone": "Europe/London",
    "allow": [{"days": "mon-fri", "hours": "08:00-18:00"}],
    "deny": [_cron("0 18 * * 5", "63h", reason="weekend freeze")],
}
SEARCH_CHECKS = [
    pytest.param(WEEKEND_FREEZE, datetime(2026, 3, 26, tzinfo=UTC), id="london-weekend-freeze-spring"),
    pytest.param(WEEKEND_FREEZE, datetime(2026, 10, 22, tzinfo=UTC), id="london-weekend-freeze-autumn"),
    pytest.param(
        {"timezone": "Europe/London", "allow": [{"hours": "00:30-03:00"}], "deny": [_cron("*/20 1-2 * * *", "15m")]},
        datetime(2026, 3, 27, tzinfo=UTC),
        id="london-allow-and-cron-deny-spring",
    ),
    pytest.param(
        {"timezone": "Europe/London", "allow": [{"hours": "00:30-03:00"}], "deny": [_cron("*/20 1-2 * * *", "15m")]},
        datetime(2026, 10, 23, tzinfo=UTC),
        id="london-allow-and-cron-deny-autumn",
    ),
    pytest.param(
        {"timezone": "Europe/London", "allow": [_cron("* 1 * * *", "1m"), _cron("59 23 * * sat", "2m")]},
        datetime(2026, 3, 27, tzinfo=UTC),
        id="london-every-minute-spring",
    ),
    pytest.param(
        {"timezone": "Europe/London", "allow": [_cron("* 1 * * *", "1m"), _cron("59 23 * * sat", "2m")]},
        datetime(2026, 10, 23, tzinfo=UTC),
        id="london-every-minute-autumn",
    ),
    pytest.param(
        {
            "timezone": "America/Toronto",
            "allow": [_cron("15 1 * * *", "90m")],
            "deny": [{"days": "sun", "hours": "01:30-01:40"}],
        },
        datetime(2026, 3, 6, tzinfo=UTC),
        id="toronto-cron-allow-spring",
    ),
    pytest.param(
        {
            "timezone": "America/Toronto",
            "allow": [_cron("15 1 * * *", "90m")],
            "deny": [{"days": "sun", "hours": "01:30-01:40"}],
        },
        datetime(2026, 10, 30, tzinfo=UTC),
        id="toronto-cron-allow-autumn",
    ),
    pytest.param(
        {"timezone": "America/Toronto", "allow": [_cron("* 0-1 * * *", "1m")], "deny": [_cron("30 1 * * *", "5m")]},
        datetime(2026, 3, 6, tzinfo=UTC),
        id="toronto-every-minute-spring",
    ),
    pytest.param(
        {"timezone": "America/Toronto", "allow": [_cron("* 0-1 * * *", "1m")], "deny": [_cron("30 1 * * *", "5m")]},
        datetime(2026, 10, 30, tzinfo=UTC),
        id="toronto-every-minute-autumn",
    ),
]


@pytest.mark.parametrize(("window_data", "first"), SEARCH_CHECKS)
def test_next_change_with_cron_rules_equals_a_minute_by_minute_search(
    window_data: dict[str, Any], first: datetime
) -> None:
    window = Window.model_validate(window_data)
    minutes = 5 * 24 * 60
    states = [window.is_open(first + timedelta(minutes=m)) for m in range(minutes)]
    assert len(set(states)) == 2, "the check needs a window that changes in the span"

    for start in range(0, 3 * 24 * 60, 13):
        verdict = evaluate("w", window, first + timedelta(minutes=start, seconds=20))
        change = next((m for m in range(start + 1, minutes) if states[m] != states[start]), None)
        found = verdict.next_close if verdict.open else verdict.next_open
        assert verdict.open == states[start]
        if change is None:
            assert found is None or found >= first + timedelta(minutes=minutes)
        else:
            # In UTC: PEP 495 makes a time in a repeated hour unequal to any time in another zone.
            assert found is not None
            assert found.astimezone(UTC) == first + timedelta(minutes=change), f"from minute {start}"


# --- next open and close ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_data", "at", "expected"),
    [
        pytest.param(
            {"timezone": "UTC", "allow": [_cron("0 0 29 2 *", "1d")]},
            datetime(2026, 6, 1, tzinfo=UTC),
            (False, None, None),
            id="29-february-is-beyond-the-horizon",
        ),
        pytest.param(
            {"timezone": "UTC", "allow": [_cron("0 0 29 2 *", "1d")]},
            datetime(2027, 6, 1, tzinfo=UTC),
            (False, "2028-02-29T00:00:00+00:00", None),
            id="29-february-within-the-horizon",
        ),
        pytest.param(
            {"timezone": "UTC", "allow": [_cron("0 0 29 2 *", "1d")]},
            datetime(2028, 2, 29, 12, tzinfo=UTC),
            (True, None, "2028-03-01T00:00:00+00:00"),
            id="29-february-ends-at-midnight",
        ),
        pytest.param(
            {"timezone": "UTC", "deny": [_cron("* * * * *", "1m")]},
            datetime(2026, 6, 1, tzinfo=UTC),
            (False, None, None),
            id="every-minute-denies-for-good",
        ),
        # Fired once, at the first occurrence: nothing fires in the repeated hour's second pass.
        pytest.param(
            {"timezone": "Europe/London", "deny": [_cron("* * * * *", "1m")]},
            datetime(2026, 6, 1, tzinfo=UTC),
            (False, "2026-10-25T01:00:00+00:00", None),
            id="every-minute-in-london-opens-in-the-repeated-hour",
        ),
        pytest.param(
            {"timezone": "Europe/London", "deny": [_cron("* * * * *", "1m")]},
            datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
            (True, None, "2026-10-25T02:00:00+00:00"),
            id="every-minute-in-london-closes-after-the-repeated-hour",
        ),
        pytest.param(
            {"timezone": "Europe/London", "allow": [_cron("0 */6 * * *", "8h")]},
            datetime(2026, 6, 1, tzinfo=UTC),
            (True, None, None),
            id="overlapping-firings-allow-for-good",
        ),
        pytest.param(
            {"timezone": "Europe/London", "allow": [_cron("0 */6 * * *", "5h")]},
            datetime(2026, 6, 1, 6, tzinfo=UTC),
            (True, None, "2026-06-01T11:00:00+01:00"),  # 07:00 BST: the 06:00 firing lasts to 11:00
            id="gaps-between-firings",
        ),
        pytest.param(
            {"timezone": "Europe/London", "deny": [_cron("0 9 * * *", "3h"), _cron("0 11 * * *", "3h")]},
            datetime(2026, 6, 1, 8, 30, tzinfo=UTC),
            (False, "2026-06-01T14:00:00+01:00", None),
            id="two-overlapping-cron-rules",
        ),
        pytest.param(
            {"timezone": "Europe/London", "allow": [_cron("0 0 1 * mon", "1h")]},
            datetime(2026, 6, 23, 12, tzinfo=UTC),
            (False, "2026-06-29T00:00:00+01:00", None),
            id="either-day-field-the-next-monday-first",
        ),
        pytest.param(
            {"timezone": "Europe/London", "allow": [_cron("0 0 1 * mon", "1h")]},
            datetime(2026, 6, 29, 12, tzinfo=UTC),
            (False, "2026-07-01T00:00:00+01:00", None),
            id="either-day-field-the-next-first",
        ),
        pytest.param(
            {"timezone": "Africa/Johannesburg", "deny": [_cron("0 0 1 1 *", "300d", reason="long freeze")]},
            datetime(2026, 6, 1, tzinfo=UTC),
            (False, "2026-10-28T00:00:00+02:00", None),
            id="a-freeze-that-started-months-ago",
        ),
    ],
)
def test_next_open_and_close_with_cron_rules(
    window_data: dict[str, Any], at: datetime, expected: tuple[bool, str | None, str | None]
) -> None:
    verdict = evaluate("w", Window.model_validate(window_data), at).to_json()

    assert (verdict["open"], verdict["next_open"], verdict["next_close"]) == expected


# --- describing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rule", "description"),
    [
        (
            "deny",
            _cron("0 18 * * 5", "63h", reason="weekend freeze"),
            'deny cron "0 18 * * 5" for 63h (weekend freeze)',
        ),
        ("allow", _cron("30 2 * * *", "1h"), 'allow cron "30 2 * * *" for 1h'),
        ("allow", _cron(" 0  22 * *\t5 ", "2d"), 'allow cron "0 22 * * 5" for 2d'),
        ("deny", _cron("0 9 * * mon-fri", "1h30m"), 'deny cron "0 9 * * mon-fri" for 1h30m'),
        ("deny", _cron("0 9 * * *", 3600), 'deny cron "0 9 * * *" for 1h'),  # YAML `duration: 3600`
        ("deny", _cron("0 9 * * *", 5400), 'deny cron "0 9 * * *" for 1h30m'),
    ],
)
def test_a_cron_rule_describes_itself(kind: str, rule: dict[str, Any], description: str) -> None:
    assert WindowRule.model_validate(rule).describe(kind) == description


def test_the_deciding_cron_rule_and_its_reason_are_in_the_verdict() -> None:
    window = Window.model_validate(
        {"timezone": "Europe/London", "deny": [_cron("0 18 * * 5", "63h", reason="weekend freeze")]}
    )

    verdict = evaluate("w", window, datetime(2026, 6, 6, 12, tzinfo=UTC))

    assert (verdict.open, verdict.rule, verdict.reason) == (
        False,
        'deny cron "0 18 * * 5" for 63h (weekend freeze)',
        "weekend freeze",
    )


# --- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 25 * * 5", "cron field 2 (hour) '25' is out of range 0-23"),
        ("60 * * * *", "cron field 1 (minute) '60' is out of range 0-59"),
        ("0 0 0 * *", "cron field 3 (day-of-month) '0' is out of range 1-31"),
        ("0 0 32 * *", "cron field 3 (day-of-month) '32' is out of range 1-31"),
        ("0 0 * 13 *", "cron field 4 (month) '13' is out of range 1-12"),
        ("0 0 * * 8", "cron field 5 (day-of-week) '8' is out of range 0-7"),
        ("0 20-25 * * *", "cron field 2 (hour) '25' is out of range 0-23"),
        ("0 17-9 * * *", "cron field 2 (hour) '17-9' ends before it starts"),
        ("0 0 * * fri-tue", "cron field 5 (day-of-week) 'fri-tue' ends before it starts"),
        ("*/0 * * * *", "cron field 1 (minute) '*/0' has a step of 0 (steps are 1 or more)"),
        ("0 0 1,,15 * *", "cron field 3 (day-of-month) '1,,15' has an empty list item"),
        ("0 0 1, * *", "cron field 3 (day-of-month) '1,' has an empty list item"),
        ("x 0 * * *", "cron field 1 (minute) 'x' is not a number"),
        ("0 0 * foo *", "cron field 4 (month) 'foo' is not a number or a month name (jan..dec)"),
        ("0 0 * * fry", "cron field 5 (day-of-week) 'fry' is not a number or a day name (sun..sat)"),
        ("0 0 * * monday", "cron field 5 (day-of-week) 'monday' is not a number or a day name (sun..sat)"),
        (
            "0 0 1-2-3 * *",
            "cron field 3 (day-of-month) '1-2-3' is not a value, a range or a step (like 5, 1-5, */15 or 1-30/2)",
        ),
        (
            "0 0 *-5 * *",
            "cron field 3 (day-of-month) '*-5' is not a value, a range or a step (like 5, 1-5, */15 or 1-30/2)",
        ),
        ("0 0 L * *", "cron field 3 (day-of-month) 'L' is not a number"),
        ("0 0 * * FRY", "cron field 5 (day-of-week) 'FRY' is not a number or a day name (sun..sat)"),
        ("0 22 * *", "cron needs 5 fields (minute hour day-of-month month day-of-week), got 4: '0 22 * *'"),
        (
            "0 0 22 * * 5",
            "cron needs 5 fields (minute hour day-of-month month day-of-week), got 6: '0 0 22 * * 5'",
        ),
        ("", "cron needs 5 fields (minute hour day-of-month month day-of-week), got 0: ''"),
        ("@daily", "cron needs 5 fields (minute hour day-of-month month day-of-week), got 1: '@daily'"),
        ("0 0 30 2 *", "cron '0 0 30 2 *' never fires: those months have no such days"),
        ("0 0 31 apr,jun *", "cron '0 0 31 apr,jun *' never fires: those months have no such days"),
        ("0 0 30 2 */2", "cron '0 0 30 2 */2' never fires: those months have no such days"),
    ],
)
def test_a_bad_cron_names_the_field_and_what_is_wrong(cron: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Window.model_validate({"timezone": "Europe/London", "deny": [_cron(cron, "1h")]})

    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [(("deny", 0, "cron"), f"Value error, {message}")]


@pytest.mark.parametrize(
    "cron",
    ["0 0 29 2 *", "0 0 31 2 mon", "0 0 * * 7", "59 23 31 12 sun", "0 0 1 * *", "0 0 31 * *"],
)
def test_a_cron_that_can_fire_is_accepted(cron: str) -> None:
    WindowRule.model_validate(_cron(cron, "1h"))


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        ("58x", "expected a duration like 30s, 5m or 1h, got '58x'"),
        ("", "expected a duration like 30s, 5m or 1h, got ''"),
        ("0m", "duration must be more than zero, got '0m'"),
        (0, "duration must be more than zero, got '0'"),
        ("367d", "duration must be at most 366d (a year), got '367d'"),
    ],
)
def test_a_bad_duration_is_reported(duration: str | int, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Window.model_validate({"timezone": "Europe/London", "deny": [_cron("0 18 * * 5", duration)]})

    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (("deny", 0, "duration"), f"Value error, {message}")
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"cron": "0 18 * * 5"}, "cron needs a duration"),
        ({"cron": "0 18 * * 5", "reason": "freeze"}, "cron needs a duration"),
        ({"duration": "63h"}, "duration needs a cron"),
        ({"duration": "63h", "days": "fri"}, "duration needs a cron"),
        (_cron("0 18 * * 5", "63h", days="fri"), "a cron rule cannot also have days (say when it fires in the cron)"),
        (
            _cron("0 18 * * 5", "63h", hours="18:00-24:00", dates="2026-12-25"),
            "a cron rule cannot also have hours or dates (say when it fires in the cron)",
        ),
        (
            _cron("0 18 * * 5", "63h", days="fri", hours="18:00-24:00", month_days="1"),
            "a cron rule cannot also have days, hours or month_days (say when it fires in the cron)",
        ),
        ({"cron": "0 18 * * 5", "days": "fri"}, "a cron rule cannot also have days (say when it fires in the cron)"),
    ],
)
def test_cron_and_duration_come_together_and_alone(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Window.model_validate({"timezone": "Europe/London", "allow": [{"days": "mon"}], "deny": [rule]})

    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [(("deny", 0), f"Value error, {message}")]


def test_cron_errors_in_a_config_file_name_the_line_and_the_field() -> None:
    text = textwrap.dedent(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        windows:
          freeze:
            timezone: Europe/London
            deny:
              - {cron: "0 25 * * 5", duration: 63h}
              - {cron: "0 18 * * 5"}
              - {cron: "0 18 * * 5", duration: 63h, days: fri}
              - {duration: 63h, reason: weekend}
              - {cron: "0 18 * * 5", duration: 63 hours}
        """
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "conveyor.yml", env={})

    assert [str(problem) for problem in caught.value.problems] == [
        "conveyor.yml:9: windows.freeze.deny.0.cron: cron field 2 (hour) '25' is out of range 0-23",
        "conveyor.yml:10: windows.freeze.deny.1: cron needs a duration",
        "conveyor.yml:11: windows.freeze.deny.2: a cron rule cannot also have days (say when it fires in the cron)",
        "conveyor.yml:12: windows.freeze.deny.3: duration needs a cron",
        "conveyor.yml:13: windows.freeze.deny.4.duration: expected a duration like 30s, 5m or 1h, got '63 hours'",
    ]


def test_a_config_file_with_cron_rules_loads() -> None:
    text = textwrap.dedent(
        """\
        app: www
        roles: {web: {}}
        environments:
          production: {regions: {uk: {hosts: {web: [web-1]}}}, window: freeze}
        windows:
          freeze:
            timezone: Europe/London
            allow: [{cron: 0 2 * * *, duration: 3600, reason: nightly sync}]
            deny: [{cron: "0 18 * * 5", duration: 63h, reason: weekend freeze}]
        """
    )
    config, _ = parse_config(text, "conveyor.yml", env={})
    window = config.windows["freeze"]

    assert [rule.describe("allow") for rule in window.allow] == ['allow cron "0 2 * * *" for 1h (nightly sync)']
    assert window.is_open(datetime(2026, 6, 3, 1, 30, tzinfo=UTC)) is True  # 02:30 BST
    assert window.is_open(datetime(2026, 6, 3, 2, 30, tzinfo=UTC)) is False


def test_the_json_schema_documents_cron_and_duration() -> None:
    properties = WindowRule.model_json_schema()["properties"]

    assert "5-field cron" in properties["cron"]["description"]
    assert "real time" in properties["duration"]["description"]
