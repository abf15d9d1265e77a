"""The shape of `conveyor.yml`, as pydantic models. Unknown keys are errors everywhere."""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from conveyor.config.values import Duration, HostAmount, check_name, parse_amount
from conveyor.gates.windows import Window

HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class Strict(BaseModel):
    """Base model: unknown keys are errors, values are not coerced across types silently."""

    model_config = ConfigDict(extra="forbid")


def _name(what: str) -> Any:
    return BeforeValidator(lambda v: check_name(v, what))


AppName = Annotated[str, _name("app")]


class SSHSettings(Strict):
    """How to reach hosts over SSH; any level (top, environment, region, host) may override a field."""

    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    identity_file: str | None = None
    jump: str | None = Field(default=None, description="ProxyJump: [user@]host[:port] of a bastion")
    known_hosts: Literal["strict", "accept-new"] | None = None
    known_hosts_file: str | None = None
    connect_timeout: Duration | None = None
    command_timeout: Duration | None = None
    max_concurrency: int | None = Field(default=None, ge=1, le=4096)

    def merged(self, override: SSHSettings | None) -> SSHSettings:
        """These settings with every field `override` sets replacing ours."""
        if override is None:
            return self
        data = self.model_dump()
        data.update(override.model_dump(exclude_none=True))
        return SSHSettings.model_validate(data)


SSH_DEFAULTS = SSHSettings(
    port=22, known_hosts="strict", connect_timeout=10.0, command_timeout=600.0, max_concurrency=64
)


class HttpCheck(Strict):
    """An HTTP request made on the host's side that must answer `expect` (and contain `contains`)."""

    http: str
    expect: int = Field(default=200, ge=100, le=599)
    contains: str | None = None
    timeout: Duration = 5.0
    retries: int = Field(default=3, ge=0, le=1000)
    interval: Duration = 1.0

    @field_validator("http")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    def describe(self) -> str:
        """One line for plans and reports."""
        return f"GET {self.http} expects {self.expect}" + (f" containing {self.contains!r}" if self.contains else "")


class CommandCheck(Strict):
    """A command run on the host in the new release's directory; exit 0 passes."""

    command: str = Field(min_length=1)
    timeout: Duration = 30.0
    retries: int = Field(default=0, ge=0, le=1000)
    interval: Duration = 1.0

    def describe(self) -> str:
        """One line for plans and reports."""
        return f"run {self.command!r}"


Check = HttpCheck | CommandCheck


def _check(value: Any) -> Any:
    if isinstance(value, dict):
        if "http" in value and "command" in value:
            raise ValueError("a check is either http: or command:, not both")
        if "http" not in value and "command" not in value:
            raise ValueError("a check needs http: URL or command: TEXT")
        return HttpCheck.model_validate(value) if "http" in value else CommandCheck.model_validate(value)
    raise ValueError("expected a mapping like {http: URL, expect: 200} or {command: TEXT}")


class Role(Strict):
    """What a kind of host does: how it restarts, how it is checked, how many move at once."""

    restart: str | None = None
    checks: list[Annotated[Check, BeforeValidator(_check)]] = Field(default_factory=list)
    canary: HostAmount = Field(default_factory=lambda: parse_amount(1))
    batch: HostAmount = Field(default_factory=lambda: parse_amount("25%"))
    max_failures: HostAmount = Field(default_factory=lambda: parse_amount(0))


class HostSpec(Strict):
    """One host: its name, and how to reach it when that differs from the name."""

    name: str
    address: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _host_name(cls, value: str) -> str:
        if not HOST_NAME_RE.match(value):
            raise ValueError(
                f"host name {value!r} must start with a letter or digit and use only letters, digits, '.', '_', '-'"
            )
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value) or value.startswith("-")):
            raise ValueError(f"address {value!r} is not a host name or IP address")
        return value


def _host_list(value: Any) -> Any:
    if not isinstance(value, list):
        raise ValueError("expected a list of host names")
    return [{"name": item} if isinstance(item, str) else item for item in value]


class Region(Strict):
    """A part of an environment with its own hosts."""

    hosts: dict[str, Annotated[list[HostSpec], BeforeValidator(_host_list)]] = Field(default_factory=dict)
    ssh: SSHSettings | None = None


class Environment(Strict):
    """A stage of the promotion path (staging, production) made of regions."""

    transport: Literal["local", "ssh"] = "ssh"
    local_root: str | None = None
    promote_from: str | None = None
    waves: list[list[str]] | None = None
    bake: Duration | None = None
    window: str | None = None
    migration_window: str | None = None
    ssh: SSHSettings | None = None
    regions: dict[str, Region] = Field(min_length=1)

    @field_validator("waves")
    @classmethod
    def _waves(cls, value: list[list[str]] | None) -> list[list[str]] | None:
        if value is not None:
            if not value:
                raise ValueError("waves must list at least one wave")
            for wave in value:
                if not wave:
                    raise ValueError("a wave must name at least one region")
        return value


class Artifact(Strict):
    """Where the release comes from and where built releases are kept."""

    build: str | None = None
    path: str = "dist"
    store: str = ".conveyor/artifacts"


class Config(Strict):
    """A whole `conveyor.yml`."""

    app: AppName
    artifact: Artifact = Field(default_factory=Artifact)
    deploy_to: str | None = None
    keep_releases: int = Field(default=5, ge=1, le=1000)
    shared: list[str] = Field(default_factory=list)
    ssh: SSHSettings = Field(default_factory=SSHSettings)
    roles: dict[str, Role] = Field(min_length=1)
    environments: dict[str, Environment] = Field(min_length=1)
    windows: dict[str, Window] = Field(default_factory=dict)
    notify: list[str] = Field(default_factory=list)
    state: str | None = None

    @field_validator("deploy_to")
    @classmethod
    def _deploy_to(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/"):
            raise ValueError(f"deploy_to must be an absolute path, got {value!r}")
        normal = posixpath.normpath(value)
        if normal == "/" or ".." in value.split("/"):
            raise ValueError(f"deploy_to {value!r} is not a usable directory")
        if any(c in value for c in "\n\r\0"):
            raise ValueError("deploy_to must not contain control characters")
        return normal

    @field_validator("shared")
    @classmethod
    def _shared(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            if not item or item.startswith("/"):
                raise ValueError(f"shared path {item!r} must be relative to the release")
            normal = posixpath.normpath(item)
            if normal == "." or normal.startswith("..") or ".." in item.split("/"):
                raise ValueError(f"shared path {item!r} leaves the release")
            if any(c in item for c in "\n\r\0"):
                raise ValueError(f"shared path {item!r} contains a control character")
            out.append(normal)
        return out

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
