"""The subscriber that tells people: it turns a deployment's events into messages for each target."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol

from conveyor.config.models import NotifyTarget
from conveyor.engine.events import BreakGlass, DeploymentBlocked, DeploymentFinished, DeploymentStarted, Event
from conveyor.engine.results import DeploymentResult
from conveyor.notify.delivery import Courier, Failures
from conveyor.notify.message import (
    Commit,
    Facts,
    Message,
    compose,
    drift_of,
    ends_of,
    failed_hosts_of,
    live_for,
    previous_of,
)


class Sender(Protocol):
    """Anything that sends a message to one place, raising DeliveryError when it cannot."""

    def send(self, message: Message) -> None:
        """Send one message."""

    def close(self) -> None:
        """Let go of what sending holds (a process, a connection); sending again starts over."""


@dataclass
class Recipient:
    """A target, what it wants, how it is sent to, and the courier that carries its messages."""

    target: NotifyTarget
    sender: Sender
    courier: Courier


@dataclass
class Context:
    """What the notifier knows before the first event: the deployment's who, where and what."""

    app: str
    environment: str
    kind: str
    user: str
    previous: Mapping[str, str | None] = field(default_factory=dict)  # region pointers before it started
    commits: Callable[[str | None], Sequence[Commit]] = lambda _release: ()
    authors: Mapping[str, str] = field(default_factory=dict)
    live_here: bool = False             # the end of the promotion path: name the authors when it succeeds
    job_url: str | None = None
    # release → a note when it was built from uncommitted changes ("uncommitted changes on top of 1a2b3c4d"),
    # None for a clean build: the commit alone would not say what shipped.
    built_dirty: Callable[[str | None], str | None] = lambda _release: None


class Notifier:
    """Builds one message per event a target wants and hands it to that target's courier."""

    def __init__(self, context: Context, recipients: Sequence[Recipient], failures: Failures) -> None:
        self.context = context
        self.recipients = list(recipients)
        self.failures = failures
        self.deployment_id: int | None = None
        self.started: float | None = None
        self.regions: tuple[str, ...] = ()
        self.release: str | None = None
        self.reason: str | None = None

    def __call__(self, event: Event) -> None:
        """React to the events people hear about; every other event only reports failures so far."""
        match event:
            case DeploymentStarted():
                self._on_deployment_started(event)
            case BreakGlass(release=release, reason=reason):
                self._send(replace(self._facts("break_glass"), release=release or self.release, reason=reason))
            case DeploymentBlocked():
                self._on_deployment_blocked(event)
            case DeploymentFinished(result=result):
                self._on_deployment_finished(result)
        self.failures.flush(self.deployment_id)

    # -- events -------------------------------------------------------------------------------------------
    def _on_deployment_started(self, event: DeploymentStarted) -> None:
        self.deployment_id, self.started = event.id, time.monotonic()
        self.release, self.reason = event.release, event.reason
        self.regions = tuple(r.region for r in event.plan.regions)
        self._send(self._facts("started"))

    def _on_deployment_blocked(self, event: DeploymentBlocked) -> None:
        self.deployment_id, self.release, self.regions = event.id, event.release, tuple(event.regions)
        self._send(replace(self._facts("blocked"), summary=event.reason))
        self._drain()

    def _on_deployment_finished(self, result: DeploymentResult) -> None:
        if self.deployment_id is None:
            self.deployment_id = result.id
        status = str(result.status)
        release = result.release or self.release
        commits = tuple(self.context.commits(release)) if release else ()
        facts = replace(
            self._facts(status),
            regions=tuple(r.region for r in result.regions) or self.regions,
            release=release,
            previous=previous_of(result) or dict(self.context.previous),
            ends=ends_of(result),
            duration=time.monotonic() - self.started if self.started is not None else None,
            failed_hosts=failed_hosts_of(result),
            commits=commits,
            summary=result.message,
            dirty=self.context.built_dirty(release),
            drift=drift_of(result),
        )
        if status == "succeeded" and self.context.kind == "deploy" and self.context.live_here:
            facts = replace(facts, live_for=live_for(commits, self.context.authors))
        self._send(facts)
        self._drain()

    # -- sending ------------------------------------------------------------------------------------------
    def _facts(self, event: str) -> Facts:
        context = self.context
        previous = {region: context.previous.get(region) for region in self.regions} if self.regions \
            else dict(context.previous)
        return Facts(event=event, app=context.app, environment=context.environment, kind=context.kind,
                     user=context.user, regions=self.regions, release=self.release, previous=previous,
                     reason=self.reason, job_url=context.job_url, dirty=context.built_dirty(self.release))

    def _send(self, facts: Facts) -> None:
        wanted = [r for r in self.recipients if r.target.wants(facts.event, self.context.environment)]
        if not wanted:
            return
        message = compose(facts)
        for recipient in wanted:
            recipient.courier.post(partial(recipient.sender.send, message), facts.event)

    def _drain(self) -> None:
        # Every courier's wait starts now: they send side by side, so the longest wait bounds them all.
        deadlines = [recipient.courier.deadline() for recipient in self.recipients]
        for recipient, deadline in zip(self.recipients, deadlines, strict=True):
            recipient.courier.drain(deadline)
        for recipient in self.recipients:
            recipient.sender.close()
