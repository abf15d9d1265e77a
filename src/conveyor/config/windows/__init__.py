"""Deploy windows as `conveyor.yml` writes them (`windows:`): the rule language and what a rule matches.

A window has `allow` and `deny` rules. Every field a rule gives (days, hours, month_days, dates) must
match for the rule to match; a matching deny rule closes the window whatever the allow rules say, and a
window without allow rules is open unless a deny rule matches. Rules read the local wall clock, so
"09:00-16:00" means nine to four in the window's zone on every day, summer time or not.

A rule may instead be a cron expression and a duration, the way GitLab deploy freezes and Argo CD sync
windows are written: `{cron: "0 18 * * 5", duration: 63h}` matches from each time the cron fires (on the
window's wall clock) for that long (in real time). cronsim reads the expression on the wall clock; when
the clocks change, the window's own rule applies (see `cron.CronSpec`), not Debian cron's.

    model.py       Window and WindowRule, as the config holds them: validation, verdict, description
    rules.py       the days, hours, month_days and dates fields: reading and matching them
    cron.py        cron rules: reading the expression and the duration, when firings cover an instant
    wallclock.py   a zone's wall clock against real time around clock changes

The language lives with the config because the config is made of it: a window that does not parse is a
config error with its file and line. Judging a window at a moment, and finding its next change, is the
window gate's work (`conveyor.gates.windows`).
"""

from __future__ import annotations

from conveyor.config.windows.model import Window, WindowRule

__all__ = ["Window", "WindowRule"]
