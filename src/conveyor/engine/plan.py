"""Plans: which hosts move, in which waves, regions, roles and batches. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.config.models import Config
from conveyor.errors import UsageError
from conveyor.inventory import Host
from conveyor.values import Amount


@dataclass(frozen=True)
class Batch:
    """Hosts of one role switched at the same time; the first batch of a role is its canary."""

    number: int
    hosts: tuple[Host, ...]
    canary: bool = False


@dataclass(frozen=True)
class RolePlan:
    """How one role of one region moves: its batches and how many failures it tolerates."""

    role: str
    batches: tuple[Batch, ...]
    max_failures: int

    @property
    def hosts(self) -> list[Host]:
        """Every host of the role, in batch order."""
        return [host for batch in self.batches for host in batch.hosts]


@dataclass(frozen=True)
class RegionPlan:
    """One region's roles, in config order."""

    region: str
    roles: tuple[RolePlan, ...]

    @property
    def hosts(self) -> list[Host]:
        """Every host of the region, in the order it moves."""
        return [host for role in self.roles for host in role.hosts]


@dataclass(frozen=True)
class Plan:
    """A deployment's shape: waves in order, each a list of regions that move together."""

    environment: str
    waves: tuple[tuple[RegionPlan, ...], ...]
    skipped_regions: tuple[str, ...] = field(default=())

    @property
    def regions(self) -> list[RegionPlan]:
        """Every region in wave order."""
        return [region for wave in self.waves for region in wave]

    @property
    def hosts(self) -> list[Host]:
        """Every host in the order it moves."""
        return [host for region in self.regions for host in region.hosts]


def batches_for(hosts: list[Host], canary: Amount, batch: Amount) -> list[Batch]:
    """Split a role's hosts: the canary first (at least one host unless canary is 0), then batches."""
    total = len(hosts)
    if total == 0:
        return []
    out: list[Batch] = []
    canaries = canary.of(total, at_least_one=canary.value > 0)
    if canaries:
        out.append(Batch(1, tuple(hosts[:canaries]), canary=True))
    size = batch.of(total, at_least_one=True)
    rest = hosts[canaries:]
    for start in range(0, len(rest), size):
        out.append(Batch(len(out) + 1, tuple(rest[start:start + size])))
    return out


def make_plan(config: Config, env: str, hosts: dict[str, list[Host]], *, regions: list[str] | None = None,
              roles: list[str] | None = None) -> Plan:
    """The plan for `env`, limited to `regions` and `roles` when given."""
    environment = config.environments.get(env)
    if environment is None:
        raise UsageError(f"unknown environment {env!r}; known: {', '.join(config.environments)}")
    for region in regions or []:
        if region not in environment.regions:
            raise UsageError(f"unknown region {region!r} in {env}; known: {', '.join(environment.regions)}")
    for role in roles or []:
        if role not in config.roles:
            raise UsageError(f"unknown role {role!r}; known: {', '.join(config.roles)}")
    waves: list[tuple[RegionPlan, ...]] = []
    skipped: list[str] = []
    for wave in config.waves_of(env):
        plans = []
        for region in wave:
            if regions and region not in regions:
                skipped.append(region)
                continue
            role_plans = []
            for role_name, role_spec in config.roles.items():
                if roles and role_name not in roles:
                    continue
                members = [h for h in hosts.get(region, []) if h.role == role_name]
                if not members:
                    continue
                role_plans.append(RolePlan(
                    role=role_name,
                    batches=tuple(batches_for(members, role_spec.canary, role_spec.batch)),
                    max_failures=role_spec.max_failures.of(len(members)),
                ))
            if role_plans:
                plans.append(RegionPlan(region, tuple(role_plans)))
        if plans:
            waves.append(tuple(plans))
    if not waves:
        raise UsageError(f"nothing to do: no hosts match in {env}")
    return Plan(env, tuple(waves), tuple(skipped))
