"""Inventory: which hosts an environment has, listed in the config or found by a provider (command, AWS)."""

from conveyor.inventory.base import InventoryProblem, ListedProvider, Provider, Scope
from conveyor.inventory.host import Host, static_hosts
from conveyor.inventory.providers import provider_for, region_hosts

__all__ = ["Host", "InventoryProblem", "ListedProvider", "Provider", "Scope", "provider_for", "region_hosts",
           "static_hosts"]
