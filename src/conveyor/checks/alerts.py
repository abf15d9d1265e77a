"""`alerts`: no active Alertmanager alert matches the check's labels (values may use `$region`...), asked
from the controller once for the region.

FAIL names each active (not silenced, not inhibited) alert that matches; PASS when none does; INCONCLUSIVE
when Alertmanager cannot be asked. The value is the number of alerts. With `before_start` (the default) it
is also asked once before a deployment starts (gates/analysis.py: `preflight_alerts`).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from conveyor.checks.base import CheckKind, Measurement, Place, Repeat, Scope, Spread, Verdict, listing, utcnow
from conveyor.checks.client import Fetch, ask, http_fetch, redact
from conveyor.values import http_url

__all__ = ["KIND", "AlertsCheck", "alerts_url", "measure", "measure_alerts"]


class AlertsCheck(Repeat):
    """No active Alertmanager alert matches these labels (values may use `$region`, `$environment`...)."""

    alerts: str
    matchers: dict[str, str] = Field(default_factory=dict)
    before_start: bool = True

    @field_validator("alerts")
    @classmethod
    def _server(cls, value: str) -> str:
        return http_url(value, f"expected the Alertmanager's http:// or https:// URL, got {value!r}").rstrip("/")

    def describe(self) -> str:
        """One line for plans and reports."""
        labels = ",".join(f"{k}={v}" for k, v in self.matchers.items())
        return self.name or f"no active alert{' matching ' + labels if labels else ''}"


def _matcher(name: str, value: str) -> str:
    """label="value" in Alertmanager's matcher syntax (quotes and backslashes escaped)."""
    return f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def alerts_url(check: AlertsCheck, scope: Scope) -> str:
    """The Alertmanager v2 query for active, unsilenced, uninhibited alerts matching the check's labels."""
    params = [("active", "true"), ("silenced", "false"), ("inhibited", "false")]
    params += [("filter", _matcher(name, scope.substitute(value))) for name, value in check.matchers.items()]
    return f"{check.alerts}/api/v2/alerts?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


async def measure_alerts(check: AlertsCheck, scope: Scope, *, fetch: Fetch = http_fetch,
                         now: Callable[[], datetime] = utcnow) -> Measurement:
    """FAIL if Alertmanager has an active (not silenced, not inhibited) alert matching the check's labels,
    naming each; PASS if none; INCONCLUSIVE if Alertmanager cannot be asked. The value is the count."""
    matchers = {name: scope.substitute(value) for name, value in check.matchers.items()}
    wanted = ", ".join(_matcher(k, v) for k, v in matchers.items())
    condition = f"no active alert matching {{{wanted}}}" if wanted else "no active alert"

    def result(verdict: Verdict, value: float | None, detail: str) -> Measurement:
        return Measurement(check=check.describe(), kind="alerts", scope=scope.describe(), value=value,
                           condition=condition, verdict=verdict, at=now(), detail=detail)

    document, problem = await ask(fetch, alerts_url(check, scope), check.timeout,
                                  f"Alertmanager at {redact(check.alerts)}")
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
    return result(Verdict.FAIL, float(len(alerts)), f"{len(alerts)} active {noun}: {listing(names)}")


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


async def measure(check: AlertsCheck, at: Place) -> Measurement:
    """One question to Alertmanager, from the controller."""
    return await measure_alerts(check, at.scope, fetch=at.fetch, now=at.now)


def _region(check: AlertsCheck) -> Spread:
    return "region"


KIND = CheckKind(key="alerts", hint="URL", model=AlertsCheck, spread=_region, measure=measure)
