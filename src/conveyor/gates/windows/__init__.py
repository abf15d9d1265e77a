"""Deploy windows: when an environment may be deployed to, in a named time zone's wall-clock time.

A window has `allow` and `deny` rules. Every field a rule gives (days, hours, month_days, dates) must
match for the rule to match; a matching deny rule closes the window whatever the allow rules say, and a
window without allow rules is open unless a deny rule matches. Rules read the local wall clock, so
"09:00-16:00" means nine to four in the window's zone on every day, summer time or not.

A rule may instead be a cron expression and a duration, the way GitLab deploy freezes and Argo CD sync
windows are written: `{cron: "0 18 * * 5", duration: 63h}` matches from each time the cron fires (on the
window's wall clock) for that long (in real time). cronsim reads the expression on the wall clock; when
the clocks change, the window's own rule applies (see `cron.CronSpec`), not Debian cron's.

Evaluation is pure: the clock is an argument, and `now()` is where the real (or injected) time comes from.

    model.py       Window and WindowRule, as the config holds them: validation, verdict, description
    rules.py       the days, hours, month_days and dates fields: reading and matching them
    cron.py        cron rules: reading the expression and the duration, when firings cover an instant
    wallclock.py   a zone's wall clock against real time around clock changes
    evaluation.py  evaluate(): the verdict at an instant and the next open or close
    clock.py       now(), evaluated_at() for "what if" commands, parse_at() for --at times

What callers use is imported from here.
"""

from __future__ import annotations

from conveyor.gates.windows.clock import evaluated_at, now, parse_at
from conveyor.gates.windows.evaluation import HORIZON, WindowVerdict, evaluate
from conveyor.gates.windows.model import Window, WindowRule

__all__ = [
    "HORIZON",
    "Window",
    "WindowRule",
    "WindowVerdict",
    "evaluate",
    "evaluated_at",
    "now",
    "parse_at",
]
