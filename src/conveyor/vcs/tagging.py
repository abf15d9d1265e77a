"""Release tags as a deployment subscriber: each region that moves tags the commit it now runs.

`deploy/<env>/<region>/<release-id>` is made on the release's commit when the region finishes (so a
controller killed later still leaves the tags of the regions that finished), and the deployment's tags are
pushed once it ends, when `git.push` names a remote, within `git.timeout` (git and the ssh or helper it
runs are killed then: a remote that never answers costs that long and no longer). Nothing here can fail a
deployment: a problem is a warning on stderr and an event in the state store.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.engine.events import DeploymentFinished, DeploymentStarted, Event, RegionFinished
from conveyor.vcs.git import GitError, push_tags, tag_release

if TYPE_CHECKING:
    from conveyor.context import DeploymentContext


class ReleaseTagger:
    """Tags each region's release when the region succeeds; pushes the tags when the deployment ends."""

    def __init__(self, context: DeploymentContext, remote: str | None) -> None:
        self.context = context
        self.environment = context.environment
        self.remote = remote
        self.deployment_id: int | None = None
        self.tags: list[str] = []
        self.shas: dict[str, str | None] = {}
        self.stopped = False  # the repository itself is unusable: said once, not once per region

    def __call__(self, event: Event) -> None:
        """Tag on a succeeded region, push at the end."""
        match event:
            case DeploymentStarted(id=deployment_id):
                self.deployment_id = deployment_id
            case RegionFinished(status="succeeded", region=region, release=release) if release and not self.stopped:
                self._guarded(lambda: self.tag(region, release), region=region, release=release)
            case DeploymentFinished() if self.remote and self.tags:
                self._guarded(self.push)

    def tag(self, region: str, release: str) -> None:
        """Tag `release`'s commit for this environment and `region`."""
        from conveyor.vcs.changes import release_commits

        if release not in self.shas:
            context = self.context
            self.shas[release] = release_commits(context.store, context.artifacts, context.app, [release]).get(release)
        sha = self.shas[release]
        if sha is None:
            self._warn("git_tag_failed", f"{release} records no git commit (built outside a git work tree?): "
                       f"{self.environment}/{region} not tagged", region=region, release=release)
            return
        message = (f"{release} deployed to {self.environment}/{region} by {self.context.user}"
                   f" ({self.context.kind}, deployment #{self.deployment_id})")
        try:
            result = tag_release(self.context.directory, self.environment, region, release, sha, message=message)
        except GitError as exc:
            if "not in a git repository" in exc.message or "not installed" in exc.message:
                self.stopped = True
            self._warn("git_tag_failed", exc.message, region=region, release=release)
            return
        if result.status == "conflict":
            self._warn("git_tag_conflict", f"tag {result.tag} already points at {(result.detail or '')[:12]}, "
                       f"not at {sha[:12]}: left as it is", region=region, release=release, tag=result.tag)
            return
        self.tags.append(result.tag)
        if result.status == "created":
            self.context.store.add_event("git_tagged", self.context.user, environment=self.environment,
                                    deployment_id=self.deployment_id, region=region, release=release,
                                    tag=result.tag, sha=sha)

    def push(self) -> None:
        """Push this deployment's tags to the configured remote."""
        assert self.remote is not None
        try:
            push_tags(self.context.directory, self.remote, self.tags, timeout=self.context.config.git.timeout)
        except GitError as exc:
            self._warn("git_push_failed", f"push to {self.remote}: {exc.message}", tags=self.tags)

    def _guarded(self, action: Callable[[], None], **context: Any) -> None:
        try:
            action()
        except Exception as exc:  # a tag is worth a warning, never a failed deployment
            self._warn("git_tag_failed", f"{type(exc).__name__}: {exc}", **context)

    def _warn(self, kind: str, message: str, **data: Any) -> None:
        from conveyor.secrets import mask

        print(f"conveyor: warning: git tags: {mask(message)}", file=sys.stderr)
        try:
            self.context.store.add_event(kind, self.context.user, environment=self.environment,
                                    deployment_id=self.deployment_id, error=message, **data)
        except Exception as exc:  # the state store failing is reported by the deployment itself
            print(f"conveyor: warning: git tags: the event was not recorded: {exc}", file=sys.stderr)
