"""Deploy windows: parsing and validating rules, open or closed at an instant, and the next change.

The (window, instant) -> verdict tables live in fixtures/windows/*.json, one window per file.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from conveyor.gates.windows import Window, WindowRule, WindowVerdict, evaluate, now, parse_at

FIXTURES = Path(__file__).parent / "fixtures" / "windows"
LONDON = ZoneInfo("Europe/London")

OFFICE_HOURS = {
    "timezone": "Europe/London",
    "allow": [{"days": "mon-thu", "hours": "09:00-16:00"}, {"days": "fri", "hours": "09:00-12:00"}],
    "deny": [{"month_days": "28-31,1-2", "reason": "month-end payment runs"}],
}


def _fixture_cases() -> list[Any]:
    cases = []
    for path in sorted(FIXTURES.glob("*.json")):
        table = json.loads(path.read_text())
        for number, case in enumerate(table["cases"]):
            cases.append(
                pytest.param(table["name"], table["window"], case, id=f"{path.stem}-{number}-{case['at']}")
            )
    return cases


@pytest.mark.parametrize(("name", "window_data", "case"), _fixture_cases())
def test_window_verdicts_match_the_fixture_tables(
    name: str, window_data: dict[str, Any], case: dict[str, Any]
) -> None:
    window = Window.model_validate(window_data)

    verdict = evaluate(name, window, datetime.fromisoformat(case["at"])).to_json()

    expected = {
        key: case[key] for key in ("open", "rule", "reason", "next_open", "next_close") if key in case
    }
    assert {key: verdict[key] for key in expected} == expected, case["why"]
    assert verdict["window"] == name


def test_fixture_tables_cover_every_zone_the_brief_names() -> None:
    zones = {json.loads(path.read_text())["window"]["timezone"] for path in FIXTURES.glob("*.json")}
    assert zones == {"Europe/London", "Africa/Johannesburg", "America/Toronto"}


# --- the verdict --------------------------------------------------------------------------------------


def test_verdict_json_has_the_cli_fields_with_offsets_in_the_window_zone() -> None:
    friday_afternoon = datetime(2026, 6, 5, 14, tzinfo=UTC)
    verdict = evaluate("office-hours", Window.model_validate(OFFICE_HOURS), friday_afternoon)

    assert verdict.to_json() == {
        "window": "office-hours",
        "open": False,
        "rule": "no allow rule matches",
        "reason": None,
        "at": "2026-06-05T15:00:00+01:00",
        "next_open": "2026-06-08T09:00:00+01:00",
        "next_close": None,
        "timezone": "Europe/London",
    }
    json.dumps(verdict.to_json())  # serialisable as it is


def test_verdict_times_are_aware_and_in_the_window_zone() -> None:
    friday_afternoon = datetime(2026, 6, 5, 14, tzinfo=UTC)
    verdict = evaluate("office-hours", Window.model_validate(OFFICE_HOURS), friday_afternoon)

    assert isinstance(verdict, WindowVerdict)
    assert verdict.at.tzinfo == LONDON
    assert verdict.next_open == datetime(2026, 6, 8, 9, tzinfo=LONDON)
    assert verdict.next_open is not None
    assert verdict.next_open.tzinfo == LONDON


def test_a_window_without_rules_is_always_open() -> None:
    verdict = evaluate("any", Window.model_validate({"timezone": "UTC"}), datetime(2026, 6, 5, tzinfo=UTC))

    assert (verdict.open, verdict.rule) == (True, "no rules")
    assert (verdict.next_open, verdict.next_close) == (None, None)


def test_a_deny_rule_that_never_matches_again_leaves_the_window_open_past_the_horizon() -> None:
    window = Window.model_validate({"timezone": "UTC", "deny": [{"dates": "2020-01-01"}]})

    verdict = evaluate("w", window, datetime(2026, 6, 5, tzinfo=UTC))

    assert (verdict.open, verdict.rule, verdict.next_close) == (True, "no deny rule matches", None)


def test_next_open_is_none_beyond_the_400_day_horizon_and_found_within_it() -> None:
    window = Window.model_validate({"timezone": "Europe/London", "allow": [{"dates": "2028-01-01"}]})

    too_far = evaluate("w", window, datetime(2026, 6, 1, tzinfo=UTC))
    in_reach = evaluate("w", window, datetime(2027, 6, 1, tzinfo=UTC))

    assert (too_far.open, too_far.next_open) == (False, None)
    assert in_reach.next_open == datetime(2028, 1, 1, tzinfo=LONDON)


def test_the_first_matching_deny_rule_decides_and_gives_its_reason() -> None:
    window = Window.model_validate(
        {
            "timezone": "UTC",
            "allow": [{"days": "mon-sun", "reason": "always"}],
            "deny": [
                {"dates": "2026-12-25", "reason": "Christmas"},
                {"month_days": "25", "reason": "payday"},
            ],
        }
    )

    verdict = evaluate("w", window, datetime(2026, 12, 25, 12, tzinfo=UTC))
    allowed = evaluate("w", window, datetime(2026, 12, 26, 12, tzinfo=UTC))

    assert (verdict.rule, verdict.reason) == ("deny dates 2026-12-25 (Christmas)", "Christmas")
    assert (allowed.open, allowed.rule, allowed.reason) == (True, "allow mon-sun (always)", "always")


def test_evaluate_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="expected a timezone-aware time"):
        evaluate("w", Window.model_validate(OFFICE_HOURS), datetime(2026, 6, 5, 14))


def test_is_open_agrees_with_evaluate() -> None:
    window = Window.model_validate(OFFICE_HOURS)

    assert window.is_open(datetime(2026, 6, 3, 9, tzinfo=UTC)) is True
    assert window.is_open(datetime(2026, 6, 29, 9, tzinfo=UTC)) is False


# Brute force, a minute at a time, checks the boundary search on the weeks the clocks change.
SEARCH_CHECKS = [
    pytest.param(OFFICE_HOURS, datetime(2026, 3, 26, tzinfo=UTC), id="office-hours-spring"),
    pytest.param(OFFICE_HOURS, datetime(2026, 10, 22, tzinfo=UTC), id="office-hours-autumn"),
    pytest.param(
        {
            "timezone": "Europe/London",
            "deny": [{"hours": "01:30-03:00"}, {"days": "sun", "hours": "00:00-00:45"}],
        },
        datetime(2026, 10, 23, tzinfo=UTC),
        id="london-deny-autumn",
    ),
    pytest.param(
        {"timezone": "Europe/London", "allow": [{"hours": "00:30-01:15"}, {"hours": "01:45-02:30"}]},
        datetime(2026, 3, 27, tzinfo=UTC),
        id="london-allow-spring",
    ),
    pytest.param(
        {"timezone": "America/Toronto", "allow": [{"days": "fri,sat", "hours": "23:00-02:30"}]},
        datetime(2026, 3, 6, tzinfo=UTC),
        id="toronto-nights-spring",
    ),
    pytest.param(
        {"timezone": "America/Toronto", "allow": [{"days": "sat-sun", "hours": "01:20-01:40"}]},
        datetime(2026, 10, 30, tzinfo=UTC),
        id="toronto-repeated-hour-autumn",
    ),
]


@pytest.mark.parametrize(("window_data", "first"), SEARCH_CHECKS)
def test_next_change_equals_a_minute_by_minute_search(window_data: dict[str, Any], first: datetime) -> None:
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


# --- rules ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "local", "matches"),
    [
        ({"days": "mon-fri,sun"}, datetime(2026, 6, 7, 12), True),  # a Sunday
        ({"days": "mon-fri,sun"}, datetime(2026, 6, 6, 12), False),  # a Saturday
        ({"days": "fri-mon"}, datetime(2026, 6, 7, 12), True),
        ({"days": "fri-mon"}, datetime(2026, 6, 9, 12), False),  # a Tuesday
        ({"days": ["mon", "wed"]}, datetime(2026, 6, 3, 12), True),
        ({"days": ["mon", "wed"]}, datetime(2026, 6, 4, 12), False),
        ({"days": "Monday-Wednesday"}, datetime(2026, 6, 3, 12), True),
        ({"days": "sun-sun"}, datetime(2026, 6, 7, 12), True),
        ({"days": "sun-sun"}, datetime(2026, 6, 8, 12), False),
        ({"hours": "9:00-17:00"}, datetime(2026, 6, 3, 9), True),
        ({"hours": "09:00 - 17:00"}, datetime(2026, 6, 3, 16, 59, 59), True),
        ({"hours": "09:00-17:00"}, datetime(2026, 6, 3, 17), False),
        ({"hours": "22:00-00:00"}, datetime(2026, 6, 3, 23, 59), True),
        ({"hours": "22:00-00:00"}, datetime(2026, 6, 4, 0, 0), False),
        ({"days": "fri", "hours": "22:00-02:00"}, datetime(2026, 6, 6, 1, 59), True),  # Saturday
        ({"days": "fri", "hours": "22:00-02:00"}, datetime(2026, 6, 5, 1, 0), False),  # Friday morning
        ({"month_days": "last"}, datetime(2026, 2, 28, 12), True),
        ({"month_days": "last"}, datetime(2028, 2, 28, 12), False),
        ({"month_days": "last"}, datetime(2028, 2, 29, 12), True),
        ({"month_days": "last-2"}, datetime(2026, 2, 26, 0), True),
        ({"month_days": "last-2"}, datetime(2028, 2, 26, 23, 59), False),
        ({"month_days": "25-last"}, datetime(2026, 2, 28, 12), True),
        ({"month_days": "25-last"}, datetime(2026, 2, 24, 12), False),
        ({"month_days": ["1", "15"]}, datetime(2026, 6, 15, 12), True),
        ({"month_days": 15}, datetime(2026, 6, 15, 12), True),
        ({"dates": "2026-12-24..2027-01-01"}, datetime(2026, 12, 24, 0), True),
        ({"dates": "2026-12-24..2027-01-01"}, datetime(2027, 1, 1, 23, 59), True),
        ({"dates": "2026-12-24..2027-01-01"}, datetime(2027, 1, 2, 0), False),
        ({"dates": "2026-12-24..2027-01-01"}, datetime(2026, 12, 23, 23, 59), False),
        ({"dates": ["2026-12-25", "2027-04-02..2027-04-05"]}, datetime(2027, 4, 3, 12), True),
        ({"dates": date(2026, 12, 25)}, datetime(2026, 12, 25, 12), True),
        ({"days": "sat", "month_days": "1"}, datetime(2026, 8, 1, 12), True),  # 1 August 2026 is a Saturday
        ({"days": "sat", "month_days": "1"}, datetime(2026, 9, 1, 12), False),  # all fields must match
    ],
)
def test_a_rule_matches_the_local_wall_clock(rule: dict[str, Any], local: datetime, matches: bool) -> None:
    assert WindowRule.model_validate(rule).matches(local) is matches


def test_yaml_scalars_are_kept_as_text() -> None:
    # PyYAML reads `dates: 2026-12-25` as a date and `month_days: 15` as an int.
    rule = WindowRule.model_validate({"dates": [date(2026, 12, 25)], "month_days": 15})

    assert (rule.dates, rule.month_days) == (["2026-12-25"], "15")


@pytest.mark.parametrize(
    ("rule", "description"),
    [
        ({"days": "mon-thu", "hours": "09:00-16:00"}, "allow mon-thu 09:00-16:00"),
        ({"days": ["mon", "wed"]}, "allow mon,wed"),
        (
            {"month_days": "28-31,1-2", "reason": "month-end payment runs"},
            "allow month_days 28-31,1-2 (month-end payment runs)",
        ),
        (
            {"dates": ["2026-12-25", "2027-01-01"], "hours": "00:00-24:00"},
            "allow 00:00-24:00 dates 2026-12-25,2027-01-01",
        ),
    ],
)
def test_a_rule_describes_itself(rule: dict[str, Any], description: str) -> None:
    assert WindowRule.model_validate(rule).describe("allow") == description


# --- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hours", "9-17", "expected \"HH:MM-HH:MM\", got '9-17'"),
        ("hours", "09:00-25:00", "hour 25 is out of range"),
        ("hours", "09:60-10:00", "minute 60 is out of range"),
        ("hours", "24:00-02:00", "24:00 can only end a range"),
        ("hours", "22:00-24:30", "24:30 is out of range (24:00 is the latest end)"),
        ("hours", "09:00-09:00", "start and end are the same; write 00:00-24:00 for the whole day"),
        ("days", "fry", "unknown day 'fry' (expected mon..sun)"),
        ("days", ["mon", "wen"], "unknown day 'wen' (expected mon..sun)"),
        ("days", "mon-", "unknown day '' (expected mon..sun)"),
        ("days", "mon,,fri", "expected days like mon-fri or [mon, wed], got 'mon,,fri'"),
        ("days", [], "expected at least one day"),
        ("month_days", "32", "month day 32 is out of range (1-31)"),
        ("month_days", "0-2", "month day 0 is out of range (1-31)"),
        ("month_days", "28-2", "range ends before it starts: 28-2 (write 28-31,1-2 to span the month end)"),
        ("month_days", "last-31", "last-31 is out of range (last-0..last-30)"),
        ("month_days", "end", "expected month days like 28-31,1-2 or last-2, got 'end'"),
        ("month_days", "last-last", "expected month days like 28-31,1-2 or last-2, got 'last-last'"),
        ("dates", "xmas", "expected a date range like 2026-12-24..2027-01-01, got 'xmas'"),
        ("dates", "2026-12-24..", "expected a date range like 2026-12-24..2027-01-01, got '2026-12-24..'"),
        ("dates", "2027-01-01..2026-12-24", "range ends before it starts: 2027-01-01..2026-12-24"),
        ("dates", ["2026-12-25", "2026-02-30"], "2026-02-30 is not a valid date"),
        ("dates", [], "expected at least one date"),
    ],
)
def test_a_bad_rule_field_is_reported_with_its_path_and_a_short_message(
    field: str, value: Any, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Window.model_validate({"timezone": "Europe/London", "allow": [{"days": "mon", field: value}]})

    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (("allow", 0, field), f"Value error, {message}")
    ]


@pytest.mark.parametrize("rule", [{}, {"reason": "freeze"}])
def test_a_rule_must_say_when_it_applies(rule: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        Window.model_validate({"timezone": "UTC", "deny": [rule]})

    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (("deny", 0), "Value error, a rule needs at least one of days, hours, month_days, dates")
    ]


@pytest.mark.parametrize("zone", ["Europe/Londn", "", "/etc/localtime", "../zoneinfo/UTC", "Europe"])
def test_an_unknown_time_zone_is_reported(zone: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Window.model_validate({"timezone": zone})

    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (("timezone",), f"Value error, unknown time zone {zone!r}")
    ]


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"timezone": "UTC", "allw": []}, ("allw",)),
        ({"timezone": "UTC", "allow": [{"day": "mon"}]}, ("allow", 0, "day")),
    ],
)
def test_unknown_keys_are_refused(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        Window.model_validate(data)

    assert (loc, "extra_forbidden") in [(e["loc"], e["type"]) for e in caught.value.errors()]


def test_a_window_requires_a_time_zone() -> None:
    with pytest.raises(ValidationError) as caught:
        Window.model_validate({"allow": [{"days": "mon"}]})

    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("timezone",), "missing")]


# --- the clock ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-29T01:30:00Z", datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        ("2026-03-29T02:30:00+01:00", datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        ("2026-06-01T09:00", datetime(2026, 6, 1, 8, tzinfo=UTC)),  # naive: London summer time
        ("2026-06-01 09:00:00", datetime(2026, 6, 1, 8, tzinfo=UTC)),
        ("2026-01-15", datetime(2026, 1, 15, tzinfo=UTC)),
        ("2026-03-29T01:30", datetime(2026, 3, 29, 1, tzinfo=UTC)),  # skipped: the end of the gap
        ("2026-10-25T01:30", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),  # repeated: the first one
    ],
)
def test_parse_at_reads_iso_8601_and_naive_times_in_the_default_zone(text: str, expected: datetime) -> None:
    parsed = parse_at(text, LONDON)

    assert parsed.astimezone(UTC) == expected  # in UTC: see PEP 495 on comparing repeated times
    assert parsed.utcoffset() is not None


def test_parse_at_keeps_naive_times_in_the_default_zone() -> None:
    assert parse_at("2026-06-01T09:00", LONDON).isoformat() == "2026-06-01T09:00:00+01:00"
    assert parse_at("2026-03-29T01:30", LONDON).isoformat() == "2026-03-29T02:00:00+01:00"


@pytest.mark.parametrize("text", ["tomorrow", "", "2026-13-01T00:00", "09:00"])
def test_parse_at_rejects_anything_else_clearly(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_at(text, UTC)

    assert str(caught.value) == (
        f"expected a time like 2026-03-29T09:30 or 2026-03-29T09:30:00+01:00, got {text!r}"
    )


def test_no_environment_variable_moves_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # CONVEYOR_NOW once set the clock of every command, deploy included: a closed window opened with no audit.
    monkeypatch.setenv("CONVEYOR_NOW", "2020-01-01T00:00:00Z")
    assert now().year >= 2026
    monkeypatch.setenv("CONVEYOR_NOW", "soon")
    assert now().year >= 2026  # nor does a malformed value crash anything


def test_a_what_if_question_sees_its_own_moment_and_nothing_else_does() -> None:
    from conveyor.gates.windows import evaluated_at

    moment = datetime(2026, 6, 5, 14, tzinfo=UTC)
    with evaluated_at(moment):
        assert now() == moment
    assert now() != moment


def test_now_is_the_real_utc_time_without_conveyor_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_NOW", raising=False)

    before = datetime.now(UTC)
    current = now()
    after = datetime.now(UTC)

    assert before <= current <= after
    assert current.utcoffset() == timedelta(0)
