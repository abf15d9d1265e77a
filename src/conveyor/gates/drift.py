"""Drift: where the stack hosts run on disagrees. Pure functions over hosts' answers (the state store's rows),
shared by the consistency gate, `conveyor consistency`, converge and the metrics.

Three comparisons, each a `Finding` that names the component, the values and the hosts:

- within a role: hosts of one role in one environment that disagree among themselves (an autoscaled
  instance from an old image); the hosts in the minority are the ones named;
- against a reference: hosts whose value is not among the reference's (where the release was tested, what it
  was built with, this machine, the region a new instance joins);
- across environments: environments that must agree (`match`) but run different values.

A probe that failed is not a value: its host is named as unreadable, and counts as drift where values must
be shown to agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Answer", "Finding", "across", "against", "shown", "spread", "within_roles"]

_SHOWN_HOSTS = 5


class Answer(Protocol):
    """One host's answer for one component (conveyor.state.components.ComponentRow is one)."""

    @property
    def host(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def component(self) -> str: ...
    @property
    def value(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...


@dataclass(frozen=True)
class Finding:
    """One disagreement: what differs, where, and the sentence that says so."""

    component: str
    kind: str                      # role | promotion | build | local | region | environments
    environment: str | None
    detail: str
    values: Mapping[str, Sequence[str]] = field(default_factory=dict)  # value → the hosts (or envs) with it
    hosts: tuple[str, ...] = ()    # the hosts that differ

    def to_json(self) -> dict[str, Any]:
        """{"component", "kind", "environment", "detail", "values", "hosts"}."""
        return {"component": self.component, "kind": self.kind, "environment": self.environment,
                "detail": self.detail, "values": {v: list(h) for v, h in self.values.items()},
                "hosts": list(self.hosts)}


def shown(value: str | None) -> str:
    """A value as a sentence shows it: quoted when empty or spaced, first line only."""
    if value is None:
        return "nothing"
    first = value.splitlines()[0] if value else ""
    more = "…" if "\n" in value.strip() else ""
    return f"{first}{more}" if first and " " not in first else repr(first + more)


def names(hosts: Sequence[str]) -> str:
    """Host names for a sentence: the first few, and how many more."""
    more = f" and {len(hosts) - _SHOWN_HOSTS} more" if len(hosts) > _SHOWN_HOSTS else ""
    return ", ".join(hosts[:_SHOWN_HOSTS]) + more


def spread(answers: Iterable[Answer]) -> dict[str, list[str]]:
    """value → the hosts that answered it (sorted), most hosts first; unreadable hosts are left out."""
    by_value: dict[str, list[str]] = {}
    for answer in answers:
        if answer.value is not None:
            by_value.setdefault(answer.value, []).append(answer.host)
    ordered = sorted(by_value.items(), key=lambda item: (-len(item[1]), item[0]))
    return {value: sorted(hosts) for value, hosts in ordered}


def _unreadable(answers: Iterable[Answer]) -> list[str]:
    return sorted({a.host for a in answers if a.value is None})


def _by(answers: Iterable[Answer], *keys: str) -> dict[tuple[str, ...], list[Answer]]:
    groups: dict[tuple[str, ...], list[Answer]] = {}
    for answer in answers:
        groups.setdefault(tuple(getattr(answer, k) for k in keys), []).append(answer)
    return groups


def within_roles(environment: str, answers: Iterable[Answer]) -> list[Finding]:
    """Hosts of one role in `environment` that disagree (or cannot be read), per component."""
    findings = []
    for (component, role), group in sorted(_by(answers, "component", "role").items()):
        values = spread(group)
        unreadable = _unreadable(group)
        if len(values) <= 1 and not unreadable:
            continue
        common = next(iter(values), None)
        odd = sorted(h for v, hosts in values.items() if v != common for h in hosts)
        parts = [f"{shown(v)} on {names(h)}" for v, h in values.items()]
        if unreadable:
            parts.append(f"unreadable on {names(unreadable)}")
        findings.append(Finding(component, "role", environment,
                                f"{component}: {environment}'s {role} hosts disagree: {'; '.join(parts)}",
                                values, tuple(odd + unreadable)))
    return findings


def against(environment: str, answers: Iterable[Answer], reference: Mapping[str, Sequence[str]], *,
            kind: str, where: str) -> list[Finding]:
    """Hosts of `environment` whose value for a component is not among `reference`'s values for it
    (component → values); `where` names the reference in the sentence ("staging, where R1 was tested")."""
    findings = []
    for (component,), group in sorted(_by(answers, "component").items()):
        expected = list(reference.get(component) or [])
        if not expected:
            continue
        values = spread(group)
        odd = {v: h for v, h in values.items() if v not in expected}
        unreadable = _unreadable(group)
        if not odd and not unreadable:
            continue
        parts = [f"{shown(v)} on {names(h)}" for v, h in odd.items()]
        if unreadable:
            parts.append(f"unreadable on {names(unreadable)}")
        hosts = sorted(h for hs in odd.values() for h in hs) + unreadable
        findings.append(Finding(
            component, kind, environment,
            f"{component}: {where} had {' or '.join(shown(v) for v in expected)}, but {environment} runs "
            f"{'; '.join(parts)}", values, tuple(hosts)))
    return findings


def across(by_environment: Mapping[str, Iterable[Answer]]) -> list[Finding]:
    """Environments that must agree but whose hosts run different values of a component (each environment's
    set of values compared; one environment alone agrees with itself)."""
    values: dict[str, dict[str, list[str]]] = {}  # component → value → environments
    sets: dict[str, dict[str, frozenset[str]]] = {}  # component → environment → its values
    for environment, answers in by_environment.items():
        for (component,), group in _by(answers, "component").items():
            found = spread(group)
            sets.setdefault(component, {})[environment] = frozenset(found)
            for value in found:
                values.setdefault(component, {}).setdefault(value, []).append(environment)
    findings = []
    for component, seen in sorted(values.items()):
        if len(sets[component]) < 2 or len(set(sets[component].values())) == 1:
            continue
        parts = "; ".join(f"{', '.join(envs)} {'run' if len(envs) > 1 else 'runs'} {shown(v)}"
                          for v, envs in seen.items())
        findings.append(Finding(component, "environments", None, f"{component}: {parts}", seen))
    return findings


def reference_of(answers: Iterable[Answer]) -> dict[str, list[str]]:
    """component → the values `answers` have for it (what another stack is compared with)."""
    return {component: list(spread(group)) for (component,), group in _by(answers, "component").items()}
