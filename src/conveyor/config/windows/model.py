"""The window and rule models the config holds (`windows:` in conveyor.yml): their validation, the verdict
at one local time with the rule that decides it, and a rule's one-line description.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from conveyor.config.windows.cron import CronSpec, parse_cron, parse_cron_duration
from conveyor.config.windows.rules import (
    MINUTES_PER_DAY,
    RuleSpec,
    as_text,
    parse_dates,
    parse_days,
    parse_hours,
    parse_month_days,
)
from conveyor.config.windows.wallclock import require_aware
from conveyor.values import format_duration

_Spec = RuleSpec | CronSpec


class WindowRule(BaseModel):
    """One allow or deny rule: every field given must match the local wall clock, or a cron and a duration."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

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
        return as_text(value)

    @field_validator("days")
    @classmethod
    def _check_days(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None:
            parse_days(value)
        return value

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hours(value)
        return value

    @field_validator("month_days")
    @classmethod
    def _check_month_days(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None:
            parse_month_days(value)
        return value

    @field_validator("dates")
    @classmethod
    def _check_dates(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None:
            parse_dates(value)
        return value

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value)
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
            parse_cron_duration(value)
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
            self._spec = CronSpec.parse(self.cron, self.duration)
            return
        self._spec = RuleSpec(
            days=None if self.days is None else parse_days(self.days),
            hours=None if self.hours is None else parse_hours(self.hours),
            month_days=None if self.month_days is None else parse_month_days(self.month_days),
            dates=None if self.dates is None else parse_dates(self.dates),
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
        if isinstance(spec, CronSpec) or spec.hours is None:
            return frozenset()  # a cron rule's boundaries are instants: see CronSpec.spans
        return frozenset(minute % MINUTES_PER_DAY for minute in spec.hours)

    def _can_match_between(self, first: date, last: date) -> bool:
        """Whether this rule's dates leave it any chance to match on a day in first..last."""
        spec = self._spec
        if isinstance(spec, CronSpec) or spec.dates is None:
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

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

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
        local = require_aware(at).astimezone(self.zone)
        return open_at(self._specs(self.deny), self._specs(self.allow), local)

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

    def _cron_specs(self) -> list[CronSpec]:
        return [rule._spec for rule in (*self.allow, *self.deny) if isinstance(rule._spec, CronSpec)]

    def _boundaries(self, first: date, last: date) -> list[int]:
        """Local minutes of the day at which the verdict can change on days first..last; midnight can."""
        minutes = {0}
        for rule in (*self.allow, *self.deny):
            # Last year's holiday rules would otherwise add candidates to every day we search.
            if rule._can_match_between(first, last):
                minutes |= rule._boundary_minutes()
        return sorted(minutes)


def open_at(deny: list[_Spec], allow: list[_Spec], local: datetime) -> bool:
    """The verdict alone, without naming the rule: what the search asks at every candidate instant."""
    if any(spec.matches(local) for spec in deny):
        return False
    return not allow or any(spec.matches(local) for spec in allow)


def _zone(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {key!r}") from None
