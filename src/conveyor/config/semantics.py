"""Checks that span several parts of the config: references between sections, duplicates."""

from __future__ import annotations

from conveyor.config.models import Config
from conveyor.config.values import NAME_RE

Problem = tuple[tuple[str | int, ...], str]


def _names(kind: str, names: list[str], base: tuple[str | int, ...]) -> list[Problem]:
    return [
        ((*base, name), f"{kind} name {name!r} must start with a letter or digit and use only letters, "
                        "digits, '.', '_', '-'")
        for name in names
        if not NAME_RE.match(name)
    ]


def cross_check(config: Config) -> list[Problem]:
    """Every problem that single fields cannot see, each with the path it belongs to."""
    problems: list[Problem] = []
    problems += _names("role", list(config.roles), ("roles",))
    problems += _names("environment", list(config.environments), ("environments",))
    problems += _names("window", list(config.windows), ("windows",))
    for env_name, env in config.environments.items():
        base: tuple[str | int, ...] = ("environments", env_name)
        problems += _names("region", list(env.regions), (*base, "regions"))
        if env.promote_from is not None:
            if env.promote_from == env_name:
                problems.append(((*base, "promote_from"), "an environment cannot promote from itself"))
            elif env.promote_from not in config.environments:
                problems.append(
                    ((*base, "promote_from"), f"unknown environment {env.promote_from!r}; "
                                              f"known: {', '.join(config.environments)}")
                )
        for field in ("window", "migration_window"):
            name = getattr(env, field)
            if name is not None and name not in config.windows:
                known = ", ".join(config.windows) or "none are defined under windows:"
                problems.append(((*base, field), f"unknown window {name!r}; known: {known}"))
        if env.waves is not None:
            seen: dict[str, int] = {}
            for index, wave in enumerate(env.waves):
                for region in wave:
                    if region not in env.regions:
                        problems.append(
                            ((*base, "waves", index), f"unknown region {region!r}; "
                                                      f"known: {', '.join(env.regions)}")
                        )
                    elif region in seen:
                        problems.append(((*base, "waves", index), f"region {region!r} is in more than one wave"))
                    seen[region] = index
            missing = [r for r in env.regions if r not in seen]
            if missing:
                problems.append(((*base, "waves"), f"regions in no wave would never deploy: {', '.join(missing)}"))
        host_seen: dict[str, tuple[str, str]] = {}
        for region_name, region_spec in env.regions.items():
            rbase = (*base, "regions", region_name)
            if not any(region_spec.hosts.values()):
                problems.append(((*rbase, "hosts"), "a region needs at least one host"))
            for role, hosts in region_spec.hosts.items():
                if role not in config.roles:
                    problems.append(
                        ((*rbase, "hosts", role), f"unknown role {role!r}; known: {', '.join(config.roles)}")
                    )
                for index, host in enumerate(hosts):
                    if host.name in host_seen:
                        other_region, other_role = host_seen[host.name]
                        problems.append(
                            ((*rbase, "hosts", role, index), f"duplicate host {host.name!r} "
                                                             f"(also in {other_region}/{other_role})")
                        )
                    host_seen[host.name] = (region_name, role)
    return problems
