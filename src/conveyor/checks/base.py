"""What every check kind shares: how a check repeats, what a measurement is, where it is measured, and the
shape of a kind (`CheckKind`) as the registry lists it."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from conveyor.checks.client import Fetch, http_fetch
from conveyor.values import Duration, Int

__all__ = [
    "CheckKind",
    "HostSide",
    "Measurement",
    "Place",
    "Ran",
    "Repeat",
    "Scope",
    "Spread",
    "Verdict",
    "listing",
    "number",
    "utcnow",
]


class Repeat(BaseModel):
    """How a check repeats while it watches (bake, canary bake): every `interval`, `count` times or for
    `duration`, failing once more than `failure_limit` measurements fail."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    interval: Duration = 10.0
    count: Int | None = Field(default=None, ge=1, le=100000)
    duration: Duration | None = None
    failure_limit: Int = Field(default=0, ge=0, le=100000)
    timeout: Duration = 10.0
    name: str | None = None

    def describe(self) -> str:
        """One line for plans and reports (each kind says its own)."""
        return self.name or type(self).__name__


class Verdict(StrEnum):
    """What a measurement, a check or a whole watch concluded."""

    PASS = "pass"  # noqa: S105 - the signal is healthy (a verdict, not a password)
    FAIL = "fail"  # the signal says the release is bad
    INCONCLUSIVE = "inconclusive"  # no usable signal: a person must decide


def utcnow() -> datetime:
    """The wall clock, for when a measurement was taken."""
    return datetime.now(UTC)


def number(value: float) -> str:
    """A sample value the way Prometheus prints it (NaN, +Inf, -Inf, 1, 0.25)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


_LISTED = 10
"""How many series or alerts a detail names before it says "and N more"."""


def listing(items: Sequence[str]) -> str:
    """The first few items, comma-separated, and how many more there are."""
    shown = ", ".join(items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


@dataclass(frozen=True)
class Measurement:
    """One reading of one check: what was measured where, the value, the condition, the verdict and why."""

    check: str
    kind: str  # the kind's key: http, command, prometheus, alerts
    scope: str
    value: float | str | None
    condition: str
    verdict: Verdict
    at: datetime
    detail: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN and ±Inf are written as Prometheus writes them: "NaN", "+Inf", "-Inf")."""
        value = self.value
        return {
            "check": self.check,
            "kind": self.kind,
            "scope": self.scope,
            "value": number(value) if isinstance(value, float) and not math.isfinite(value) else value,
            "condition": self.condition,
            "verdict": str(self.verdict),
            "at": self.at.astimezone(UTC).isoformat(),
            "detail": self.detail,
        }


_VARIABLE = re.compile(r"\$(?:(\$)|(environment|release|region|host|app)(?![A-Za-z0-9_]))")
"""`$name` (longest names first, and only as a whole word: `$regions` is not `$region`), or `$$`."""


@dataclass(frozen=True)
class Scope:
    """Where checks are measured: the app, environment, region, release and (for host checks) host."""

    app: str
    environment: str
    region: str | None = None
    release: str | None = None
    host: str | None = None

    def substitute(self, text: str) -> str:
        """`text` with `$region`, `$environment`, `$release`, `$app`, `$host` replaced (a missing value is
        empty) and `$$` as a literal `$`; any other `$` is left as it is."""
        values = {"app": self.app, "environment": self.environment, "region": self.region,
                  "release": self.release, "host": self.host}

        def replace(match: re.Match[str]) -> str:
            return "$" if match.group(1) else values[match.group(2)] or ""

        return _VARIABLE.sub(replace, text)

    def describe(self) -> str:
        """"host za-web-1", "region za" or "environment production": the narrowest thing measured."""
        if self.host:
            return f"host {self.host}"
        if self.region:
            return f"region {self.region}"
        return f"environment {self.environment}"


class Ran(Protocol):
    """What a command did on a host."""

    @property
    def exit_code(self) -> int:
        """Its exit code (124 when it timed out)."""
        ...

    @property
    def output(self) -> str:
        """What it printed, stdout and stderr together (the engine's own marker lines left out)."""
        ...

    @property
    def timed_out(self) -> bool:
        """Whether it was stopped at its timeout."""
        ...


class HostSide(Protocol):
    """A host as its checks reach it; the engine provides it, over the host's connection."""

    async def run(self, command: str, *, retries: int, interval: float, timeout: float) -> Ran:
        """Run `command` on the host in the release's directory with the CONVEYOR_* variables set, again up to
        `retries` times `interval` apart until it exits 0, all within `timeout`; never raise for an exit code."""
        ...

    async def http_get(self, url: str, timeout: float, *, follow_redirects: bool = True) -> tuple[int, str]:
        """GET `url` from the host's side (the policy of conveyor.checks.client); (status, body). Raise
        TransportError when nothing answers."""
        ...


@dataclass(frozen=True)
class Place:
    """Where a check is measured: its scope, the host when a host measures it (None: the controller does),
    and the controller's HTTP and clocks, injected so that tests run on canned answers and virtual time."""

    scope: Scope
    host: HostSide | None = None
    fetch: Fetch = http_fetch
    now: Callable[[], datetime] = utcnow
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)


Spread = Literal["each", "one", "region"]
"""Where a bake measures a check: on each host that moved, on one of them, or once for the whole region."""

C = TypeVar("C", bound=Repeat)


@dataclass(frozen=True)
class CheckKind(Generic[C]):
    """A kind of check as the registry (conveyor.checks) lists it. A kind's module holds its model and its
    measuring, and ends with one of these; adding a kind is that module and one line in the registry."""

    key: str  # what names it in conveyor.yml (`http: URL`), and Measurement.kind
    hint: str  # what the key's value is, for messages: URL, TEXT
    model: type[C]
    spread: Callable[[C], Spread]
    measure: Callable[[C, Place], Awaitable[Measurement]]  # one reading
    # After a host's restart, on that host, its retries included (the last reading): host checks only.
    verify: Callable[[C, Place], Awaitable[Measurement]] | None = None

    @property
    def on_hosts(self) -> bool:
        """Whether it is measured on hosts, through the engine's connections (else from the controller)."""
        return self.verify is not None
