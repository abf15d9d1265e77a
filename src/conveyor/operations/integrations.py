"""The subscribers that tell people and tools about a deployment: notifications, Grafana annotations,
release tags and metrics.

Each one is built from the config for one deployment and receives the engine's events. None of them may
break a deployment: the event bus reports a subscriber that raises and carries on, and each integration
reports its own failures per target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.engine.events import Subscriber

if TYPE_CHECKING:
    from conveyor.operations.deploy import Request
    from conveyor.operations.workspace import Workspace


def integrations(ws: Workspace, request: Request, kind: str) -> list[Subscriber]:
    """Every integration the config asks for, ready to subscribe to one deployment's events."""
    subscribers: list[Subscriber] = []
    if ws.config.notify or ws.config.grafana is not None:
        from conveyor.notify import subscribers as notifications

        subscribers += notifications(ws, request, kind)
    if ws.config.git.tags:
        from conveyor.vcs.tagging import ReleaseTagger

        subscribers.append(ReleaseTagger(ws, request.environment, kind, ws.config.git.push))
    if ws.config.metrics.enabled:
        from conveyor.metrics.publish import MetricsPublisher

        subscribers.append(MetricsPublisher(ws, request.environment))
    return subscribers
