"""Telling people and dashboards about deployments: Apprise notifications and Grafana annotations.

`subscribers(context)` builds, for one deployment, the event subscribers the config asks for (the context is
narrow, conveyor.context: the config, who deploys what where, the stores; never the Workspace):

- a `Notifier` for the `notify:` targets that want this environment (messages: message.py; sending through
  Apprise: apprise_target.py);
- `Annotations` when `grafana:` is set (grafana.py).

Sending happens on one daemon thread per target (delivery.py), so a slow or dead target never holds up
the engine; each call itself is made by a child process killed at the target's timeout (calls.py), so a
target that never finishes answering cannot hold up the end of the deployment or keep the process alive. A
target that fails is reported once (a warning on stderr, a `notify_failed` state event) and the deployment
carries on. Apprise is loaded only in those child processes.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from conveyor.artifact.release import is_release_id
from conveyor.config.models import Config, NotifyTarget
from conveyor.engine.events import Subscriber
from conveyor.errors import ConveyorError
from conveyor.notify.apprise_target import AppriseTarget
from conveyor.notify.ci import job_url
from conveyor.notify.delivery import Courier, Failures, redact
from conveyor.notify.grafana import Annotations, GrafanaAPI
from conveyor.notify.message import Commit, end_of_the_path
from conveyor.notify.notifier import Context, Notifier, Recipient
from conveyor.secrets import register_secret

if TYPE_CHECKING:
    from conveyor.context import DeploymentContext

__all__ = ["subscribers", "targets"]


def targets(config: Config) -> list[NotifyTarget]:
    """Every `notify:` entry as a target: a plain URL wants every event of every environment."""
    return [entry if isinstance(entry, NotifyTarget) else NotifyTarget(url=entry) for entry in config.notify]


def subscribers(context: DeploymentContext) -> list[Subscriber]:
    """The notifier and the annotations one deployment needs (none when the config asks for neither)."""
    config = context.config
    environment = context.environment
    failures = Failures(context.open_store, context.user, environment)
    out: list[Subscriber] = []
    wanted = [t for t in targets(config) if t.environments is None or environment in t.environments]
    if wanted:
        labels = _labels(wanted)
        recipients = []
        for target, label in zip(wanted, labels, strict=True):
            sender = AppriseTarget(target.url, target.timeout)
            recipients.append(Recipient(target, sender, Courier(label, target.timeout, failures,
                                                                grace=sender.startup_left)))
        previous = _pointers(context)
        told = Context(
            app=config.app, environment=environment, kind=context.kind, user=context.user, previous=previous,
            commits=_commits(context, previous), authors=config.authors,
            live_here=environment in end_of_the_path(config), job_url=job_url(os.environ),
            built_dirty=_built_dirty(context),
        )
        out.append(Notifier(told, recipients, failures))
    if config.grafana is not None:
        grafana = config.grafana
        label = f"grafana {redact(grafana.url)}"
        token: str | None = None
        api: GrafanaAPI | None = None
        if grafana.token_env is not None:
            token = os.environ.get(grafana.token_env, "").strip() or None
            if token is None:
                failures.add(label, f"{grafana.token_env} is not set: no annotations for this deployment")
            else:
                register_secret(token)
        if token is not None or grafana.token_env is None:
            api = GrafanaAPI(grafana.url, token, grafana.timeout)
        courier = Courier(label, grafana.timeout, failures, grace=api.startup_left if api is not None else None)
        out.append(Annotations(api, courier, failures, app=config.app,
                               environment=environment, kind=context.kind, user=context.user,
                               dashboard_uid=grafana.dashboard_uid))
    return out


def _labels(wanted: Sequence[NotifyTarget]) -> list[str]:
    """How each target is named in warnings: its name, or its URL with every secret part left out."""
    labels: list[str] = []
    for number, target in enumerate(wanted, start=1):
        label = target.name or redact(target.url)
        labels.append(label if label not in labels else f"{label} (#{number})")
    return labels


def _built_dirty(context: DeploymentContext) -> Callable[[str | None], str | None]:
    """release → "uncommitted changes on top of COMMIT (diff HASH)" when its record says it was built from a
    dirty work tree; None for a clean build or when the store cannot say."""
    def note(release: str | None) -> str | None:
        if not release:
            return None
        try:
            manifest = context.store.release_manifest(release) or {}
        except ConveyorError:
            return None
        if not manifest.get("dirty"):
            return None
        commit = str((manifest.get("git") or {}).get("sha") or "")[:8]
        return (f"uncommitted changes on top of {commit or 'its commit'} "
                f"(diff {str(manifest.get('diff_sha256') or '')[:12]})")

    return note


def _pointers(context: DeploymentContext) -> dict[str, str | None]:
    """region → the release it ran before this deployment; nothing when the store cannot say (a message
    without "previous" is better than a deployment stopped for it)."""
    try:
        pointers = context.store.pointers(context.environment)
    except ConveyorError:
        return {}
    return {region: entry.get("release") for region, entry in pointers.items()}


def _commits(context: DeploymentContext,
             previous: Mapping[str, str | None]) -> Callable[[str | None], Sequence[Commit]]:
    """What went out with a release: the commits between what the regions ran before (the most common
    previous release) and it, from git; the release's own head commit when git cannot say (no work tree, a
    shallow clone, a release built elsewhere)."""

    def commits(release: str | None) -> Sequence[Commit]:
        if not release or not is_release_id(release):
            return ()
        before = Counter(r for r in previous.values() if r and r != release).most_common(1)
        try:
            from conveyor.vcs.changes import Comparer, release_commits

            comparer = Comparer(context.directory, lambda ids: release_commits(
                context.store, context.artifacts, context.app, ids))
            changes = comparer.compare(release, before[0][0] if before else None)
        except ConveyorError:
            changes = None
        if changes is not None and changes.commits:
            return tuple(Commit(c.sha, c.author, c.email, c.subject) for c in changes.commits)
        return head_commit(context, release)

    return commits


def head_commit(context: DeploymentContext, release: str) -> Sequence[Commit]:
    """The head commit a release's manifest records (no network: a remote store's manifest is in its local
    cache once the release was deployed from here)."""
    try:
        known = context.artifacts.cached(release)
    except (OSError, ValueError, ConveyorError):
        return ()
    git = known.git if known is not None else None
    if not isinstance(git, dict) or not git.get("sha"):
        return ()
    return (Commit.from_git(git),)
