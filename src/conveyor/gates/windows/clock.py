"""The moment windows are judged at: the real clock, a "what if" moment for read-only commands, and the
`--at` times people type.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, tzinfo

from conveyor.config.windows.wallclock import to_instant


def parse_at(text: str, default_tz: tzinfo) -> datetime:
    """An aware time from ISO 8601 ("2026-03-29T01:30:00Z", "...+01:00", or naive in `default_tz`)."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a time like 2026-03-29T09:30 or 2026-03-29T09:30:00+01:00, got {text!r}"
        ) from None
    if parsed.tzinfo is not None:
        return parsed
    return to_instant(parsed, default_tz)


_AT: ContextVar[datetime | None] = ContextVar("conveyor_windows_at", default=None)


@contextmanager
def evaluated_at(moment: datetime) -> Iterator[None]:
    """Judge windows at `moment` instead of now, inside this block: for the read-only commands that ask
    "what if" (`plan --at`, `windows --at`). Nothing that changes a host runs under it."""
    token = _AT.set(moment)
    try:
        yield
    finally:
        _AT.reset(token)


def now() -> datetime:
    """The current time. No environment variable moves it: a deploy judges its windows by the real clock
    (a clock set from outside would open a closed window with no audit)."""
    return _AT.get() or datetime.now(UTC)
