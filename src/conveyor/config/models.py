"""The shape of `conveyor.yml`, as pydantic models. Unknown keys are errors everywhere.

`Config` is the whole file; each part is a module of its own, and every model is importable from here:

    fleet.py         roles, environments, regions, hosts, inventory, ssh
    release.py       artifact (and its S3 stores: s3.py), shared paths, migrations
    integrations.py  notify, grafana, git tags, metrics, authors
    consistency.py   the components of the stack, probed on every host, and the environments that must agree
    windows/         deploy windows and their rules
    flagging.py      feature flags: the definitions' file, overrides, on_change
    conveyor.checks  each check kind's model, in the kind's own module
"""

from __future__ import annotations

import posixpath
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from conveyor.checks import AlertsCheck, AnyCheck, Check, CommandCheck, HttpCheck, PrometheusCheck
from conveyor.config.base import Strict
from conveyor.config.consistency import Component, Consistency
from conveyor.config.flagging import FlagSettings
from conveyor.config.fleet import (
    ADDRESS_RE,
    AWS_REGION_RE,
    HOST_NAME_RE,
    SSH_DEFAULTS,
    USER_RE,
    AwsInventory,
    Environment,
    HostEntry,
    HostSpec,
    Inventory,
    Region,
    Role,
    SSHSettings,
    check_host_name,
    check_jump,
    check_user,
)
from conveyor.config.integrations import (
    GIT_REMOTE_RE,
    NOTIFY_EVENTS,
    Authors,
    GitSettings,
    Grafana,
    MetricsSettings,
    NotifyEntry,
    NotifyEvent,
    NotifyTarget,
    check_notify_url,
)
from conveyor.config.release import Artifact, Migrations, SharedPath
from conveyor.config.web import WebSettings
from conveyor.config.windows import Window, WindowRule
from conveyor.values import Int, check_name

__all__ = [
    "ADDRESS_RE",
    "AWS_REGION_RE",
    "GIT_REMOTE_RE",
    "HOST_NAME_RE",
    "NOTIFY_EVENTS",
    "SSH_DEFAULTS",
    "USER_RE",
    "AlertsCheck",
    "AnyCheck",
    "AppName",
    "Artifact",
    "Authors",
    "AwsInventory",
    "Check",
    "CommandCheck",
    "Component",
    "Config",
    "Consistency",
    "Environment",
    "FlagSettings",
    "GitSettings",
    "Grafana",
    "HostEntry",
    "HostSpec",
    "HttpCheck",
    "Inventory",
    "MetricsSettings",
    "Migrations",
    "NotifyEntry",
    "NotifyEvent",
    "NotifyTarget",
    "PrometheusCheck",
    "Region",
    "Role",
    "SSHSettings",
    "SharedPath",
    "Strict",
    "WebSettings",
    "Window",
    "WindowRule",
    "check_host_name",
    "check_jump",
    "check_notify_url",
    "check_user",
]


def _name(what: str) -> Any:
    return BeforeValidator(lambda v: check_name(v, what))


AppName = Annotated[str, _name("app")]


class Config(Strict):
    """A whole `conveyor.yml`."""

    app: AppName
    artifact: Artifact = Field(default_factory=Artifact)
    deploy_to: str | None = None
    keep_releases: Int = Field(default=5, ge=1, le=1000)
    shared: list[SharedPath] = Field(default_factory=list)
    ssh: SSHSettings = Field(default_factory=SSHSettings)
    roles: dict[str, Role] = Field(min_length=1)
    environments: dict[str, Environment] = Field(min_length=1)
    windows: dict[str, Window] = Field(default_factory=dict)
    notify: list[NotifyEntry] = Field(default_factory=list, description="Apprise URLs, each alone (every "
                                      "event) or as {url, events, environments, name, timeout}")
    authors: Authors = Field(
        default_factory=dict, description="git author email → chat handle, named when their commits reach the "
        "end of the promotion path")
    grafana: Grafana | None = None
    git: GitSettings = Field(default_factory=GitSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    migrations: Migrations | None = None
    flags: FlagSettings | None = Field(default=None, description="feature flags rolled out like releases "
                                       "(docs/flags.md)")
    consistency: Consistency | None = None
    state: str | None = None
    web: WebSettings = Field(default_factory=WebSettings, description="the dashboard (conveyor serve, "
                             "docs/dashboard.md)")

    @field_validator("deploy_to")
    @classmethod
    def _deploy_to(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/"):
            raise ValueError(f"expected an absolute path like /srv/www, got {value!r}")
        normal = posixpath.normpath(value)
        if normal == "/" or ".." in value.split("/"):
            raise ValueError(f"{value!r} is not a usable directory (no '..', not /)")
        if any(c in value for c in "\n\r\0"):
            raise ValueError(f"{value!r} contains a control character")
        return normal

    @property
    def target_dir(self) -> str:
        """Where releases live on a host."""
        return self.deploy_to or f"/srv/{self.app}"

    def waves_of(self, env: str) -> list[list[str]]:
        """The environment's waves of regions, defaulting to one wave of every region."""
        environment = self.environments[env]
        return environment.waves or [list(environment.regions)]

    def ssh_for(self, env: str, region: str) -> SSHSettings:
        """SSH settings for a region: defaults, then top level, environment, region."""
        environment = self.environments[env]
        return (
            SSH_DEFAULTS.merged(self.ssh).merged(environment.ssh).merged(environment.regions[region].ssh)
        )
