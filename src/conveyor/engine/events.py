"""Events the engine reports, and the bus that hands them to subscribers.

Each event is a frozen dataclass: subscribers `match` on its type, and mypy checks every field they read, so
a misspelt event or field is an error, not a message silently dropped. `kind` names each one (the name used
in logs and in the state store).

A subscriber that fails is reported (as a `Warning` event to the others, and on stderr when nobody shows
warnings) and never fails the deployment (notifications, annotations, metrics, the display), except a
required one: the state store's recorder. The ledger is not optional: when a required subscriber fails, the
bus keeps the failure in `failure` and the engine stops before the next host changes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from conveyor.engine.plan import Plan
    from conveyor.engine.results import DeploymentResult, HostOutcome
    from conveyor.gates.analysis import Measurement


@dataclass(frozen=True)
class Event:
    """Something that happened during a deployment."""

    kind: ClassVar[str] = "event"


# -- the deployment -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentStarted(Event):
    """A deployment holds its environment's lock and is about to move hosts."""

    kind: ClassVar[str] = "deployment_started"
    id: int
    environment: str
    deployment_kind: str  # deploy | rollback | converge
    release: str | None
    plan: Plan
    user: str
    reason: str | None = None
    overrides: Sequence[str] = ()


@dataclass(frozen=True)
class DeploymentBlocked(Event):
    """A gate or a lock held a deployment before anything changed."""

    kind: ClassVar[str] = "deployment_blocked"
    id: int
    environment: str
    deployment_kind: str
    release: str | None
    regions: Sequence[str]
    user: str
    reason: str


@dataclass(frozen=True)
class BreakGlass(Event):
    """A deployment goes through a closed window, with the reason a person gave."""

    kind: ClassVar[str] = "break_glass"
    id: int
    environment: str
    deployment_kind: str
    release: str | None
    user: str
    reason: str | None


@dataclass(frozen=True)
class LockTakenOver(Event):
    """A dead holder's lock was taken over (its deployment marked interrupted)."""

    kind: ClassVar[str] = "lock_taken_over"
    environment: str
    previous: str
    interrupted: int | None


@dataclass(frozen=True)
class DeploymentFinished(Event):
    """The deployment ended, however it ended: every host's outcome is in `result`."""

    kind: ClassVar[str] = "deployment_finished"
    result: DeploymentResult


# -- waves, bakes and measurements --------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveStarted(Event):
    kind: ClassVar[str] = "wave_started"
    wave: int
    regions: Sequence[str]


@dataclass(frozen=True)
class WaveFinished(Event):
    """A wave is done, its bake included."""

    kind: ClassVar[str] = "wave_finished"
    wave: int
    failed: Sequence[str]


@dataclass(frozen=True)
class WaveHeld(Event):
    """A wave did not start (its window closed): the deployment waits for a person."""

    kind: ClassVar[str] = "wave_held"
    wave: int
    reason: str


@dataclass(frozen=True)
class BakeStarted(Event):
    kind: ClassVar[str] = "bake_started"
    wave: int
    regions: Sequence[str]
    seconds: float


@dataclass(frozen=True)
class BakeFinished(Event):
    kind: ClassVar[str] = "bake_finished"
    wave: int
    verdicts: dict[str, str]  # region → pass | fail | inconclusive | interrupted


@dataclass(frozen=True)
class CanaryBakeStarted(Event):
    kind: ClassVar[str] = "canary_bake_started"
    region: str
    role: str
    hosts: Sequence[str]
    seconds: float


@dataclass(frozen=True)
class CanaryBakeFinished(Event):
    kind: ClassVar[str] = "canary_bake_finished"
    region: str
    role: str
    verdict: str
    reason: str


@dataclass(frozen=True)
class Measured(Event):
    """One reading of one check, in a phase (verify, canary_bake, bake)."""

    kind: ClassVar[str] = "measurement"
    phase: str
    measurement: Measurement


# -- regions, batches and hosts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionStarted(Event):
    kind: ClassVar[str] = "region_started"
    region: str
    release: str | None
    hosts: int


@dataclass(frozen=True)
class RegionFinished(Event):
    kind: ClassVar[str] = "region_finished"
    region: str
    status: str
    message: str | None = None
    duration: float = 0.0
    release: str | None = None  # set when the region succeeded: what its pointer now names


@dataclass(frozen=True)
class RegionRollingBack(Event):
    kind: ClassVar[str] = "region_rolling_back"
    region: str
    hosts: Sequence[str]


@dataclass(frozen=True)
class MigrationsStarted(Event):
    kind: ClassVar[str] = "migrations_started"
    region: str
    release: str | None


@dataclass(frozen=True)
class MigrationsFinished(Event):
    kind: ClassVar[str] = "migrations_finished"
    region: str
    release: str | None
    problem: str | None


@dataclass(frozen=True)
class BatchStarted(Event):
    kind: ClassVar[str] = "batch_started"
    region: str
    role: str
    batch: int
    canary: bool
    hosts: Sequence[str]


@dataclass(frozen=True)
class HostsJoined(Event):
    """Hosts appeared in a region's inventory while it moved: they are caught up."""

    kind: ClassVar[str] = "hosts_joined"
    region: str
    hosts: Sequence[str]


@dataclass(frozen=True)
class HostStarted(Event):
    kind: ClassVar[str] = "host_started"
    host: str
    region: str
    role: str


@dataclass(frozen=True)
class HostStep(Event):
    kind: ClassVar[str] = "host_step"
    host: str
    region: str
    step: str


@dataclass(frozen=True)
class HostReverting(Event):
    kind: ClassVar[str] = "host_reverting"
    host: str
    region: str
    to: str | None


@dataclass(frozen=True)
class HostFinished(Event):
    """A host is done (or was switched back, or left): its outcome."""

    kind: ClassVar[str] = "host_finished"
    outcome: HostOutcome


# -- warnings -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Warning(Event):
    """Something a person should know that does not stop the deployment (a subscriber that failed, an
    inventory that could not be read again). The display prints it, masked, once."""

    kind: ClassVar[str] = "warning"
    source: str
    message: str


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


@dataclass
class EventBus:
    """Delivers events to subscribers in order; a failing subscriber is reported, never fatal, unless it
    is required: then its first failure is kept in `failure`, it is called no more, and whoever runs the
    deployment stops it."""

    subscribers: list[Subscriber] = field(default_factory=list)
    on_error: Callable[[Subscriber, Exception], None] | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    failure: Exception | None = None  # the first failure of a required subscriber
    _required: list[Subscriber] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.subscribers = list(self.subscribers)

    def subscribe(self, subscriber: Subscriber, *, required: bool = False) -> None:
        """Add a subscriber; a `required` one cannot fail without stopping the deployment."""
        self.subscribers.append(subscriber)
        if required:
            self._required.append(subscriber)

    def emit(self, event: Event, /) -> None:
        """Hand an event to every subscriber (a required one that failed is skipped)."""
        for subscriber in list(self.subscribers):
            required = False
            for candidate in self._required:  # by identity: two equal subscribers are still two
                if candidate is subscriber:
                    required = True
                    break
            if required and self.failure is not None:
                continue
            try:
                subscriber(event)
            except Exception as exc:
                if required:
                    self.failure = exc
                    continue
                self.errors.append((subscriber_name(subscriber), str(exc)))
                if self.on_error is not None:
                    self.on_error(subscriber, exc)
                elif not isinstance(event, Warning):
                    self.warn(subscriber_name(subscriber), f"{subscriber_name(subscriber)} failed: {exc}")

    def warn(self, source: str, message: str) -> None:
        """Tell the subscribers (the display prints it); on stderr if none of them shows warnings."""
        warning = Warning(source, message)
        shown = False
        for subscriber in list(self.subscribers):
            if getattr(subscriber, "shows_warnings", False):
                try:
                    subscriber(warning)
                    shown = True
                except Exception:  # noqa: S112 - a display that fails cannot show its own failure
                    continue
        if not shown:
            from conveyor.secrets import mask

            print(f"conveyor: warning: {mask(message)}", file=sys.stderr)


def describe(event: Event) -> dict[str, Any]:
    """An event as plain data (for logs and tests): its kind and its fields."""
    from dataclasses import fields

    return {"kind": event.kind, **{f.name: getattr(event, f.name) for f in fields(event)}}
