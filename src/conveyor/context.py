"""What an integration (notify, metrics, vcs) is given about the one deployment it listens to.

Integrations sit above the engine and below the operations: they hear a deployment's events, but they are
not handed the `Workspace`, which could find hosts, open transports and change the fleet. The operation
builds a `DeploymentContext` for each deployment (operations/integrations.py) with what they may read: the
config, where it lives, who deploys what kind of deployment where, and the two stores, opened only when an
integration first asks for one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.config.models import Config

if TYPE_CHECKING:  # the stores load SQLAlchemy and boto3: only when a deployment needs them
    from conveyor.artifact import ArtifactStore
    from conveyor.state.store import Store


@dataclass(frozen=True)
class DeploymentContext:
    """One deployment as its integrations see it."""

    config: Config
    directory: Path  # the config's directory: relative paths in the config, the git work tree around it
    environment: str
    kind: str  # "deploy" or "rollback"
    user: str
    open_store: Callable[[], Store] = field(repr=False)
    open_artifacts: Callable[[], ArtifactStore] = field(repr=False)

    @property
    def app(self) -> str:
        """The app being deployed (what the state store keys everything by)."""
        return self.config.app

    @property
    def store(self) -> Store:
        """The state store: events, pointers, history."""
        return self.open_store()

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store: releases and their manifests."""
        return self.open_artifacts()
