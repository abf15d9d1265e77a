"""Analysis checks: measure real signals (Prometheus, Alertmanager, and through the engine HTTP and commands)
and watch them over a bake period.

A measurement is a value, never an exception: a Prometheus or Alertmanager that cannot be asked gives an
INCONCLUSIVE measurement that says why, so a broken monitoring stack holds a deployment for a person instead
of passing it silently. Time (monotonic clock, sleep, wall clock) and HTTP are injected, so tests run a
ten-minute bake instantly and against canned answers.

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
import base64
import inspect
import ipaddress
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from http.client import HTTPException
from typing import Any, Literal

from conveyor.config.models import (
    AlertsCheck,
    Check,
    CommandCheck,
    HttpCheck,
    PrometheusCheck,
    Repeat,
    parse_condition,
)
from conveyor.errors import TransportError

__all__ = [
    "MIN_INTERVAL",
    "Fetch",
    "MeasureOther",
    "Measurement",
    "Scope",
    "Verdict",
    "Watch",
    "WatchResult",
    "alerts_url",
    "estimate",
    "evaluate_condition",
    "http_fetch",
    "kind_of",
    "measure_alerts",
    "measure_prometheus",
    "preflight_alerts",
    "watch",
]

Fetch = Callable[[str, float], Awaitable[tuple[int, bytes]]]
"""GET a URL with a timeout in seconds: (HTTP status, body). Raises TransportError when nothing answers."""

MeasureOther = Callable[[Check, "Scope"], Awaitable["Measurement"]]
"""How the engine measures checks that need a host connection (http, command)."""

Kind = Literal["prometheus", "alerts", "http", "command"]
Policy = Literal["fail", "pass", "inconclusive"]

MAX_BODY = 16 * 1024 * 1024
"""The most of an answer we read: a query result larger than this is not a signal but a mistake."""

_LISTED = 10
"""How many series or alerts a detail names before it says "and N more"."""

MIN_INTERVAL = 0.1
"""The shortest interval between two measurements of a check: `interval: 0` is taken as this, so a check
with a `duration` and no `count` cannot become a busy loop."""

_EPSILON = 1e-9


class Verdict(StrEnum):
    """What a measurement, a check or a whole watch concluded."""

    PASS = "pass"  # noqa: S105 - the signal is healthy (a verdict, not a password)
    FAIL = "fail"  # the signal says the release is bad
    INCONCLUSIVE = "inconclusive"  # no usable signal: a person must decide


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Measurement:
    """One reading of one check: what was measured where, the value, the condition, the verdict and why."""

    check: str
    kind: Kind
    scope: str
    value: float | str | None
    condition: str
    verdict: Verdict
    at: datetime
    detail: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN and ±Inf are written as Prometheus writes them: "NaN", "+Inf", "-Inf")."""
        return {
            "check": self.check,
            "kind": self.kind,
            "scope": self.scope,
            "value": _json_value(self.value),
            "condition": self.condition,
            "verdict": str(self.verdict),
            "at": self.at.astimezone(UTC).isoformat(),
            "detail": self.detail,
        }


def _json_value(value: float | str | None) -> float | str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return _number(value)
    return value


def _number(value: float) -> str:
    """A sample value the way Prometheus prints it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


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


_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def evaluate_condition(condition: str, value: float) -> bool:
    """Whether `value` meets a condition like "result < 0.01" (±Inf compare as numbers; NaN meets only !=)."""
    operator, threshold = parse_condition(condition)
    return _OPERATORS[operator](value, threshold)


def _badness(condition: str, value: float) -> float:
    """How far a failing value is from meeting the condition: the larger, the worse."""
    operator, threshold = parse_condition(condition)
    if math.isnan(value):
        return -math.inf
    if operator in {"<", "<="}:
        return value
    if operator in {">", ">="}:
        return -value
    return abs(value - threshold) if operator == "==" else 0.0


# -- HTTP -------------------------------------------------------------------------------------------


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    # Loopback never goes through a proxy the environment names: the answer must come from this machine.
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(parts.hostname) else []
    opener = urllib.request.build_opener(*handlers)
    headers = {"Accept": "application/json"}
    if parts.username is not None or parts.password is not None:
        # urllib does not send https://user:password@host/ credentials by itself.
        user = urllib.parse.unquote(parts.username or "")
        secret = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
        url = _redact(url)
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only, checked by http_fetch
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), response.read(MAX_BODY)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read(MAX_BODY)
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TransportError(f"GET {_redact(url)}: {reason or type(exc).__name__}") from exc


async def http_fetch(url: str, timeout: float) -> tuple[int, bytes]:
    """GET `url` (urllib, in a thread): (status, body), also for HTTP error statuses; TransportError when
    the server cannot be reached or does not answer within `timeout` seconds."""
    if urllib.parse.urlsplit(url).scheme not in {"http", "https"}:
        raise TransportError(f"GET {_redact(url)}: only http:// and https:// URLs are fetched")
    return await asyncio.to_thread(_get, url, timeout)


def _redact(url: str) -> str:
    """A URL without any user:password part, fit for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


async def _ask(fetch: Fetch, url: str, timeout: float, what: str) -> tuple[Any, str | None]:
    """GET and decode JSON: (document, None), or (None, why it could not be asked) — never an exception."""
    try:
        # An injected fetch may not honour the timeout; we do, with a little slack for the server's own.
        status, body = await asyncio.wait_for(fetch(url, timeout), timeout + min(timeout, 1.0))
    except TransportError as exc:
        return None, f"{what} cannot be asked: {exc.message}"
    except TimeoutError:
        return None, f"{what} cannot be asked: no answer to GET {_redact(url)} within {timeout:g}s"
    except OSError as exc:
        return None, f"{what} cannot be asked: GET {_redact(url)}: {exc}"
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if status != 200:
        error = document.get("error") if isinstance(document, dict) else None
        text = str(error) if error else body[:200].decode("utf-8", "replace").strip()
        return None, f"{what} answered HTTP {status}" + (f": {text}" if text else "")
    if document is None:
        return None, f"{what} answered something that is not JSON: {body[:120].decode('utf-8', 'replace')!r}"
    return document, None


# -- Prometheus -------------------------------------------------------------------------------------


def _labels(metric: Any) -> str:
    """A series' labels as PromQL writes them: name{a="x", b="y"}."""
    if not isinstance(metric, dict):
        return "{}"
    name = str(metric.get("__name__", ""))
    pairs = ", ".join(f"{k}={json.dumps(str(v))}" for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{pairs}}}"


def _sample(pair: Any) -> float:
    """The value of a [timestamp, "value"] pair."""
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise ValueError(f"expected [timestamp, value], got {pair!r}")
    return float(pair[1])


def _policy(policy: Policy) -> Verdict:
    return Verdict(policy)


async def measure_prometheus(check: PrometheusCheck, scope: Scope, *, fetch: Fetch = http_fetch,
                             now: Callable[[], datetime] = _utcnow) -> Measurement:
    """Run the check's instant query and judge its value.

    A Prometheus that cannot be asked (unreachable, HTTP error, `status: error`, an answer we cannot read,
    a range vector or string) is INCONCLUSIVE. No series follows `on_empty`; NaN follows `on_nan` (±Inf is
    compared as a number). With several series each one is judged: one failing series fails the
    measurement, whose value is then the worst offending value.
    """
    query = scope.substitute(check.query)
    url = f"{check.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query},
                                                                         quote_via=urllib.parse.quote)

    def result(verdict: Verdict, value: float | str | None, detail: str) -> Measurement:
        return Measurement(check=check.describe(), kind="prometheus", scope=scope.describe(), value=value,
                           condition=check.condition, verdict=verdict, at=now(), detail=detail)

    document, problem = await _ask(fetch, url, check.timeout, f"Prometheus at {_redact(check.prometheus)}")
    if problem is not None:
        return result(Verdict.INCONCLUSIVE, None, problem)
    if not isinstance(document, dict) or document.get("status") != "success":
        error = document.get("error") if isinstance(document, dict) else None
        kind = document.get("errorType") if isinstance(document, dict) else None
        why = f"{kind}: {error}" if kind and error else str(error or "no status: success in its answer")
        return result(Verdict.INCONCLUSIVE, None, f"Prometheus refused the query {query!r}: {why}")
    data = document.get("data")
    result_type = data.get("resultType") if isinstance(data, dict) else None
    raw = data.get("result") if isinstance(data, dict) else None
    try:
        if result_type == "scalar":
            return _judge_one(check, result, query, _sample(raw), "scalar")
        if result_type == "vector" and isinstance(raw, list):
            series = [(_labels(item.get("metric")), _sample(item.get("value"))) for item in raw
                      if isinstance(item, dict)]
            return _judge_vector(check, result, query, series)
    except (TypeError, ValueError) as exc:
        return result(Verdict.INCONCLUSIVE, None, f"Prometheus answered a {result_type} we cannot read: {exc}")
    return result(Verdict.INCONCLUSIVE, None,
                  f"the query {query!r} gave a {result_type or 'missing'} result; a check needs an instant "
                  "vector or a scalar")


_Make = Callable[[Verdict, float | str | None, str], Measurement]


def _judge_one(check: PrometheusCheck, make: _Make, query: str, value: float, what: str) -> Measurement:
    if math.isnan(value):
        return make(_policy(check.on_nan), value, f"{query} is NaN; on_nan: {check.on_nan}")
    met = evaluate_condition(check.condition, value)
    verdict = Verdict.PASS if met else Verdict.FAIL
    return make(verdict, value, f"{what} {_number(value)} {'meets' if met else 'fails'} {check.condition}")


def _judge_vector(check: PrometheusCheck, make: _Make, query: str,
                  series: list[tuple[str, float]]) -> Measurement:
    if not series:
        return make(_policy(check.on_empty), None, f"{query} returned no series; on_empty: {check.on_empty}")
    if len(series) == 1:
        labels, value = series[0]
        return _judge_one(check, make, query, value, labels)
    failing: list[tuple[str, float]] = []
    nan: list[str] = []
    for labels, value in series:
        if math.isnan(value):
            nan.append(labels)
            if check.on_nan == "fail":
                failing.append((labels, value))
        elif not evaluate_condition(check.condition, value):
            failing.append((labels, value))
    nan_note = f"; {len(nan)} NaN (on_nan: {check.on_nan}): {_listing(nan)}" if nan else ""
    if failing:
        failing.sort(key=lambda item: _badness(check.condition, item[1]), reverse=True)
        listed = _listing([f"{labels}={_number(value)}" for labels, value in failing])
        detail = f"{len(failing)} of {len(series)} series fail {check.condition}: {listed}"
        return make(Verdict.FAIL, failing[0][1], detail + nan_note)
    numbers = [(labels, value) for labels, value in series if not math.isnan(value)]
    if nan and check.on_nan == "inconclusive":
        return make(Verdict.INCONCLUSIVE, math.nan, f"{len(series)} series, none fails {check.condition}"
                    + nan_note)
    worst = max(numbers, key=lambda item: _badness(check.condition, item[1])) if numbers else None
    if worst is None:
        return make(_policy(check.on_nan), math.nan, f"all {len(series)} series are NaN" + nan_note)
    detail = f"all {len(series)} series meet {check.condition}; closest to failing {worst[0]}={_number(worst[1])}"
    return make(Verdict.PASS, worst[1], detail + nan_note)


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


# -- Alertmanager -----------------------------------------------------------------------------------


def _matcher(name: str, value: str) -> str:
    """label="value" in Alertmanager's matcher syntax (quotes and backslashes escaped)."""
    return f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def alerts_url(check: AlertsCheck, scope: Scope) -> str:
    """The Alertmanager v2 query for active, unsilenced, uninhibited alerts matching the check's labels."""
    params = [("active", "true"), ("silenced", "false"), ("inhibited", "false")]
    params += [("filter", _matcher(name, scope.substitute(value))) for name, value in check.matchers.items()]
    return f"{check.alerts}/api/v2/alerts?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


async def measure_alerts(check: AlertsCheck, scope: Scope, *, fetch: Fetch = http_fetch,
                         now: Callable[[], datetime] = _utcnow) -> Measurement:
    """FAIL if Alertmanager has an active (not silenced, not inhibited) alert matching the check's labels,
    naming each; PASS if none; INCONCLUSIVE if Alertmanager cannot be asked. The value is the count."""
    matchers = {name: scope.substitute(value) for name, value in check.matchers.items()}
    wanted = ", ".join(_matcher(k, v) for k, v in matchers.items())
    condition = f"no active alert matching {{{wanted}}}" if wanted else "no active alert"

    def result(verdict: Verdict, value: float | None, detail: str) -> Measurement:
        return Measurement(check=check.describe(), kind="alerts", scope=scope.describe(), value=value,
                           condition=condition, verdict=verdict, at=now(), detail=detail)

    document, problem = await _ask(fetch, alerts_url(check, scope), check.timeout,
                                   f"Alertmanager at {_redact(check.alerts)}")
    if problem is not None:
        return result(Verdict.INCONCLUSIVE, None, problem)
    if not isinstance(document, list):
        return result(Verdict.INCONCLUSIVE, None, "Alertmanager answered something that is not a list of alerts")
    # Alertmanager filters already; checking again guards against a server that ignores `filter`.
    alerts = [a for a in document if isinstance(a, dict) and _matches(a.get("labels"), matchers)]
    if not alerts:
        return result(Verdict.PASS, 0.0, "no active alert" + (f" matches {{{wanted}}}" if wanted else ""))
    names = sorted(_alert_name(a.get("labels")) for a in alerts)
    noun = "alert" if len(alerts) == 1 else "alerts"
    return result(Verdict.FAIL, float(len(alerts)), f"{len(alerts)} active {noun}: {_listing(names)}")


def _matches(labels: Any, matchers: dict[str, str]) -> bool:
    if not isinstance(labels, dict):
        return not matchers
    return all(str(labels.get(name, "")) == value for name, value in matchers.items())


def _alert_name(labels: Any) -> str:
    """HighErrorRate{region="za", severity="page"}."""
    if not isinstance(labels, dict):
        return "(an alert without labels)"
    rest = ", ".join(f"{k}={json.dumps(str(v))}" for k, v in sorted(labels.items()) if k != "alertname")
    return f"{labels.get('alertname', '(no alertname)')}{{{rest}}}"


async def preflight_alerts(checks: Iterable[Check], scope: Scope, *, fetch: Fetch = http_fetch,
                           now: Callable[[], datetime] = _utcnow) -> list[Measurement]:
    """Measure once each alerts check with `before_start` (do not deploy into an incident), in order."""
    wanted = [c for c in checks if isinstance(c, AlertsCheck) and c.before_start]
    return list(await asyncio.gather(*(measure_alerts(c, scope, fetch=fetch, now=now) for c in wanted)))


# -- watching ---------------------------------------------------------------------------------------


def kind_of(check: Check) -> Kind:
    """"prometheus", "alerts", "http" or "command"."""
    if isinstance(check, PrometheusCheck):
        return "prometheus"
    if isinstance(check, AlertsCheck):
        return "alerts"
    if isinstance(check, HttpCheck):
        return "http"
    return "command"


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
                now: Callable[[], datetime] = _utcnow) -> WatchResult:
    """Watch every check concurrently, each per its repeat policy (see the module's docstring), and stop
    all of them as soon as one fails. `on_measurement` (plain or async) gets every measurement as it is
    taken; an error it raises is not ours to hide and ends the watch."""
    watches: list[Watch] = []
    skipped: list[str] = []
    for check in checks:
        if isinstance(check, HttpCheck | CommandCheck) and measure_other is None:
            skipped.append(check.describe())
        else:
            watches.append(Watch(check))
    taken: list[Measurement] = []

    async def measure(check: Check) -> Measurement:
        try:
            if isinstance(check, PrometheusCheck):
                return await measure_prometheus(check, scope, fetch=fetch, now=now)
            if isinstance(check, AlertsCheck):
                return await measure_alerts(check, scope, fetch=fetch, now=now)
            assert measure_other is not None
            return await measure_other(check, scope)
        except Exception as exc:  # a measurement that breaks is inconclusive, never a pass
            return Measurement(check=check.describe(), kind=kind_of(check), scope=scope.describe(), value=None,
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
