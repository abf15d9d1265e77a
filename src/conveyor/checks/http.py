"""`http`: a GET made from the host's side, on each host that moved.

It passes when the final status is `expect`, the body `contains` a text and `matches` a regular expression
(both look at its first MiB), and the answer came within `max_latency`. Redirects, https, the body limit and
timeouts follow conveyor.checks.client, the same over SSH as on a local host.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from conveyor.checks.base import CheckKind, HostSide, Measurement, Place, Repeat, Spread, Verdict
from conveyor.errors import TransportError
from conveyor.values import Duration, Int, http_url

__all__ = ["KIND", "HttpCheck", "measure", "verify"]


class HttpCheck(Repeat):
    """An HTTP GET made from the host's side: status `expect`, body `contains`/`matches`, `max_latency`."""

    http: str
    expect: Int = Field(default=200, ge=100, le=599)
    contains: str | None = None
    matches: str | None = None
    max_latency: Duration | None = None
    timeout: Duration = 5.0
    retries: Int = Field(default=3, ge=0, le=1000)
    interval: Duration = 1.0

    @field_validator("http")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value, f"expected an http:// or https:// URL, got {value!r}")

    @field_validator("matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    def describe(self) -> str:
        """One line for plans and reports."""
        text = self.name or f"GET {self.http} expects {self.expect}"
        if not self.name and self.contains:
            text += f" containing {self.contains!r}"
        return text

    @property
    def follows_redirects(self) -> bool:
        """Redirects are followed to the final answer, unless the check expects a redirect itself."""
        return not 300 <= self.expect < 400


async def _once(check: HttpCheck, host: HostSide, at: Place) -> tuple[int | None, str | None, float]:
    """One GET from the host's side: (status, what is wrong or None, latency in seconds)."""
    started = at.clock()
    try:
        status, body = await host.http_get(check.http, check.timeout, follow_redirects=check.follows_redirects)
    except TransportError as exc:
        return None, exc.message, at.clock() - started
    latency = at.clock() - started
    if status != check.expect:
        return status, f"{check.http} answered {status}, expected {check.expect}", latency
    if check.contains is not None and check.contains not in body:
        return status, f"{check.http} answered {status} without {check.contains!r}", latency
    if check.matches is not None and not re.search(check.matches, body):
        return status, f"{check.http} answered {status} not matching {check.matches!r}", latency
    if check.max_latency is not None and latency > check.max_latency:
        return status, f"{check.http} took {latency * 1000:.0f} ms (max {check.max_latency * 1000:.0f} ms)", latency
    return status, None, latency


def _reading(check: HttpCheck, at: Place, status: int | None, verdict: Verdict, detail: str) -> Measurement:
    return Measurement(check.describe(), "http", at.scope.describe(), status, f"status {check.expect}", verdict,
                       at.now(), detail)


async def measure(check: HttpCheck, at: Place) -> Measurement:
    """One GET: PASS, or FAIL saying what was wrong (INCONCLUSIVE when there is no host to ask from)."""
    if at.host is None:
        return _reading(check, at, None, Verdict.INCONCLUSIVE, "no host to measure on")
    status, problem, latency = await _once(check, at.host, at)
    verdict = Verdict.PASS if problem is None else Verdict.FAIL
    return _reading(check, at, status, verdict, problem or f"{latency * 1000:.0f} ms")


async def verify(check: HttpCheck, at: Place) -> Measurement:
    """GET until it passes, `retries` more times `interval` apart; the first pass or the last failure."""
    if at.host is None:
        return _reading(check, at, None, Verdict.INCONCLUSIVE, "no host to measure on")
    last = ""
    status: int | None = None
    for attempt in range(check.retries + 1):
        if attempt:
            await at.sleep(check.interval)
        status, problem, latency = await _once(check, at.host, at)
        if problem is None:
            return _reading(check, at, status, Verdict.PASS, f"{latency * 1000:.0f} ms")
        last = problem
    return _reading(check, at, status, Verdict.FAIL, f"check failed after {check.retries + 1} attempt(s): {last}")


def _each(check: HttpCheck) -> Spread:
    return "each"


KIND = CheckKind(key="http", hint="URL", model=HttpCheck, spread=_each, measure=measure, verify=verify)
