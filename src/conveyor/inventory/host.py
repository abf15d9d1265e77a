"""Hosts: what the engine deploys to, resolved from the config."""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.config.models import Config, SSHSettings


@dataclass(frozen=True)
class Host:
    """One server of one environment: where it is, what it does, how to reach it."""

    name: str
    environment: str
    region: str
    role: str
    address: str
    port: int | None = None
    user: str | None = None
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    ssh: SSHSettings | None = field(default=None, hash=False, compare=False)

    @property
    def key(self) -> str:
        """A label unique within an environment: region/name."""
        return f"{self.region}/{self.name}"


def static_hosts(config: Config, env: str) -> dict[str, list[Host]]:
    """The hosts of every region of `env` as the config lists them, region by region, role by role."""
    environment = config.environments[env]
    out: dict[str, list[Host]] = {}
    for region_name, region in environment.regions.items():
        hosts: list[Host] = []
        # Roles in config order (the order of `roles:`), so a region always moves in the same order.
        for role in config.roles:
            for spec in region.hosts.get(role, []):
                hosts.append(
                    Host(
                        name=spec.name,
                        environment=env,
                        region=region_name,
                        role=role,
                        address=spec.address or spec.name,
                        port=spec.port,
                        user=spec.user,
                        labels=dict(spec.labels),
                        ssh=spec.ssh,
                    )
                )
        out[region_name] = hosts
    return out
