"""Deploy windows judged: whether a window is open at a moment, the rule that decides, the next change.

The windows themselves (`Window`, `WindowRule`: allow and deny rules, cron rules, time zones) are part of
the config and read there (`conveyor.config.windows`); they are re-exported here for callers that judge
them. Evaluation is pure: the clock is an argument, and `now()` is where the real (or injected) time
comes from.

    evaluation.py  evaluate(): the verdict at an instant and the next open or close
    clock.py       now(), evaluated_at() for "what if" commands, parse_at() for --at times

What callers use is imported from here.
"""

from __future__ import annotations

from conveyor.config.windows import Window, WindowRule
from conveyor.gates.windows.clock import evaluated_at, now, parse_at
from conveyor.gates.windows.evaluation import HORIZON, WindowVerdict, evaluate

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
