"""Inventory: which hosts an environment has."""

from conveyor.inventory.host import Host, static_hosts

__all__ = ["Host", "static_hosts"]
