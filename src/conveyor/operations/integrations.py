"""The subscribers that tell people and tools about a deployment: notifications, Grafana annotations,
release tags and metrics.

Each one is built from the config for one deployment and receives the engine's events. None of them is
given the Workspace: `context()` hands them a narrow `DeploymentContext` (the config, who deploys what
where, the stores), so an integration cannot reach hosts or transports. None of them may break a
deployment: the event bus reports a subscriber that raises and carries on, and each integration reports its
own failures per target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.context import DeploymentContext
from conveyor.engine.events import Subscriber

if TYPE_CHECKING:
    from conveyor.operations.request import Request
    from conveyor.operations.workspace import Workspace


def context(ws: Workspace, environment: str, kind: str) -> DeploymentContext:
    """What the integrations of one deployment to `environment` may know; the stores open when first asked."""
    return DeploymentContext(
        config=ws.config, directory=ws.directory, environment=environment, kind=kind, user=ws.user,
        open_store=lambda: ws.store, open_artifacts=lambda: ws.artifacts,
    )


def integrations(ws: Workspace, request: Request, kind: str) -> list[Subscriber]:
    """Every integration the config asks for, ready to subscribe to one deployment's events."""
    told = context(ws, request.environment, kind)
    subscribers: list[Subscriber] = []
    if ws.config.notify or ws.config.grafana is not None:
        from conveyor.notify import subscribers as notifications

        subscribers += notifications(told)
    if ws.config.git.tags:
        from conveyor.vcs.tagging import ReleaseTagger

        subscribers.append(ReleaseTagger(told, ws.config.git.push))
    if ws.config.metrics.enabled:
        from conveyor.metrics.publish import MetricsPublisher

        subscribers.append(MetricsPublisher(told))
    return subscribers
