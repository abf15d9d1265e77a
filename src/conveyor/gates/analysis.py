"""Analysis: watch checks over a bake period, and ask the alerts checks before a deployment starts.

Each kind of check measures itself (conveyor.checks, through its registry): region checks (Prometheus,
Alertmanager) from here, host checks (http, command) through the engine's `measure_other`. A measurement is
a value, never an exception: a Prometheus or Alertmanager that cannot be asked gives an INCONCLUSIVE
measurement that says why, so a broken monitoring stack holds a deployment for a person instead of passing
it silently. Time (monotonic clock, sleep, wall clock) and HTTP are injected, so tests run a ten-minute bake
instantly and against canned answers.

Repeat policy, as `watch` runs it for each check (all checks concurrently):
- the first measurement is taken at once, the next ones at start + k·interval (on a fixed grid: a
  measurement that overruns its interval skips the slots it missed, it neither shifts the grid nor bursts);
- with `count`, at most `count` measurements; with `duration`, only those due at or before start + duration
  (so the last one judges the end of the bake); with both, whichever ends first; with neither, one;
- the check FAILS as soon as more than `failure_limit` measurements failed, and then the whole watch stops;
- inconclusive measurements are not failures; a check that did not fail but took any inconclusive
  measurement is INCONCLUSIVE: a person must decide;
- the watch is FAIL if any check failed, else INCONCLUSIVE if any check was, else PASS.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conveyor.checks import AlertsCheck, Check, Place, Repeat, kind_of
from conveyor.checks.alerts import measure_alerts
from conveyor.checks.base import Measurement, Scope, Verdict, utcnow
from conveyor.checks.client import Fetch, http_fetch

__all__ = [
    "MIN_INTERVAL",
    "Fetch",
    "MeasureOther",
    "Measurement",
    "Scope",
    "Verdict",
    "Watch",
    "WatchResult",
    "estimate",
    "http_fetch",
    "preflight_alerts",
    "watch",
]

MeasureOther = Callable[[Check, Scope], Awaitable[Measurement]]
"""How the engine measures the checks that are measured on hosts (http, command)."""

MIN_INTERVAL = 0.1
"""The shortest interval between two measurements of a check: `interval: 0` is taken as this, so a check
with a `duration` and no `count` cannot become a busy loop."""

_EPSILON = 1e-9


async def preflight_alerts(checks: Iterable[Check], scope: Scope, *, fetch: Fetch = http_fetch,
                           now: Callable[[], datetime] = utcnow) -> list[Measurement]:
    """Measure once each alerts check with `before_start` (do not deploy into an incident), in order."""
    wanted = [c for c in checks if isinstance(c, AlertsCheck) and c.before_start]
    return list(await asyncio.gather(*(measure_alerts(c, scope, fetch=fetch, now=now) for c in wanted)))


def estimate(check: Repeat) -> float:
    """Seconds a watch of this check lasts (not counting the time measurements take): `duration`, or
    (count - 1) · interval since the first measurement is taken at once, whichever is shorter; 0 for one."""
    spans = []
    if check.duration is not None:
        spans.append(check.duration)
    if check.count is not None:
        spans.append((check.count - 1) * max(check.interval, MIN_INTERVAL))
    return min(spans) if spans else 0.0


@dataclass
class Watch:
    """One check being watched: its measurements so far and what they add up to."""

    check: Check
    measurements: list[Measurement] = field(default_factory=list)
    verdict: Verdict | None = None  # None while it runs
    stopped: bool = False  # ended early because another check failed

    @property
    def name(self) -> str:
        """The check's describe()."""
        return self.check.describe()

    @property
    def failures(self) -> int:
        """Measurements that failed."""
        return sum(m.verdict is Verdict.FAIL for m in self.measurements)

    @property
    def inconclusive(self) -> int:
        """Measurements that could not tell."""
        return sum(m.verdict is Verdict.INCONCLUSIVE for m in self.measurements)

    @property
    def failed(self) -> bool:
        """More measurements failed than `failure_limit` allows."""
        return self.failures > self.check.failure_limit

    def conclude(self) -> Verdict:
        """FAIL beyond the failure limit, else INCONCLUSIVE if any measurement was, else PASS."""
        if self.failed:
            self.verdict = Verdict.FAIL
        elif self.inconclusive:
            self.verdict = Verdict.INCONCLUSIVE
        else:
            self.verdict = Verdict.PASS
        return self.verdict

    def summary(self) -> str:
        """"3 measurements: 2 failed (limit 1), 0 inconclusive"."""
        count = len(self.measurements)
        return (f"{count} measurement{'s' if count != 1 else ''}: {self.failures} failed "
                f"(limit {self.check.failure_limit}), {self.inconclusive} inconclusive")


@dataclass
class WatchResult:
    """What watching a set of checks concluded, with every measurement taken."""

    verdict: Verdict
    measurements: list[Measurement]
    failed_checks: list[str]
    reason: str
    inconclusive_checks: list[str] = field(default_factory=list)
    skipped_checks: list[str] = field(default_factory=list)  # http/command checks with no way to measure them
    watches: list[Watch] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "verdict": str(self.verdict),
            "reason": self.reason,
            "failed_checks": self.failed_checks,
            "inconclusive_checks": self.inconclusive_checks,
            "skipped_checks": self.skipped_checks,
            "measurements": [m.to_json() for m in self.measurements],
        }


async def watch(checks: Iterable[Check], scope: Scope, *, clock: Callable[[], float],
                sleep: Callable[[float], Awaitable[None]], fetch: Fetch = http_fetch,
                measure_other: MeasureOther | None = None,
                on_measurement: Callable[[Measurement], object] | None = None,
                now: Callable[[], datetime] = utcnow) -> WatchResult:
    """Watch every check concurrently, each per its repeat policy (see the module's docstring), and stop
    all of them as soon as one fails. `on_measurement` (plain or async) gets every measurement as it is
    taken; an error it raises is not ours to hide and ends the watch."""
    watches: list[Watch] = []
    skipped: list[str] = []
    for check in checks:
        if kind_of(check).on_hosts and measure_other is None:
            skipped.append(check.describe())
        else:
            watches.append(Watch(check))
    taken: list[Measurement] = []

    async def measure(check: Check) -> Measurement:
        kind = kind_of(check)
        try:
            if kind.on_hosts:
                assert measure_other is not None
                return await measure_other(check, scope)
            return await kind.measure(check, Place(scope, fetch=fetch, now=now))
        except Exception as exc:  # a measurement that breaks is inconclusive, never a pass
            return Measurement(check=check.describe(), kind=kind.key, scope=scope.describe(), value=None,
                               condition="", verdict=Verdict.INCONCLUSIVE, at=now(),
                               detail=f"the check could not be measured: {type(exc).__name__}: {exc}")

    async def run(one: Watch) -> Watch:
        policy = one.check
        interval = max(policy.interval, MIN_INTERVAL)
        start = clock()
        limit = policy.count if policy.count is not None else (None if policy.duration is not None else 1)
        slot = 0  # measurement `slot` is due at start + slot·interval
        while limit is None or len(one.measurements) < limit:
            due = slot * interval
            if policy.duration is not None and slot and due > policy.duration + _EPSILON:
                break
            wait = start + due - clock()
            if wait > 0:
                await sleep(wait)
            measurement = await measure(policy)
            one.measurements.append(measurement)
            taken.append(measurement)
            if on_measurement is not None:
                outcome = on_measurement(measurement)
                if inspect.isawaitable(outcome):
                    await outcome
            if one.failed:
                break
            # A measurement that overran skips the slots it missed rather than catching up in a burst.
            slot = max(slot + 1, math.ceil((clock() - start) / interval - _EPSILON))
        one.conclude()
        return one

    tasks = [asyncio.ensure_future(run(one)) for one in watches]
    try:
        for finished in asyncio.as_completed(tasks):
            if (await finished).verdict is Verdict.FAIL:
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for one in watches:
        if one.verdict is None:
            one.stopped = True
            one.conclude()
    return _result(watches, taken, skipped)


def _result(watches: list[Watch], taken: list[Measurement], skipped: list[str]) -> WatchResult:
    failed = [w for w in watches if w.verdict is Verdict.FAIL]
    unsure = [w for w in watches if w.verdict is Verdict.INCONCLUSIVE]
    if failed:
        first = failed[0]
        last = next(m for m in reversed(first.measurements) if m.verdict is Verdict.FAIL)
        verdict, reason = Verdict.FAIL, (f"{first.name} failed on {last.scope} ({first.summary()}); last: "
                                         f"{last.detail}")
    elif unsure:
        first = unsure[0]
        last = next(m for m in reversed(first.measurements) if m.verdict is Verdict.INCONCLUSIVE)
        verdict, reason = Verdict.INCONCLUSIVE, (f"{first.name} was inconclusive on {last.scope} "
                                                 f"({first.summary()}), a person must decide: {last.detail}")
    elif watches:
        verdict, reason = Verdict.PASS, f"all {len(watches)} check{'s' if len(watches) != 1 else ''} passed"
    else:
        verdict, reason = Verdict.PASS, "no checks to watch"
    if skipped:
        reason += f" ({len(skipped)} http/command check{'s' if len(skipped) != 1 else ''} not measured here)"
    return WatchResult(verdict=verdict, measurements=taken, failed_checks=[w.name for w in failed], reason=reason,
                       inconclusive_checks=[w.name for w in unsure], skipped_checks=skipped, watches=watches)
