"""`prometheus`: an instant PromQL query, asked from the controller once for the region, whose every sample
must meet `condition` (`result < 0.01`; `< <= > >= == !=`).

A Prometheus that cannot be asked (unreachable, HTTP error, `status: error`, an answer we cannot read, a
range vector or a string) is INCONCLUSIVE, never a pass. No series follows `on_empty`; NaN follows `on_nan`
(±Inf is compared as a number). With several series each one is judged: one failing series fails the
measurement, whose value is then the worst offending value.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from conveyor.checks.base import CheckKind, Measurement, Place, Repeat, Scope, Spread, Verdict, listing, number, utcnow
from conveyor.checks.client import Fetch, ask, http_fetch, redact
from conveyor.values import http_url

__all__ = ["KIND", "PrometheusCheck", "evaluate_condition", "measure", "measure_prometheus", "parse_condition"]

Policy = Literal["fail", "pass", "inconclusive"]

_CONDITION = re.compile(r"^\s*result\s*(<=|>=|==|!=|<|>)\s*(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_condition(text: str) -> tuple[str, float]:
    """`result < 0.01` as ('<', 0.01)."""
    match = _CONDITION.match(text)
    if not match:
        raise ValueError(f"expected a condition like \"result < 0.01\" (operators < <= > >= == !=), got {text!r}")
    return match.group(1), float(match.group(2))


class PrometheusCheck(Repeat):
    """An instant PromQL query whose value must meet `condition`; an empty result or NaN follows policy.

    `$region`, `$environment`, `$release`, `$app` and `$host` in the query are replaced before it is sent.
    """

    prometheus: str
    query: str = Field(min_length=1)
    condition: str
    on_empty: Policy = "inconclusive"
    on_nan: Policy = "inconclusive"

    @field_validator("prometheus")
    @classmethod
    def _server(cls, value: str) -> str:
        return http_url(value, f"expected the Prometheus server's http:// or https:// URL, got {value!r}").rstrip("/")

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: str) -> str:
        parse_condition(value)
        return value

    def describe(self) -> str:
        """One line for plans and reports."""
        return self.name or f"prometheus {self.query} ⇒ {self.condition}"


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


async def measure_prometheus(check: PrometheusCheck, scope: Scope, *, fetch: Fetch = http_fetch,
                             now: Callable[[], datetime] = utcnow) -> Measurement:
    """Run the check's instant query and judge its value (see the module's docstring)."""
    query = scope.substitute(check.query)
    url = f"{check.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query},
                                                                         quote_via=urllib.parse.quote)

    def result(verdict: Verdict, value: float | str | None, detail: str) -> Measurement:
        return Measurement(check=check.describe(), kind="prometheus", scope=scope.describe(), value=value,
                           condition=check.condition, verdict=verdict, at=now(), detail=detail)

    document, problem = await ask(fetch, url, check.timeout, f"Prometheus at {redact(check.prometheus)}")
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
        return make(Verdict(check.on_nan), value, f"{query} is NaN; on_nan: {check.on_nan}")
    met = evaluate_condition(check.condition, value)
    verdict = Verdict.PASS if met else Verdict.FAIL
    return make(verdict, value, f"{what} {number(value)} {'meets' if met else 'fails'} {check.condition}")


def _judge_vector(check: PrometheusCheck, make: _Make, query: str,
                  series: list[tuple[str, float]]) -> Measurement:
    if not series:
        return make(Verdict(check.on_empty), None, f"{query} returned no series; on_empty: {check.on_empty}")
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
    nan_note = f"; {len(nan)} NaN (on_nan: {check.on_nan}): {listing(nan)}" if nan else ""
    if failing:
        failing.sort(key=lambda item: _badness(check.condition, item[1]), reverse=True)
        listed = listing([f"{labels}={number(value)}" for labels, value in failing])
        detail = f"{len(failing)} of {len(series)} series fail {check.condition}: {listed}"
        return make(Verdict.FAIL, failing[0][1], detail + nan_note)
    numbers = [(labels, value) for labels, value in series if not math.isnan(value)]
    if nan and check.on_nan == "inconclusive":
        return make(Verdict.INCONCLUSIVE, math.nan, f"{len(series)} series, none fails {check.condition}"
                    + nan_note)
    worst = max(numbers, key=lambda item: _badness(check.condition, item[1])) if numbers else None
    if worst is None:
        return make(Verdict(check.on_nan), math.nan, f"all {len(series)} series are NaN" + nan_note)
    detail = f"all {len(series)} series meet {check.condition}; closest to failing {worst[0]}={number(worst[1])}"
    return make(Verdict.PASS, worst[1], detail + nan_note)


async def measure(check: PrometheusCheck, at: Place) -> Measurement:
    """One query, from the controller."""
    return await measure_prometheus(check, at.scope, fetch=at.fetch, now=at.now)


def _region(check: PrometheusCheck) -> Spread:
    return "region"


KIND = CheckKind(key="prometheus", hint="URL", model=PrometheusCheck, spread=_region, measure=measure)
