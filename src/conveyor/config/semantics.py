"""Checks that span several parts of the config: references between sections, duplicates, nested shared paths.

They read the data as written (plain dicts and lists from YAML), not the validated models, so that they
run even when some fields have type errors, and every problem in a file is reported at once. Anything
with the wrong shape is skipped here: the models report it.
"""

from __future__ import annotations

import posixpath
from typing import Any

from conveyor.config.consistency import cross_check as consistency_cross_check
from conveyor.config.flagging import flag_references
from conveyor.values import NAME_RE

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


def _names(kind: str, section: Any, base: Loc) -> list[Problem]:
    if not isinstance(section, dict):
        return []
    return [
        ((*base, name), f"{kind} name {name!r} must start with a letter or digit and use only letters, "
                        "digits, '.', '_', '-'")
        for name in section
        if not NAME_RE.match(name)
    ]


def _known(section: Any) -> list[str] | None:
    """The names a section defines, or None when it is not a mapping (then references are not checked)."""
    return list(section) if isinstance(section, dict) else None


def _host_name(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    name = item.get("name") if isinstance(item, dict) else None
    return name if isinstance(name, str) else None


def cross_check(data: Any) -> list[Problem]:
    """Every problem that single fields cannot see, each with the path it belongs to."""
    if not isinstance(data, dict):
        return []
    problems: list[Problem] = []
    problems += _names("role", data.get("roles"), ("roles",))
    problems += _names("environment", data.get("environments"), ("environments",))
    problems += _names("window", data.get("windows"), ("windows",))
    problems += _nested_shared(data.get("shared"))
    environments = data.get("environments")
    if not isinstance(environments, dict):
        return problems
    problems += _notify_environments(data.get("notify"), list(environments))
    roles = _known(data.get("roles"))
    problems += consistency_cross_check(data.get("consistency"), list(environments), roles)
    windows = _known(data.get("windows") if data.get("windows") is not None else {})
    migrations = data.get("migrations")
    if isinstance(migrations, dict) and isinstance(migrations.get("run_on"), str) and roles is not None:
        run_on = migrations["run_on"]
        if run_on != "local" and run_on not in roles:
            problems.append((("migrations", "run_on"), f"unknown role {run_on!r}: a role whose hosts run "
                                                       f"the migrations ({', '.join(roles)}), or local"))
    for env_name, env in environments.items():
        if isinstance(env, dict):
            problems += _environment(env_name, env, list(environments), roles, windows)
    problems += flag_references(data.get("flags"), environments, roles)
    return problems


def _nested_shared(shared: Any) -> list[Problem]:
    """No shared path may lie under another: the outer one is linked to the host's shared/ whole, so the inner
    one would be written through that link (hosts refuse such a list too, before linking anything)."""
    if not isinstance(shared, list):
        return []
    paths: list[tuple[int, str]] = []
    for index, item in enumerate(shared):
        if not isinstance(item, str) or not item or item.startswith("/") or any(c in item for c in "\n\r\0"):
            continue  # not a relative path: the model says why
        normal = posixpath.normpath(item)
        if normal != "." and not normal.startswith("..") and ".." not in item.split("/"):
            paths.append((index, normal))
    problems: list[Problem] = []
    for index, inner in paths:
        outer = next((other for _, other in paths if inner.startswith(other + "/")), None)
        if outer is not None:
            problems.append((("shared", index), f"shared path {shared[index]!r} lies under shared path {outer!r}, "
                                                f"which shares all of it: list only {outer!r}"))
    return problems


def _environment(env_name: str, env: dict[str, Any], environments: list[str], roles: list[str] | None,
                 windows: list[str] | None) -> list[Problem]:
    base: Loc = ("environments", env_name)
    problems: list[Problem] = []
    regions = env.get("regions")
    problems += _names("region", regions, (*base, "regions"))
    promote_from = env.get("promote_from")
    if isinstance(promote_from, str):
        if promote_from == env_name:
            problems.append(((*base, "promote_from"), "an environment cannot promote from itself"))
        elif promote_from not in environments:
            problems.append(((*base, "promote_from"), f"unknown environment {promote_from!r}; "
                                                      f"known: {', '.join(environments)}"))
    for field in ("window", "migration_window"):
        name = env.get(field)
        if isinstance(name, str) and windows is not None and name not in windows:
            known = f"known: {', '.join(windows)}" if windows else "no windows are defined (add it under windows:)"
            problems.append(((*base, field), f"unknown window {name!r}; {known}"))
    if isinstance(regions, dict):
        problems += _waves(base, env.get("waves"), list(regions))
        problems += _hosts(base, regions, roles)
    return problems


def _waves(base: Loc, waves: Any, regions: list[str]) -> list[Problem]:
    if not isinstance(waves, list) or not all(isinstance(wave, list) for wave in waves) or not waves:
        return []  # absent (one wave of every region) or malformed: the model reports the shape
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, wave in enumerate(waves):
        for position, region in enumerate(wave):
            if not isinstance(region, str):
                continue
            if region not in regions:
                problems.append(((*base, "waves", index, position),
                                 f"unknown region {region!r}; known: {', '.join(regions)}"))
            elif region in seen:
                where = "earlier in this wave" if seen[region] == index else f"also in wave {seen[region] + 1}"
                problems.append(((*base, "waves", index, position),
                                 f"region {region!r} is in more than one wave ({where})"))
            else:
                seen[region] = index
    missing = [r for r in regions if r not in seen]
    if missing:
        problems.append(((*base, "waves"), f"regions in no wave would never deploy: {', '.join(missing)}"))
    return problems


def _hosts(base: Loc, regions: dict[str, Any], roles: list[str] | None) -> list[Problem]:
    problems: list[Problem] = []
    # Host names are DNS names: `web-1` and `WEB-1` are the same machine.
    seen: dict[str, tuple[str, str]] = {}
    for region_name, region in regions.items():
        if not isinstance(region, dict):
            continue
        rbase = (*base, "regions", region_name)
        inventory = region.get("inventory")
        problems += _inventory_roles((*rbase, "inventory"), inventory, roles)
        hosts = region.get("hosts")
        # A region with an inventory finds its hosts when a deployment starts; it may list none itself.
        if (hosts is None or hosts == {}) and inventory is None:
            problems.append(((*rbase, "hosts"), "a region needs at least one host"))
            continue
        if not isinstance(hosts, dict):
            continue
        if all(isinstance(items, list) and not items for items in hosts.values()) and inventory is None:
            problems.append(((*rbase, "hosts"), "a region needs at least one host"))
        for role, items in hosts.items():
            if roles is not None and role not in roles:
                known = ", ".join(roles) or "none are defined under roles:"
                problems.append(((*rbase, "hosts", role), f"unknown role {role!r}; known: {known}"))
            if not isinstance(items, list):
                continue
            for index, item in enumerate(items):
                name = _host_name(item)
                if name is None:
                    continue
                key = name.lower()
                if key in seen:
                    other_region, other_role = seen[key]
                    problems.append(((*rbase, "hosts", role, index),
                                     f"duplicate host {name!r} (also in {other_region}/{other_role})"))
                else:
                    seen[key] = (region_name, role)
    return problems


def _inventory_roles(base: Loc, inventory: Any, roles: list[str] | None) -> list[Problem]:
    """The roles an aws inventory looks for must be roles of the config."""
    aws = inventory.get("aws") if isinstance(inventory, dict) else None
    if roles is None or not isinstance(aws, dict):
        return []
    problems: list[Problem] = []
    for section in ("groups", "tags"):
        mapping = aws.get(section)
        if not isinstance(mapping, dict):
            continue
        for role in mapping:
            if role not in roles:
                known = ", ".join(roles) or "none are defined under roles:"
                problems.append(((*base, "aws", section, role), f"unknown role {role!r}; known: {known}"))
    return problems


def _notify_environments(notify: Any, environments: list[str]) -> list[Problem]:
    """A notification target that names an environment must name one the config has."""
    if not isinstance(notify, list):
        return []
    problems: list[Problem] = []
    for index, target in enumerate(notify):
        names = target.get("environments") if isinstance(target, dict) else None
        if not isinstance(names, list):
            continue
        for position, name in enumerate(names):
            if isinstance(name, str) and name not in environments:
                problems.append((("notify", index, "environments", position),
                                 f"unknown environment {name!r}; known: {', '.join(environments)}"))
    return problems
