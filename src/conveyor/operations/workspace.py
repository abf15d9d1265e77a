"""A loaded config with the things built from it: the state store, the artifact store, transports."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.config.loader import LoadedConfig, load_config
from conveyor.config.models import SSH_DEFAULTS, Config, SSHSettings
from conveyor.engine.limits import Limits
from conveyor.errors import UsageError
from conveyor.identity import current_user
from conveyor.inventory import Host, Provider, region_hosts
from conveyor.secrets import register_url
from conveyor.transport.base import Transport

if TYPE_CHECKING:  # the store (SQLAlchemy) and the artifact store load when a command first uses them
    from conveyor.artifact import ArtifactStore
    from conveyor.engine.plan import Plan
    from conveyor.state.store import Store
    from conveyor.transport.early import EarlyConnections


@dataclass(init=False)
class Workspace:
    """Everything a command needs, created lazily so cheap commands stay cheap.

    What a command would build from the config can be given instead (tests, plug-ins, the demo): inventory
    `providers` per (environment, region), `transports` per environment (transport/mock.py ships one that
    records and answers), and the state store's `state_url`.
    """

    loaded: LoadedConfig
    user: str
    # (environment, region) → a provider used instead of the region's `inventory:`.
    providers: dict[tuple[str, str], Provider]
    # environment → the transport used instead of the one its `transport:` names.
    transports: dict[str, Transport]
    # The state store's URL when given: it wins over CONVEYOR_STATE_URL and `state:` (never shown: a password).
    given_state_url: str | None = field(repr=False)
    # (environment, region) → its hosts as last read: providers are asked once unless a refresh is asked for.
    _hosts: dict[tuple[str, str], list[Host]] = field(repr=False)
    # environment → TCP connections to its first hosts, opened while the command starts (see `warm`).
    _early: dict[str, EarlyConnections] = field(repr=False)

    def __init__(self, loaded: LoadedConfig, user: str | None = None,
                 providers: Mapping[tuple[str, str], Provider] | None = None, *,
                 transports: Mapping[str, Transport] | None = None, state_url: str | None = None) -> None:
        self.loaded = loaded
        self.user = current_user() if user is None else user
        self.providers = dict(providers or {})
        self.transports = dict(transports or {})
        self.given_state_url = state_url
        self._hosts = {}
        self._early = {}

    @classmethod
    def load(cls, config_file: str | Path | None, *, transports: Mapping[str, Transport] | None = None,
             state_url: str | None = None) -> Workspace:
        """Load and validate the config file."""
        return cls(load_config(config_file), transports=transports, state_url=state_url)

    @property
    def config(self) -> Config:
        """The validated configuration."""
        return self.loaded.config

    @property
    def directory(self) -> Path:
        """The config's directory."""
        return self.loaded.directory

    @cached_property
    def state_url(self) -> str:
        """The URL given to the workspace, else CONVEYOR_STATE_URL, then `state:` in the config, then a SQLite
        file beside the config."""
        default = f"sqlite:///{self.directory / '.conveyor' / 'state.db'}"
        url = self.given_state_url or os.environ.get("CONVEYOR_STATE_URL") or self.config.state or default
        register_url(url)  # its password is a secret wherever the URL is quoted (an error, a log line)
        return url

    @cached_property
    def store(self) -> Store:
        """The state store, opened on first use."""
        from conveyor.state.store import Store

        return Store(self.state_url, self.config.app)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        """The artifact store: a local directory, or an S3Store (a bucket, cached under .conveyor/cache/s3)."""
        from conveyor.artifact import LocalStore

        artifact = self.config.artifact
        if artifact.store.startswith("s3://"):
            from conveyor.artifact.s3 import S3Store

            return S3Store(artifact.store, self.directory / ".conveyor" / "cache" / "s3",
                           endpoint_url=artifact.endpoint_url, regions=artifact.stores)
        return LocalStore(self.directory / artifact.store)

    def environment(self, name: str) -> None:
        """Raise a UsageError unless `name` is an environment of the config."""
        if name not in self.config.environments:
            raise UsageError(f"unknown environment {name!r}; known: {', '.join(self.config.environments)}")

    def hosts(self, env: str, regions: Sequence[str] | None = None, *, refresh: bool = False) -> dict[str, list[Host]]:
        """region → hosts of an environment (or of `regions` only; none means all, as on the command line):
        the hosts the config lists first, then those its inventory provider finds.

        Inventory providers are asked the first time a region is needed and the answer is kept for this
        workspace; `refresh=True` asks them again (to catch hosts that appeared during a deployment).
        Raises InventoryError when a provider fails, before anything has been changed anywhere.
        """
        self.environment(env)
        known = self.config.environments[env].regions
        for region in regions or []:
            if region not in known:
                raise UsageError(f"unknown region {region!r} in {env}; known: {', '.join(known)}")
        wanted = [r for r in known if not regions or r in regions]
        stale = [r for r in wanted if refresh or (env, r) not in self._hosts]
        if stale:
            injected = {region: p for (e, region), p in self.providers.items() if e == env}
            for region, hosts in region_hosts(self.config, env, stale, self.directory, injected).items():
                self._hosts[(env, region)] = hosts
        return {region: list(self._hosts[(env, region)]) for region in wanted}

    def local_root(self, env: str) -> Path:
        """Where local hosts live."""
        configured = self.config.environments[env].local_root
        return (self.directory / configured) if configured else self.directory / ".conveyor" / "hosts"

    def transport(self, env: str) -> Transport:
        """The transport of an environment: the one given for it, or the one its `transport:` names."""
        if env in self.transports:
            return self.transports[env]
        kind = self.config.environments[env].transport
        if kind == "local":
            from conveyor.transport.local import LocalTransport

            return LocalTransport(self.local_root(env))
        from conveyor.transport.clients import SSHClients

        return SSHClients(self._ssh_settings(env), early=self._early.get(env))

    def warm(self, env: str, plan: Plan) -> None:
        """Open TCP connections to the hosts `plan` moves first (each role's first batch in the first wave),
        in the background, while the command goes on starting (its state store, the lock, the gates): the
        round trip and each SSH server's start are over when the engine reaches the host (transport/early.py).

        Only for hosts the asyncssh client reaches directly, and only without ~/.ssh/config, which could send
        a host some other way (asyncssh reads it). A transport given for the environment is left alone."""
        if env in self.transports or env in self._early or self.config.environments[env].transport != "ssh":
            return
        if Path(os.path.expanduser("~/.ssh/config")).exists():
            return
        settings_for = self._ssh_settings(env)
        endpoints = []
        for region in plan.waves[0] if plan.waves else ():
            for role in region.roles:
                for host in role.batches[0].hosts if role.batches else ():
                    settings = settings_for(host)
                    if not settings.jump and (settings.client or "asyncssh") == "asyncssh":
                        endpoints.append((host.address, host.port or settings.port or 22))
        if endpoints:
            from conveyor.transport.early import EarlyConnections

            settings = self._environment_ssh(env)
            self._early[env] = EarlyConnections(endpoints[:settings.max_concurrency or 64],
                                                settings.connect_timeout or 10.0)

    def _ssh_settings(self, env: str) -> Callable[[Host], SSHSettings]:
        """A host's merged ssh settings, with the identity and known_hosts files found beside the config."""
        # A region's hosts without ssh settings of their own share the region's: merged once, not per host and
        # per use (each merge validates a model; a connection asks twice, 100 hosts ask at once).
        by_region: dict[str, SSHSettings] = {}

        def settings_for(host: Host) -> SSHSettings:
            if host.ssh is None and host.region in by_region:
                return by_region[host.region]
            settings = self.config.ssh_for(env, host.region).merged(host.ssh)
            paths = {}
            for name in ("identity_file", "known_hosts_file"):
                value = getattr(settings, name)
                if value and not value.startswith(("/", "~")):
                    paths[name] = str(self.directory / value)  # relative to the config file
            made = settings.model_copy(update=paths) if paths else settings
            if host.ssh is None:
                by_region[host.region] = made
            return made

        return settings_for

    def limits(self, env: str) -> dict[str, Limits]:
        """Each region's connect and command timeouts and concurrency, from its merged `ssh:` settings."""
        out = {}
        for region in self.config.environments[env].regions:
            settings = self.config.ssh_for(env, region)
            out[region] = Limits(connect_timeout=settings.connect_timeout or 10.0,
                                 command_timeout=settings.command_timeout or 600.0,
                                 max_concurrency=settings.max_concurrency or 64)
        return out

    def concurrency(self, env: str) -> int:
        """Hosts at once across an environment: its own (or the top-level) `ssh.max_concurrency`."""
        return self._environment_ssh(env).max_concurrency or 64

    def _environment_ssh(self, env: str) -> SSHSettings:
        """An environment's own `ssh:` over the top-level one over the defaults (its regions' aside)."""
        return SSH_DEFAULTS.merged(self.config.ssh).merged(self.config.environments[env].ssh)

    def close(self) -> None:
        """Close the state store if it was opened, and the early connections no host took."""
        for early in self._early.values():
            early.close()
        self._early.clear()
        if "store" in self.__dict__:
            self.store.close()
