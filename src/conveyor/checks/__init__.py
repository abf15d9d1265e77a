"""Checks as plug-ins: one module per kind, and the registry of kinds.

- base.py: what kinds share: `Repeat` (interval, count, duration...), `Measurement`, `Verdict`, `Scope`, `Place`
  (where a check is measured: a host's side, or the controller) and `CheckKind`, what a kind module exports;
- client.py: the one HTTP client (httpx) and its policy: redirects, body limit, timeouts, https, proxies;
- http.py, command.py: host checks, measured through a host's connection (verification and bakes alike);
- prometheus.py, alerts.py: region checks, asked from the controller.

A kind's module holds its config model (re-exported by config.models, so `conveyor.yml` and its schema name
it there), how it describes itself and how it measures, and ends with `KIND = CheckKind(...)`. Adding a kind is
that module and one line in KINDS below. The engine and gates/analysis.py reach kinds only through
`kind_of(check)`; `Check` is the union of the kinds' models for pydantic, and a plain `Repeat` for mypy, so
nothing outside a kind's module can depend on its fields by accident.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, Union

from pydantic import BeforeValidator

from conveyor.checks import alerts, command, http, prometheus
from conveyor.checks.alerts import AlertsCheck
from conveyor.checks.base import CheckKind, Measurement, Place, Repeat, Scope, Verdict
from conveyor.checks.command import CommandCheck
from conveyor.checks.http import HttpCheck
from conveyor.checks.prometheus import PrometheusCheck, parse_condition
from conveyor.values import describe

__all__ = [
    "KINDS",
    "AlertsCheck",
    "AnyCheck",
    "Check",
    "CheckKind",
    "CommandCheck",
    "HttpCheck",
    "Measurement",
    "Place",
    "PrometheusCheck",
    "Repeat",
    "Scope",
    "Verdict",
    "kind_of",
    "parse_check",
    "parse_condition",
]

KINDS: tuple[CheckKind[Any], ...] = (
    http.KIND,
    command.KIND,
    prometheus.KIND,
    alerts.KIND,
)
"""Every kind of check, in the order `conveyor.yml`'s messages name them."""

_BY_KEY = {kind.key: kind for kind in KINDS}
_BY_MODEL = {kind.model: kind for kind in KINDS}

if TYPE_CHECKING:
    Check: TypeAlias = Repeat
else:
    Check = Union[tuple(kind.model for kind in KINDS)]  # noqa: UP007 - built from the registry at run time


def kind_of(check: Repeat) -> CheckKind[Any]:
    """The registered kind of a check."""
    return _BY_MODEL[type(check)]


def parse_check(value: Any) -> Repeat:
    """A check from its mapping in `conveyor.yml`: the one kind key it has (`http:`, `command:`...) says which."""
    if isinstance(value, dict):
        keys = [key for key in _BY_KEY if key in value]
        if len(keys) > 1:
            raise ValueError(f"a check is one of {', '.join(f'{key}:' for key in _BY_KEY)}, not {' and '.join(keys)}")
        if not keys:
            raise ValueError("a check needs one of " + ", ".join(f"{k.key}: {k.hint}" for k in KINDS))
        model: type[Repeat] = _BY_KEY[keys[0]].model
        return model.model_validate(value)
    raise ValueError(f"expected a mapping like {{http: URL, expect: 200}} or {{command: TEXT}}, got {describe(value)}")


AnyCheck = Annotated[Check, BeforeValidator(parse_check)]
"""A check as `conveyor.yml` gives it: validated by the kind its key names."""
