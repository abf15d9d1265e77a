"""A loaded config with the things built from it: the state store, the artifact store, transports."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.config.loader import LoadedConfig, load_config
from conveyor.config.models import SSH_DEFAULTS, Config, SSHSettings
from conveyor.engine.limits import Limits
from conveyor.errors import UsageError
from conveyor.identity import current_user
from conveyor.inventory import Host, static_hosts
from conveyor.transport.base import Transport

if TYPE_CHECKING:  # the store (SQLAlchemy) and the artifact store load when a command first uses them
    from conveyor.artifact import LocalStore
    from conveyor.state.store import Store


@dataclass
class Workspace:
    """Everything a command needs, created lazily so cheap commands stay cheap."""

    loaded: LoadedConfig
    user: str = field(default_factory=current_user)

    @classmethod
    def load(cls, config_file: str | Path | None) -> Workspace:
        """Load and validate the config file."""
        return cls(load_config(config_file))

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
        """CONVEYOR_STATE_URL, then `state:` in the config, then a SQLite file beside the config."""
        default = f"sqlite:///{self.directory / '.conveyor' / 'state.db'}"
        return os.environ.get("CONVEYOR_STATE_URL") or self.config.state or default

    @cached_property
    def store(self) -> Store:
        """The state store, opened on first use."""
        from conveyor.state.store import Store

        return Store(self.state_url, self.config.app)

    @cached_property
    def artifacts(self) -> LocalStore:
        """The local artifact store."""
        from conveyor.artifact import LocalStore

        store = self.config.artifact.store
        if store.startswith("s3://"):
            raise UsageError("artifact.store: s3:// stores are not supported by this version yet")
        return LocalStore(self.directory / store)

    def environment(self, name: str) -> None:
        """Raise a UsageError unless `name` is an environment of the config."""
        if name not in self.config.environments:
            raise UsageError(f"unknown environment {name!r}; known: {', '.join(self.config.environments)}")

    def hosts(self, env: str) -> dict[str, list[Host]]:
        """region → hosts of an environment."""
        self.environment(env)
        return static_hosts(self.config, env)

    def local_root(self, env: str) -> Path:
        """Where local hosts live."""
        configured = self.config.environments[env].local_root
        return (self.directory / configured) if configured else self.directory / ".conveyor" / "hosts"

    def transport(self, env: str) -> Transport:
        """The transport of an environment."""
        kind = self.config.environments[env].transport
        if kind == "local":
            from conveyor.transport.local import LocalTransport

            return LocalTransport(self.local_root(env))
        from conveyor.transport.ssh import SSHTransport

        def settings_for(host: Host) -> SSHSettings:
            settings = self.config.ssh_for(env, host.region).merged(host.ssh)
            paths = {}
            for name in ("identity_file", "known_hosts_file"):
                value = getattr(settings, name)
                if value and not value.startswith(("/", "~")):
                    paths[name] = str(self.directory / value)  # relative to the config file
            return settings.model_copy(update=paths) if paths else settings

        return SSHTransport(settings_for)

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
        settings = SSH_DEFAULTS.merged(self.config.ssh).merged(self.config.environments[env].ssh)
        return settings.max_concurrency or 64

    def close(self) -> None:
        """Close the state store if it was opened."""
        if "store" in self.__dict__:
            self.store.close()
