"""Events the engine reports, and the bus that hands them to subscribers that cannot break it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """Something that happened during a deployment: `kind` plus plain data."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]
"""Anything called with each event: a function, or an object with __call__."""


class EventBus:
    """Delivers events to subscribers in order; a failing subscriber is reported, never fatal."""

    def __init__(self, subscribers: Sequence[Subscriber] | None = None,
                 on_error: Callable[[Subscriber, Exception], None] | None = None) -> None:
        self.subscribers: list[Subscriber] = list(subscribers or [])
        self.on_error = on_error or _report
        self.errors: list[tuple[str, str]] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add a subscriber."""
        self.subscribers.append(subscriber)

    def emit(self, kind: str, /, **data: Any) -> None:
        """Hand an event to every subscriber."""
        event = Event(kind, data)
        for subscriber in self.subscribers:
            try:
                subscriber(event)
            except Exception as exc:
                self.errors.append((getattr(subscriber, "__qualname__", repr(subscriber)), str(exc)))
                self.on_error(subscriber, exc)


def _report(subscriber: Subscriber, exc: Exception) -> None:
    name = getattr(subscriber, "__qualname__", repr(subscriber))
    print(f"conveyor: warning: {name} failed: {exc}", file=sys.stderr)
