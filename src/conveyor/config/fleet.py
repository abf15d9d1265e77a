"""The fleet in `conveyor.yml`: roles, environments and their regions, the hosts in them, how hosts are found
(`inventory:`) and reached (`ssh:`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from conveyor.checks import AnyCheck
from conveyor.config.base import Strict
from conveyor.values import Duration, HostAmount, Int, describe, http_url, parse_amount

HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
# A DNS name, an IPv4 address, or an IPv6 address (optionally [bracketed], with a %zone).
ADDRESS_RE = re.compile(r"^[A-Za-z0-9\[:][A-Za-z0-9._:%\[\]-]{0,252}$")
# A login name: no spaces, no shell or ssh option syntax; `@` and `\` allow directory (domain) accounts.
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._@\\-]{0,63}$")
# An AWS region: eu-west-2, us-gov-west-1, ap-southeast-3.
AWS_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")


def check_user(value: str | None) -> str | None:
    """A login name that is safe to hand to ssh: not an option, no spaces or shell syntax."""
    if value is not None and not USER_RE.match(value):
        raise ValueError(f"user {value!r} must start with a letter, digit or '_' and use only letters, digits, "
                         "'.', '_', '-', '@', '\\'")
    return value


def check_jump(value: str) -> None:
    """A bastion as `[user@]host[:port]` (IPv6 in brackets), read the way the SSH transport reads it."""
    user, at, rest = value.rpartition("@")
    host, port = rest, ""
    if rest.startswith("["):
        inside, _, tail = rest[1:].partition("]")
        host, port = inside, tail[1:] if tail.startswith(":") else tail
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    if (at and not USER_RE.match(user)) or not host or not ADDRESS_RE.match(host) or \
            (port and not (port.isdigit() and 1 <= int(port) <= 65535)):
        raise ValueError(f"expected [user@]host[:port] like deploy@bastion.example.com:22, got {value!r}")


class SSHSettings(Strict):
    """How to reach hosts over SSH; any level (top, environment, region, host) may override a field."""

    user: str | None = None
    port: Int | None = Field(default=None, ge=1, le=65535)
    identity_file: str | None = None
    jump: str | None = Field(default=None, description="ProxyJump: [user@]host[:port] of a bastion")
    known_hosts: Literal["strict", "accept-new"] | None = None
    known_hosts_file: str | None = None
    connect_timeout: Duration | None = None
    command_timeout: Duration | None = None
    max_concurrency: Int | None = Field(default=None, ge=1, le=4096)
    agent_forwarding: bool | None = Field(default=None, description="forward the local SSH agent to hosts "
                                          "(default false, whatever ~/.ssh/config says)")
    client: Literal["openssh", "asyncssh"] | None = Field(
        default=None, description="the SSH client: asyncssh (in-process, the default) or openssh (the `ssh` "
                                  "command, one multiplexed master per host)")

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        return check_user(value)

    @field_validator("jump")
    @classmethod
    def _jump(cls, value: str | None) -> str | None:
        if value is not None:
            check_jump(value)
        return value

    def merged(self, override: SSHSettings | None) -> SSHSettings:
        """These settings with every field `override` sets replacing ours."""
        if override is None:
            return self
        data = self.model_dump()
        data.update(override.model_dump(exclude_none=True))
        return SSHSettings.model_validate(data)


SSH_DEFAULTS = SSHSettings(
    port=22, known_hosts="strict", connect_timeout=10.0, command_timeout=600.0, max_concurrency=64,
    agent_forwarding=False, client="asyncssh",
)


class Role(Strict):
    """What a kind of host does: how it restarts, how it is checked, how many move at once."""

    restart: str | None = None
    checks: list[AnyCheck] = Field(default_factory=list)
    canary: HostAmount = Field(default_factory=lambda: parse_amount(1))
    canary_bake: Duration | None = None
    batch: HostAmount = Field(default_factory=lambda: parse_amount("25%"))
    max_failures: HostAmount = Field(default_factory=lambda: parse_amount(0))


class HostSpec(Strict):
    """One host: its name, and how to reach it when that differs from the name."""

    name: str
    address: str | None = None
    port: Int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    ssh: SSHSettings | None = None

    @field_validator("name")
    @classmethod
    def _host_name(cls, value: str) -> str:
        return check_host_name(value)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not ADDRESS_RE.match(value):
            raise ValueError(f"address {value!r} is not a host name or IP address")
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        return check_user(value)


def check_host_name(value: str) -> str:
    """A host name that is safe as a directory name, a shell word and an ssh argument."""
    if not HOST_NAME_RE.match(value):
        raise ValueError(
            f"host name {value!r} must start with a letter or digit and use only letters, digits, '.', '_', '-'"
        )
    return value


def _host_list(value: Any) -> Any:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of host names like [web-1, web-2], got {describe(value)}")
    return value


def _host_item(value: Any) -> Any:
    """A host is a name, or a mapping {name, address, port, user, labels}."""
    if isinstance(value, str):
        return {"name": check_host_name(value)}
    if isinstance(value, dict):
        return value
    raise ValueError(f"expected a host name or a mapping like {{name: web-1, address: 10.0.0.1}}, "
                     f"got {describe(value)}")


# In the JSON Schema too, a host is a name or a mapping.
HostEntry = Annotated[HostSpec, BeforeValidator(_host_item, json_schema_input_type=str | HostSpec)]


def _one_or_more(value: Any) -> Any:
    """One Auto Scaling group name or a list of them."""
    return [value] if isinstance(value, str) else value


GroupNames = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_one_or_more), Field(min_length=1)]
TagFilter = Annotated[dict[str, str], Field(min_length=1)]


class AwsInventory(Strict):
    """EC2 instances found with boto3: members of Auto Scaling groups, or instances with tags, per role."""

    region: str = Field(description="the AWS region to ask, like eu-west-2")
    groups: dict[str, GroupNames] = Field(
        default_factory=dict, description="role → Auto Scaling group name(s); only InService instances count")
    tags: dict[str, TagFilter] = Field(
        default_factory=dict, description="role → tags an instance must all have, like {Role: web, Env: prod}")
    address: Literal["private", "public"] = "private"
    name_tag: str | None = Field(default=None, min_length=1, max_length=128,
                                 description="the tag whose value names a host (default: the instance id)")
    endpoint_url: str | None = None
    profile: str | None = Field(default=None, min_length=1)
    retries: Int = Field(default=2, ge=0, le=10)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not AWS_REGION_RE.match(value):
            raise ValueError(f"expected an AWS region like eu-west-2, got {value!r}")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value, f"expected an http:// or https:// URL, got {value!r}")

    @model_validator(mode="after")
    def _something_to_find(self) -> AwsInventory:
        if not self.groups and not self.tags:
            raise ValueError("an aws inventory needs groups: {role: ASG name} or tags: {role: {Tag: value}}")
        return self


class Inventory(Strict):
    """Where a region's hosts come from when a deployment starts: a local program, or AWS."""

    command: str | None = Field(default=None, min_length=1,
                                description="run with sh in the config's directory; prints JSON role → hosts")
    aws: AwsInventory | None = None
    timeout: Duration = Field(default=30.0, description="how long the command (or one AWS call) may take")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("a timeout must be more than zero, like 30s")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Inventory:
        if self.command is not None and self.aws is not None:
            raise ValueError("an inventory is one of command: or aws:, not both")
        if self.command is None and self.aws is None:
            raise ValueError("an inventory needs command: TEXT or aws: {region, groups or tags}")
        return self

    def describe(self) -> str:
        """The provider, for messages: `command './inventory.sh ca'` or `aws eu-west-2`."""
        return f"command {self.command!r}" if self.aws is None else f"aws {self.aws.region}"


class Region(Strict):
    """A part of an environment with its own hosts: listed under `hosts:`, found by `inventory:`, or both."""

    hosts: dict[str, Annotated[list[HostEntry], BeforeValidator(_host_list)]] = Field(default_factory=dict)
    inventory: Inventory | None = None
    ssh: SSHSettings | None = None


class Environment(Strict):
    """A stage of the promotion path (staging, production) made of regions."""

    transport: Literal["local", "ssh"] = "ssh"
    # push: the controller sends each host the release over its connection; pull: each host downloads it
    # from the artifact store itself (a presigned URL of its region's S3 store), so the controller's link
    # is not the bottleneck. Small changes still go as deltas over the connection either way.
    transfer: Literal["push", "pull"] = "push"
    local_root: str | None = None
    promote_from: str | None = None
    waves: list[list[str]] | None = None
    bake: Duration | None = None
    checks: list[AnyCheck] = Field(default_factory=list)
    on_failure: Literal["rollback", "halt"] = "rollback"
    approval: Literal["required", "none"] = "none"
    approval_expires: Duration = 86400.0
    auto: bool = False
    window: str | None = None
    migration_window: str | None = None
    # Whether a release built from a working tree with uncommitted changes may go here. Unset: allowed,
    # except where a release must be promoted from elsewhere or approved (what was tested or approved must
    # be what a commit says).
    allow_dirty: bool | None = None
    ssh: SSHSettings | None = None
    regions: dict[str, Region] = Field(min_length=1)

    @property
    def dirty_allowed(self) -> bool:
        """allow_dirty, or its default for this environment."""
        if self.allow_dirty is not None:
            return self.allow_dirty
        return self.promote_from is None and self.approval != "required"

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
