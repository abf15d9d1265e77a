"""The shape of `conveyor.yml`, as pydantic models. Unknown keys are errors everywhere."""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

# Each kind of check keeps its model in its own module (conveyor.checks); `as` re-exports them from here too.
from conveyor.checks import AlertsCheck as AlertsCheck  # noqa: PLC0414
from conveyor.checks import AnyCheck
from conveyor.checks import Check as Check  # noqa: PLC0414
from conveyor.checks import CommandCheck as CommandCheck  # noqa: PLC0414
from conveyor.checks import HttpCheck as HttpCheck  # noqa: PLC0414
from conveyor.checks import PrometheusCheck as PrometheusCheck  # noqa: PLC0414
from conveyor.config.windows import Window
from conveyor.values import Duration, HostAmount, Int, check_name, describe, http_url, parse_amount

HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
# A DNS name, an IPv4 address, or an IPv6 address (optionally [bracketed], with a %zone).
ADDRESS_RE = re.compile(r"^[A-Za-z0-9\[:][A-Za-z0-9._:%\[\]-]{0,252}$")
# A login name: no spaces, no shell or ssh option syntax; `@` and `\` allow directory (domain) accounts.
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._@\\-]{0,63}$")
# An AWS region: eu-west-2, us-gov-west-1, ap-southeast-3.
AWS_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")


class Strict(BaseModel):
    """Base model: unknown keys are errors, values are not coerced across types silently."""

    model_config = ConfigDict(extra="forbid")


def _name(what: str) -> Any:
    return BeforeValidator(lambda v: check_name(v, what))


AppName = Annotated[str, _name("app")]


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
    agent_forwarding=False,
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


class Artifact(Strict):
    """Where the release comes from and where built releases are kept."""

    build: str | None = None
    delta: bool = True                 # send hosts only what changed since the release they run
    compression: Literal["gzip", "zstd", "none"] = "gzip"  # of the tarball in the store, as hosts receive it
    path: str = "dist"
    store: str = Field(default=".conveyor/artifacts",
                       description="a directory (relative to conveyor.yml) or s3://bucket/prefix")
    stores: dict[str, str] = Field(default_factory=dict, description="region → s3://bucket/prefix: a copy of "
                                   "each release deployed there, so hosts download inside their region")
    endpoint_url: str | None = Field(default=None, description="an S3-compatible endpoint instead of AWS "
                                     "(MinIO, a test server), like http://127.0.0.1:9000")

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if "://" in value:
            if not value.startswith("s3://"):
                raise ValueError(f"expected a directory or s3://bucket/prefix, got {value!r}")
            from conveyor.artifact.s3 import parse_s3_url

            parse_s3_url(value)  # ValueError for a bad bucket name or a '..' in the prefix
        return value

    @field_validator("stores")
    @classmethod
    def _stores(cls, value: dict[str, str]) -> dict[str, str]:
        from conveyor.artifact.s3 import parse_s3_url

        for region, url in value.items():
            check_name(region, "region")
            try:
                parse_s3_url(url)
            except ValueError as exc:
                raise ValueError(f"{region}: {exc}") from None
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(
            value, f"expected an http:// or https:// URL like http://127.0.0.1:9000, got {value!r}")

    @model_validator(mode="after")
    def _s3_settings(self) -> Artifact:
        if not self.store.startswith("s3://") and (self.stores or self.endpoint_url):
            raise ValueError("stores and endpoint_url are for an S3 store: set store: s3://bucket/prefix too")
        return self


NotifyEvent = Literal["started", "succeeded", "failed", "rolled_back", "blocked", "held", "break_glass",
                      "interrupted"]
NOTIFY_EVENTS: tuple[str, ...] = get_args(NotifyEvent)
_APPRISE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_notify_url(value: str) -> str:
    """An Apprise URL: `scheme://...`, one word. The value is never echoed: it may hold a secret."""
    if not _APPRISE_URL.match(value):
        raise ValueError("expected an Apprise URL like slack://TOKEN_A/TOKEN_B/TOKEN_C, "
                         "mailto://user:pass@example.com or json://host/path (the value is not shown: it may "
                         "hold a secret)")
    return value


class NotifyTarget(Strict):
    """One place notifications go, and which of them it wants."""

    url: str = Field(description="an Apprise URL; use ${VAR} for its secrets")
    events: list[NotifyEvent] | None = Field(default=None, description="the events to send; all when left out")
    environments: list[str] | None = Field(default=None, description="only deployments to these environments")
    name: str | None = Field(default=None, min_length=1, max_length=80, description="shown in warnings instead "
                             "of the (masked) URL")
    timeout: Duration = Field(default=5.0, description="how long one message may take to send")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_notify_url(value)

    @field_validator("events", "environments")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("list at least one, or leave the field out for all")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= 300:
            raise ValueError(f"a timeout must be more than zero and at most 5m, got {value:g}s")
        return value

    def wants(self, event: str, environment: str) -> bool:
        """Whether this target asked for `event` of deployments to `environment`."""
        return ((self.events is None or event in self.events)
                and (self.environments is None or environment in self.environments))


def _notify_item(value: Any) -> Any:
    """A notify entry is an Apprise URL (every event), or a mapping {url, events, environments, ...}."""
    if isinstance(value, str):
        return check_notify_url(value)
    if isinstance(value, dict):
        return NotifyTarget.model_validate(value)
    raise ValueError(f"expected an Apprise URL or a mapping like {{url: URL, events: [failed]}}, "
                     f"got {describe(value)}")


# A plain string stays a string (what `notify:` always held); a mapping becomes a NotifyTarget.
NotifyEntry = Annotated[str | NotifyTarget, BeforeValidator(_notify_item, json_schema_input_type=str | NotifyTarget)]


class Grafana(Strict):
    """Annotations on Grafana dashboards: one per region per deployment, from its start to its end."""

    url: str = Field(description="Grafana's base URL, like https://grafana.example.com")
    token_env: str | None = Field(default=None, description="the environment variable holding a service "
                                  "account token (sent as a Bearer token)")
    dashboard_uid: str | None = Field(default=None, min_length=1, description="annotate this dashboard only; "
                                      "organisation-wide when left out")
    timeout: Duration = 5.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        # The URL may hold a secret: the message does not repeat it.
        return http_url(value, "expected Grafana's http:// or https:// URL, like https://grafana.example.com").rstrip("/")

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"expected the name of an environment variable like GRAFANA_TOKEN, got {value!r}")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= 300:
            raise ValueError(f"a timeout must be more than zero and at most 5m, got {value:g}s")
        return value


def _authors(value: Any) -> Any:
    """Emails are matched without regard to case; a handle is any non-empty text (`@alice`, `<@U123>`)."""
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for email, handle in value.items():
        if not isinstance(email, str) or "@" not in email.strip("@"):
            raise ValueError(f"{email!r}: expected a git author email like alice@example.com")
        if not isinstance(handle, str) or not handle.strip():
            raise ValueError(f"{email}: expected a handle like \"@alice\", got {describe(handle)}")
        out[email.strip().lower()] = handle.strip()
    return out


# A git remote's name: no spaces, never an option (it is passed to `git push` as an argument).
GIT_REMOTE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


def _push_remote(value: Any) -> Any:
    """`push: false` (or null) pushes nothing; `push: origin` names the remote the tags go to."""
    if value is None or value is False:
        return None
    if isinstance(value, str) and GIT_REMOTE_RE.match(value):
        return value
    raise ValueError(f"expected false or the name of a git remote like origin, got {describe(value)}")


class GitSettings(Strict):
    """Release tags `deploy/<env>/<region>/<release-id>` on the commit each region now runs."""

    tags: bool = Field(default=False, description="tag the release's commit when a region finishes moving")
    push: Annotated[str | None, BeforeValidator(_push_remote, json_schema_input_type=bool | str | None)] = Field(
        default=None, description="false, or the remote the tags are pushed to when the deployment ends")
    timeout: Duration = Field(default=60.0, description="how long pushing the tags may take (git and what it "
                              "started are stopped then)")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= 600:
            raise ValueError(f"a timeout must be more than zero and at most 10m, got {value:g}s")
        return value

    @model_validator(mode="after")
    def _push_needs_tags(self) -> GitSettings:
        if self.push and not self.tags:
            raise ValueError(f"push: {self.push} sends release tags, so it needs tags: true")
        return self


class MetricsSettings(Strict):
    """Deployment metrics for Prometheus: pushed to a Pushgateway, written for node_exporter, or both."""

    pushgateway: str | None = Field(default=None, description="the Pushgateway's URL, like http://127.0.0.1:9091")
    textfile: str | None = Field(default=None, description="a .prom file in node_exporter's textfile directory "
                                 "(relative to conveyor.yml unless absolute)")
    job: str = Field(default="conveyor", description="the job of the Pushgateway group")
    timeout: Duration = Field(default=5.0, description="how long a push may take")

    @field_validator("pushgateway")
    @classmethod
    def _pushgateway(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return http_url(value, "expected the Pushgateway's http:// or https:// URL, like http://127.0.0.1:9091, "
                               f"got {value!r}").rstrip("/")

    @field_validator("textfile")
    @classmethod
    def _textfile(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(c in value for c in "\n\r\0"):
            raise ValueError(f"{value!r} contains a control character")
        if not value.endswith(".prom") or value.endswith("/.prom"):
            raise ValueError(f"expected a file name ending in .prom (node_exporter reads only those), got {value!r}")
        return value

    @field_validator("job")
    @classmethod
    def _job(cls, value: str) -> str:
        return check_name(value, "job")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= 60:
            raise ValueError(f"a timeout must be more than zero and at most 1m, got {value:g}s")
        return value

    @property
    def enabled(self) -> bool:
        """Whether any target is configured."""
        return bool(self.pushgateway or self.textfile)


def _shared_path(item: str) -> str:
    """A persistent path linked into each release: relative, inside the release, one line."""
    if any(c in item for c in "\n\r\0"):
        raise ValueError(f"shared path {item!r} contains a control character")
    if not item or item.startswith("/"):
        raise ValueError(f"shared path {item!r} must be relative to the release, like log or tmp/uploads")
    normal = posixpath.normpath(item)
    if normal == "." or normal.startswith("..") or ".." in item.split("/"):
        raise ValueError(f"shared path {item!r} leaves the release")
    return normal


class Migrations(Strict):
    """The team's own schema migration tool, and what Conveyor needs to know to run it in the right phase.

    Migrations are files in `dir` (relative to the release: they ship with the code). A file whose first
    non-empty line is `-- conveyor: contract` (or that lies under a `contract/` directory) is a contract
    migration: it runs only once every region runs a release that carries it. The others are expand
    migrations: they run in each region before its code switches.
    """

    dir: str = Field(description="the migrations directory, relative to the release")
    dialect: Literal["mysql", "mariadb", "postgresql"]
    version: str | None = Field(default=None, description="the database server's version, like 8.0.35")
    apply: str = Field(description="applies ONE migration: run in the release directory with "
                                   "CONVEYOR_MIGRATION (its name) and CONVEYOR_MIGRATION_PATH set")
    status: str = Field(description="prints the names of the applied migrations, one per line")
    run_on: str = Field(default="local", description="a role (one of its hosts per region runs the "
                                                     "commands), or `local` (this machine)")
    timeout: Duration = Field(default=600.0, description="how long one command may take")

    @field_validator("dir")
    @classmethod
    def _dir(cls, value: str) -> str:
        normal = posixpath.normpath(value)
        if not value or value.startswith("/") or normal == ".." or normal.startswith("../") \
                or any(c in value for c in "\n\r\0"):
            raise ValueError(f"expected a directory inside the release, like db/migrations, got {value!r}")
        return normal


class Config(Strict):
    """A whole `conveyor.yml`."""

    app: AppName
    artifact: Artifact = Field(default_factory=Artifact)
    deploy_to: str | None = None
    keep_releases: Int = Field(default=5, ge=1, le=1000)
    shared: list[Annotated[str, AfterValidator(_shared_path)]] = Field(default_factory=list)
    ssh: SSHSettings = Field(default_factory=SSHSettings)
    roles: dict[str, Role] = Field(min_length=1)
    environments: dict[str, Environment] = Field(min_length=1)
    windows: dict[str, Window] = Field(default_factory=dict)
    notify: list[NotifyEntry] = Field(default_factory=list, description="Apprise URLs, each alone (every "
                                      "event) or as {url, events, environments, name, timeout}")
    authors: Annotated[dict[str, str], BeforeValidator(_authors)] = Field(
        default_factory=dict, description="git author email → chat handle, named when their commits reach the "
        "end of the promotion path")
    grafana: Grafana | None = None
    git: GitSettings = Field(default_factory=GitSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    migrations: Migrations | None = None
    state: str | None = None

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
