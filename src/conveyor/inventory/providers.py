"""A region's hosts: those the config lists, then those its inventory provider finds, merged.

Providers of several regions are asked at the same time (an AWS call or a script can take seconds each).
Whatever goes wrong in a provider becomes one InventoryError naming the environment, the region and the
provider, with the provider's own words; when several regions fail, one error lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conveyor.config.models import Config, Inventory
from conveyor.errors import InventoryError
from conveyor.inventory.base import InventoryProblem, Provider, Scope
from conveyor.inventory.host import Host, static_hosts

MAX_PARALLEL = 8


def provider_for(inventory: Inventory) -> Provider:
    """The provider an `inventory:` section describes."""
    if inventory.aws is not None:
        from conveyor.inventory.aws import AwsProvider  # boto3 is imported only when it is asked

        return AwsProvider(inventory.aws, timeout=inventory.timeout)
    from conveyor.inventory.command import CommandProvider

    assert inventory.command is not None  # the model requires command: or aws:
    return CommandProvider(inventory.command, timeout=inventory.timeout)


def read_provider(provider: Provider, scope: Scope) -> list[Host]:
    """The hosts a provider finds; its problems become an InventoryError that says where they came from."""
    try:
        return provider.hosts(scope)
    except InventoryProblem as exc:
        raise InventoryError(f"inventory of {scope.environment}/{scope.region} ({provider.describe()}): {exc}",
                             environment=scope.environment, region=scope.region,
                             provider=provider.describe()) from exc


def merge(scope: Scope, listed: Sequence[Host], found: Sequence[Host], provider: Provider) -> list[Host]:
    """The config's hosts first, then the provider's; a name twice in a region (any case) is an error."""
    seen: dict[str, str] = {}
    for host, origin in [*((h, "hosts:") for h in listed), *((h, "inventory") for h in found)]:
        key = host.name.lower()
        if key in seen:
            raise InventoryError(
                f"inventory of {scope.environment}/{scope.region} ({provider.describe()}): host {host.name!r} "
                f"({host.role}, from the {origin}) is already in the region ({seen[key]})",
                environment=scope.environment, region=scope.region, provider=provider.describe())
        seen[key] = f"{host.role}, from the {origin}"
    return [*listed, *found]


def region_hosts(config: Config, env: str, regions: Sequence[str], directory: Path,
                 providers: Mapping[str, Provider] | None = None) -> dict[str, list[Host]]:
    """region → hosts for each of `regions` (config order kept): listed hosts, then what providers find.

    `providers` replaces the provider of a region (tests inject one); other regions use their `inventory:`.
    """
    environment = config.environments[env]
    listed = static_hosts(config, env)
    asked: dict[str, tuple[Provider, Scope]] = {}
    for region in regions:
        provider = (providers or {}).get(region)
        inventory = environment.regions[region].inventory
        if provider is None and inventory is not None:
            provider = provider_for(inventory)
        if provider is not None:
            asked[region] = (provider, Scope(config.app, env, region, directory, tuple(config.roles)))
    found = _read_all(asked)
    out: dict[str, list[Host]] = {}
    for region in regions:
        if region in asked:
            provider, scope = asked[region]
            out[region] = merge(scope, listed.get(region, []), found[region], provider)
        else:
            out[region] = listed.get(region, [])
    return out


def _read_all(asked: dict[str, tuple[Provider, Scope]]) -> dict[str, list[Host]]:
    """Ask every provider at once; every failure is reported, not only the first."""
    if not asked:
        return {}
    if len(asked) == 1:
        ((region, (provider, scope)),) = asked.items()
        return {region: read_provider(provider, scope)}
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(asked)), thread_name_prefix="inventory") as pool:
        futures = {region: pool.submit(read_provider, provider, scope) for region, (provider, scope) in asked.items()}
    found: dict[str, list[Host]] = {}
    failures: list[InventoryError] = []
    for region, future in futures.items():
        error = future.exception()
        if isinstance(error, InventoryError):
            failures.append(error)
        elif error is not None:
            raise error
        else:
            found[region] = future.result()
    if len(failures) == 1:
        raise failures[0]
    if failures:
        first = failures[0]
        raise InventoryError("\n".join(f.message for f in failures), environment=first.environment) from first
    return found
