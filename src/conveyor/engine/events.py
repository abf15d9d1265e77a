"""Events the engine reports, and the bus that hands them to subscribers.

A subscriber that fails is reported and never fails the deployment (notifications, annotations, metrics,
the display), except a required one: the state store's recorder. The ledger is not optional: when a
required subscriber fails, the bus keeps the failure in `failure` and the engine stops before the next host
changes.
"""

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
"""Anything called with each event: a function, or an object with __call__ (and, best, a `name`)."""


def subscriber_name(subscriber: Subscriber) -> str:
    """What a subscriber is called in messages: its `name`, its function's name, or its class's (never a
    repr with an address in it)."""
    name = getattr(subscriber, "name", None)
    if isinstance(name, str) and name:
        return name
    qualname = getattr(subscriber, "__qualname__", None)
    if isinstance(qualname, str) and qualname:
        return qualname
    return type(subscriber).__name__


class EventBus:
    """Delivers events to subscribers in order; a failing subscriber is reported, never fatal, unless it
    is required: then its first failure is kept in `failure`, it is called no more, and whoever runs the
    deployment stops it."""

    def __init__(self, subscribers: Sequence[Subscriber] | None = None,
                 on_error: Callable[[Subscriber, Exception], None] | None = None) -> None:
        self.subscribers: list[Subscriber] = list(subscribers or [])
        self.on_error = on_error or _report
        self.errors: list[tuple[str, str]] = []
        self.failure: Exception | None = None  # the first failure of a required subscriber
        self._required: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber, *, required: bool = False) -> None:
        """Add a subscriber; a `required` one cannot fail without stopping the deployment."""
        self.subscribers.append(subscriber)
        if required:
            self._required.append(subscriber)

    def emit(self, kind: str, /, **data: Any) -> None:
        """Hand an event to every subscriber (a required one that failed is skipped)."""
        event = Event(kind, data)
        for subscriber in self.subscribers:
            required = any(subscriber is r for r in self._required)
            if required and self.failure is not None:
                continue
            try:
                subscriber(event)
            except Exception as exc:
                if required:
                    self.failure = exc
                    continue
                self.errors.append((subscriber_name(subscriber), str(exc)))
                self.on_error(subscriber, exc)


def _report(subscriber: Subscriber, exc: Exception) -> None:
    print(f"conveyor: warning: {subscriber_name(subscriber)} failed: {exc}", file=sys.stderr)
