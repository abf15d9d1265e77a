"""The `flags:` section of conveyor.yml: where the flag definitions are, where each host's flags file goes,
per-environment and per-region overrides, and the command a role runs when its flags change.

The definitions themselves (flagd's format) are read and validated by `conveyor.flags`; references from this
section to environments, regions and roles are checked with the others (`flag_references`).
"""

from __future__ import annotations

import posixpath
from typing import Any

from pydantic import Field, field_validator

from conveyor.config.base import Strict

__all__ = ["ALL_REGIONS", "FlagSettings", "flag_references"]

ALL_REGIONS = "*"
"""An override under this key applies to every region of its environment (a region's own key wins)."""


class FlagSettings(Strict):
    """`flags: {file, path_on_host, overrides: {ENV: {REGION: {FLAG: VARIANT}}}, on_change: {ROLE: CMD}}`."""

    file: str = Field(default="flags/flags.yaml", description="the flag definitions (flagd's format, JSON or "
                      "YAML), relative to the config's directory")
    path_on_host: str | None = Field(default=None, description="where each host's flags file is written "
                                     "(absolute, or relative to deploy_to); default <deploy_to>/shared/flags.json")
    overrides: dict[str, dict[str, dict[str, str]]] = Field(
        default_factory=dict, description="environment → region (or '*' for all) → flag → variant")
    on_change: dict[str, str] = Field(default_factory=dict, description="role → a command run on its hosts "
                                      "after their flags file changed (for apps that cache flags)")

    @field_validator("path_on_host")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value or any(c in value for c in "\n\r\0") or ".." in value.split("/") or value.endswith("/"):
            raise ValueError(f"{value!r} is not a usable file path (no '..', no control characters, a file "
                             "name at the end)")
        return posixpath.normpath(value)

    @property
    def path(self) -> str:
        """Where each host's flags file goes: absolute, or relative to deploy_to."""
        return self.path_on_host or "shared/flags.json"

    def host_path(self, deploy_to: str) -> str:
        """The flags file on a host whose application lives in `deploy_to`."""
        return self.path if self.path.startswith("/") else f"{deploy_to}/{self.path}"


def flag_references(flags: Any, environments: dict[str, Any], roles: list[str] | None) -> list[tuple[
        tuple[str | int, ...], str]]:
    """Overrides that name an unknown environment or region, on_change entries that name an unknown role."""
    if not isinstance(flags, dict):
        return []
    problems: list[tuple[tuple[str | int, ...], str]] = []
    overrides = flags.get("overrides")
    for env, by_region in (overrides or {}).items() if isinstance(overrides, dict) else ():
        if env not in environments:
            problems.append((("flags", "overrides", env), f"unknown environment {env!r} (known: "
                                                          f"{', '.join(environments)})"))
            continue
        regions = environments[env].get("regions") if isinstance(environments[env], dict) else None
        if not isinstance(by_region, dict) or not isinstance(regions, dict):
            continue
        for region in by_region:
            if region != ALL_REGIONS and region not in regions:
                problems.append((("flags", "overrides", env, region),
                                 f"unknown region {region!r} of {env} (known: {', '.join(regions)}, or "
                                 f"'{ALL_REGIONS}' for all)"))
    on_change = flags.get("on_change")
    if isinstance(on_change, dict) and roles is not None:
        for role in on_change:
            if role not in roles:
                problems.append((("flags", "on_change", role), f"unknown role {role!r} (known: "
                                                               f"{', '.join(roles)})"))
    return problems
