"""`consistency:` in `conveyor.yml`: the components of the stack a release runs on (each a probe command whose
trimmed output is its value), the environments that must agree, and what drift does.

    consistency:
      components:
        perl: {probe: "perl -e 'print $^V'"}
        wkhtmltopdf: {probe: "dpkg-query -W -f '${Version}' wkhtmltopdf", roles: [web, batch], timeout: 5s}
      build: [perl]              # also probed where the release is built, recorded in its manifest
      match: [staging, production]
      on_drift: refuse           # refuse | warn: hosts of one role in one environment that disagree
      converge: refuse           # refuse | warn: a new instance whose values differ from its region's

The cross-references (components named in build/match, roles, environments) are checked with the rest of
the file's references, by `cross_check` below, which `semantics.py` calls.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from conveyor.config.base import Strict
from conveyor.values import NAME_RE, Duration

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

PROBE_TIMEOUT = 10.0      # seconds a probe may take unless its component says otherwise
MAX_PROBE_TIMEOUT = 300.0


class Component(Strict):
    """One component of the stack: how a host says which one it has."""

    probe: str = Field(min_length=1, description="a shell command; its trimmed standard output is the value")
    roles: list[str] | None = Field(default=None, description="only hosts of these roles have it (default: all)")
    timeout: Duration = Field(default=PROBE_TIMEOUT, description="how long the probe may take (default 10s)")

    @field_validator("probe")
    @classmethod
    def _probe(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a probe is a shell command; got only spaces")
        if "\0" in value:
            raise ValueError("a probe cannot contain a NUL byte")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= MAX_PROBE_TIMEOUT:
            raise ValueError(f"a probe's timeout must be more than 0 and at most {MAX_PROBE_TIMEOUT:g}s")
        return value


class Consistency(Strict):
    """The stack every environment must agree on, and how drift is judged."""

    components: dict[str, Component] = Field(min_length=1)
    build: list[str] = Field(default_factory=list, description="components also probed where releases are "
                             "built, and recorded in the release's manifest")
    match: list[str] = Field(default_factory=list, description="environments whose hosts must run the values "
                             "the release had where it was promoted from")
    on_drift: Literal["refuse", "warn"] = "refuse"
    converge: Literal["refuse", "warn"] = Field(default="refuse", description="a new instance whose values "
                                                "differ from its region's: refuse to install, or warn")

    def for_role(self, role: str) -> dict[str, Component]:
        """The components a host of `role` has, in the config's order."""
        return {name: c for name, c in self.components.items() if c.roles is None or role in c.roles}


def cross_check(data: Any, environments: list[str] | None, roles: list[str] | None) -> list[Problem]:
    """Names under `consistency:` that refer to nothing: components in build, environments in match, roles."""
    if not isinstance(data, dict):
        return []
    components = data.get("components")
    known = [n for n in components if isinstance(n, str)] if isinstance(components, dict) else None
    problems: list[Problem] = []
    if known is not None:
        problems += [(("consistency", "components", name), f"component name {name!r} must start with a letter "
                      "or digit and use only letters, digits, '.', '_', '-'")
                     for name in known if not NAME_RE.match(name)]
    problems += _unknown(("consistency", "build"), data.get("build"), known, "component")
    problems += _unknown(("consistency", "match"), data.get("match"), environments, "environment")
    if isinstance(components, dict):
        for name, component in components.items():
            listed = component.get("roles") if isinstance(component, dict) else None
            problems += _unknown(("consistency", "components", name, "roles"), listed, roles, "role")
    return problems


def _unknown(base: Loc, listed: Any, known: list[str] | None, what: str) -> list[Problem]:
    """Each name of the list `listed` that is not `known` (nothing when either is not a list)."""
    if not isinstance(listed, list) or known is None:
        return []
    return [((*base, index), f"unknown {what} {name!r}; known: {', '.join(known) or 'none'}")
            for index, name in enumerate(listed) if isinstance(name, str) and name not in known]
