"""The inventory provider interface: where a region's hosts come from besides the config's `hosts:`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from conveyor.config.models import HostSpec
from conveyor.inventory.host import Host


class InventoryProblem(Exception):
    """What went wrong inside a provider, in its own words; the caller adds the environment and region."""


@dataclass(frozen=True)
class Scope:
    """The region a provider is asked about, and what it needs to know of the config."""

    app: str
    environment: str
    region: str
    directory: Path                  # the config's directory: where commands run
    roles: tuple[str, ...]           # the config's roles, in config order

    def host(self, role: str, spec: HostSpec) -> Host:
        """A Host of this region from a validated host entry."""
        return Host(name=spec.name, environment=self.environment, region=self.region, role=role,
                    address=spec.address or spec.name, port=spec.port, user=spec.user, labels=dict(spec.labels))


class Provider(Protocol):
    """Finds the hosts of one region when asked; raises InventoryProblem when it cannot."""

    def describe(self) -> str:
        """What the provider is, for messages: `command './inventory.sh ca'`, `aws eu-west-2`."""
        ...

    def hosts(self, scope: Scope) -> list[Host]:
        """The region's hosts as the provider sees them now."""
        ...


@dataclass(frozen=True)
class ListedProvider:
    """A provider that answers with a fixed list (or a fixed problem): what tests inject."""

    found: tuple[Host, ...] = ()
    problem: str | None = None

    def describe(self) -> str:
        """What the provider is, for messages."""
        return "listed"

    def hosts(self, scope: Scope) -> list[Host]:
        """The fixed hosts, placed in the scope's environment and region."""
        if self.problem is not None:
            raise InventoryProblem(self.problem)
        return [Host(name=h.name, environment=scope.environment, region=scope.region, role=h.role,
                     address=h.address, port=h.port, user=h.user, labels=dict(h.labels)) for h in self.found]
