"""Deployment metrics out of Conveyor: a PUT to a Pushgateway, a file for node_exporter's textfile collector.

The publisher is a deployment subscriber: when a deployment finishes it computes the metrics (see
`conveyor.metrics.deployments`) and sends them wherever `metrics:` says. Nothing here can fail a deployment:
a target that cannot be reached is a warning line on stderr and a `metrics_failed` event in the state store.
A push is made by a caller process (conveyor.notify.calls) killed when `metrics.timeout` is up, so a
Pushgateway that keeps the connection open costs the deployment that long and no longer.
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.engine.events import DeploymentFinished, DeploymentStarted, Event
from conveyor.metrics.exposition import CONTENT_TYPE, render

if TYPE_CHECKING:
    from conveyor.context import DeploymentContext


class MetricsError(Exception):
    """A metrics target refused or could not be reached."""


def group_url(base: str, job: str, grouping: dict[str, str]) -> str:
    """`<base>/metrics/job/<job>/<label>/<value>...`, each part quoted for a URL path."""
    parts = ["metrics", "job", urllib.parse.quote(job, safe="")]
    for name, value in grouping.items():
        parts += [urllib.parse.quote(name, safe=""), urllib.parse.quote(value, safe="")]
    return base.rstrip("/") + "/" + "/".join(parts)


def push(base: str, job: str, grouping: dict[str, str], text: str, *, timeout: float) -> None:
    """Replace the group's metrics on the Pushgateway (HTTP PUT), all within `timeout` seconds; MetricsError if
    it does not accept them in time."""
    from conveyor.notify.calls import CallerProcess, CallFailed, CallTimedOut
    from conveyor.values import format_duration

    url = group_url(base, job, grouping)  # http(s) only: config validation refuses other schemes
    try:
        with CallerProcess() as caller:
            answer = caller.http("PUT", url, headers={"Content-Type": CONTENT_TYPE}, body=text, timeout=timeout)
    except CallTimedOut:
        raise MetricsError(f"no answer within {format_duration(timeout)}") from None
    except CallFailed as exc:
        raise MetricsError(f"cannot reach it: {exc.why}") from exc
    if not 200 <= answer.status < 300:
        said = answer.body.strip().splitlines()
        raise MetricsError(f"HTTP {answer.status}: {said[0][:500] if said else answer.reason}")


def write_textfile(path: Path, text: str) -> None:
    """Replace `path` atomically (a temp file renamed over it), so node_exporter never reads half a file."""
    from conveyor.artifact.store import write_atomically

    if not path.parent.is_dir():
        raise MetricsError(f"{path.parent} is not a directory (node_exporter's textfile directory?)")
    try:
        write_atomically(path, text)
    except OSError as exc:
        raise MetricsError(f"cannot write {path}: {exc}") from exc


class MetricsPublisher:
    """Publishes the deployment metrics of the config's app when a deployment finishes."""

    def __init__(self, context: DeploymentContext) -> None:
        self.context = context
        self.environment = context.environment
        self.started: float | None = None
        self.deployment_id: int | None = None

    def __call__(self, event: Event) -> None:
        """Time the deployment; publish when it ends."""
        match event:
            case DeploymentStarted(id=deployment_id):
                self.started = time.monotonic()
                self.deployment_id = deployment_id
            case DeploymentFinished(result=result):
                seconds = time.monotonic() - self.started if self.started is not None else None
                self.publish(result, seconds)

    def publish(self, result: Any, seconds: float | None) -> None:
        """Compute the metrics and send them to each configured target; failures are warnings."""
        from conveyor.metrics.deployments import collect
        from conveyor.metrics.stack import collect_stack

        context = self.context
        settings = context.config.metrics
        app = context.app
        try:
            if settings.pushgateway:
                # The Pushgateway keeps one group per environment: a push replaces that environment's series.
                families = collect(context.store, app, [self.environment], current=result, current_seconds=seconds)
                families += collect_stack(context.store, app, [self.environment], context.config.consistency)
                grouping = {"app": app, "environment": self.environment}
                self._attempt("pushgateway", settings.pushgateway, lambda: push(
                    settings.pushgateway or "", settings.job, grouping, render(families, drop_labels=grouping),
                    timeout=settings.timeout))
            if settings.textfile:
                # The file is the whole truth for the app: every environment's series.
                path = Path(settings.textfile)
                path = path if path.is_absolute() else context.directory / path
                everywhere = collect(context.store, app, list(context.config.environments), current=result,
                                     current_seconds=seconds)
                everywhere += collect_stack(context.store, app, list(context.config.environments),
                                            context.config.consistency)
                self._attempt("textfile", str(path), lambda: write_textfile(path, render(everywhere)))
        except Exception as exc:  # computing them failed (the state store?): still only a warning
            self._failed("metrics", "", f"{type(exc).__name__}: {exc}")

    def _attempt(self, target: str, where: str, action: Callable[[], None]) -> None:
        try:
            action()
        except MetricsError as exc:
            self._failed(target, where, str(exc))

    def _failed(self, target: str, where: str, reason: str) -> None:
        from conveyor.secrets import mask

        place = f"{target} {where}: " if where else ""
        print(f"conveyor: warning: metrics: {mask(place + reason)}", file=sys.stderr)
        try:
            self.context.store.add_event("metrics_failed", self.context.user, environment=self.environment,
                                    deployment_id=self.deployment_id, target=target, where=where, error=reason)
        except Exception as exc:  # the store is what failed: the warning above has said enough
            print(f"conveyor: warning: metrics: the event was not recorded: {mask(str(exc))}", file=sys.stderr)
