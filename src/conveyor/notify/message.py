"""What a notification says: a title and a plain-text body, made from the facts of one deployment.

Everything here is pure: the notifier gathers the facts from the engine's events, `compose` writes the
words. Every piece of text that came from a host or a person passes through `mask`, so a secret that
reached an error message never reaches a chat channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.gates.drift import names, shown
from conveyor.secrets import mask
from conveyor.values import format_duration

if TYPE_CHECKING:
    from conveyor.config.models import Config
    from conveyor.engine.results import DeploymentResult

MAX_LINE = 300        # one host's error, one commit subject: enough to understand, short enough for chat
MAX_FAILED_HOSTS = 10  # a whole region failing is one story, not a hundred lines


@dataclass(frozen=True)
class Commit:
    """A commit that went out with a release."""

    sha: str
    author: str
    email: str
    subject: str

    @classmethod
    def from_git(cls, git: Mapping[str, Any]) -> Commit:
        """The head commit a release manifest records (`git:` sha, author, author_email, subject)."""
        return cls(sha=str(git.get("sha") or ""), author=str(git.get("author") or ""),
                   email=str(git.get("author_email") or ""), subject=str(git.get("subject") or ""))


@dataclass(frozen=True)
class FailedHost:
    """A host that failed, where and why."""

    host: str
    region: str
    step: str | None
    why: str


@dataclass(frozen=True)
class RegionEnd:
    """How one region ended."""

    region: str
    status: str
    message: str | None = None


@dataclass(frozen=True)
class Facts:
    """All a message may say about a deployment at one moment of it."""

    event: str                                   # started, succeeded, failed, rolled_back, blocked, ...
    app: str
    environment: str
    kind: str                                    # deploy or rollback
    user: str
    regions: tuple[str, ...]
    release: str | None
    previous: Mapping[str, str | None] = field(default_factory=dict)  # region → what it ran before
    ends: tuple[RegionEnd, ...] = ()
    duration: float | None = None
    failed_hosts: tuple[FailedHost, ...] = ()
    commits: tuple[Commit, ...] = ()
    live_for: tuple[str, ...] = ()               # people to tell their change is live (handles or names)
    reason: str | None = None                    # the person's reason (break glass, rollback) or the gate's
    summary: str | None = None                   # the deployment's own one-line account of what went wrong
    job_url: str | None = None
    dirty: str | None = None                     # built from uncommitted changes: what the commit does not say
    drift: tuple[str, ...] = ()                  # components its hosts disagree on (consistency), one line each


@dataclass(frozen=True)
class Message:
    """A notification: title, body, and how it looks (Apprise's info, success, warning or failure)."""

    title: str
    body: str
    level: str


_LEVELS = {"started": "info", "succeeded": "success", "failed": "failure", "rolled_back": "failure",
           "interrupted": "failure", "blocked": "warning", "held": "warning", "break_glass": "warning"}


def compose(facts: Facts) -> Message:
    """The title and body of the notification for `facts`."""
    return Message(title=mask(title(facts)), body=mask(body(facts)), level=_LEVELS.get(facts.event, "info"))


def title(facts: Facts) -> str:
    """One line: what happened, to which release, where, by whom."""
    where = f"{facts.environment} ({', '.join(facts.regions)})" if facts.regions else facts.environment
    release = facts.release or "the previous release"
    if facts.kind == "flags":
        release = f"flag change {release}"  # a deployment of kind flags: its "release" is the document's digest
    app, by = facts.app, f"by {facts.user}"
    rollback = facts.kind == "rollback"
    event = facts.event
    if event == "started":
        if rollback:
            return f"⏪ {app} rolling back {where} to {release} {by}"
        return f"🚀 {app} {release} deploying to {where} {by}"
    if event == "succeeded":
        if rollback:
            return f"⏪ {app} {where} rolled back to {release} {by}"
        return f"✅ {app} {release} deployed to {where} {by}"
    what = f"rollback to {release}" if rollback else release
    if event == "failed":
        return f"❌ {app} {what} failed in {where} {by}"
    if event == "rolled_back":
        return f"↩️ {app} {what} rolled back in {where} {by}"
    if event == "interrupted":
        return f"⚠️ {app} {what} interrupted in {where} {by}"
    if event == "held":
        return f"⏸️ {app} {what} held in {where} {by}"
    if event == "blocked":
        return f"⛔ {app} {what} blocked from {where} {by}"
    if event == "break_glass":
        return f"🔨 {app} {what}: break-glass {facts.kind} to {where} {by}"
    return f"{app} {what} {event} in {where} {by}"


def body(facts: Facts) -> str:
    """The details, one fact per line, in the order a person on call reads them."""
    lines: list[str] = []
    if facts.ends:
        lines.append("Regions: " + "; ".join(_region_end(end) for end in facts.ends))
    release = facts.release or "(the previous release)"
    lines.append(f"Release: {release}" + _previous(facts.previous, facts.release))
    if facts.dirty:
        lines.append(f"Built from {facts.dirty}: the commit alone does not say what shipped")
    if facts.duration is not None:
        lines.append(f"Duration: {format_duration(facts.duration)}")
    if facts.reason:
        lines.append(f"Reason: {_line(facts.reason)}")
    # A finished deployment says why region by region (above); the summary is for what has no regions yet.
    if facts.summary and not facts.ends and facts.event not in {"succeeded", "started"}:
        lines.append(f"Why: {_line(facts.summary)}")
    if facts.failed_hosts:
        lines.append("Failed hosts:")
        shown = facts.failed_hosts[:MAX_FAILED_HOSTS]
        lines += [f"  {h.host} ({h.region}{', ' + h.step if h.step else ''}): {_line(h.why)}" for h in shown]
        if len(facts.failed_hosts) > len(shown):
            lines.append(f"  … and {len(facts.failed_hosts) - len(shown)} more")
    if facts.drift:
        lines.append("Stack drift:")
        lines += [f"  {_line(line)}" for line in facts.drift]
    if facts.commits:
        lines.append("Commits:")
        lines += [f"  {c.sha[:8]} {c.author}: {_line(c.subject)}" for c in facts.commits]
    if facts.live_for:
        lines.append(f"Live now for {', '.join(facts.live_for)}")
    if facts.job_url:
        lines.append(f"Pipeline: {facts.job_url}")
    return "\n".join(lines)


def _region_end(end: RegionEnd) -> str:
    status = end.status.replace("_", " ")
    return f"{end.region} {status}" + (f" ({_line(end.message)})" if end.message and end.status != "succeeded"
                                       else "")


def _previous(previous: Mapping[str, str | None], release: str | None) -> str:
    values = {value for value in previous.values() if value and value != release}
    if not values:
        return " (first deploy)" if previous and not any(previous.values()) else ""
    if len(values) == 1:
        return f" (previous: {values.pop()})"
    return " (previous: " + ", ".join(f"{region} {value}" for region, value in previous.items() if value) + ")"


def _line(text: str) -> str:
    """One line of at most MAX_LINE characters, masked before it is cut (a cut secret would not be found)."""
    flat = " ".join(mask(text).split())
    return flat if len(flat) <= MAX_LINE else flat[:MAX_LINE - 1] + "…"


def ends_of(result: DeploymentResult) -> tuple[RegionEnd, ...]:
    """How each region of a finished deployment ended."""
    return tuple(RegionEnd(r.region, str(r.status), r.message) for r in result.regions)


def failed_hosts_of(result: DeploymentResult) -> tuple[FailedHost, ...]:
    """The hosts that failed in a finished deployment, each with the best account of why."""
    out = []
    for region in result.regions:
        for host in region.hosts:
            if not host.failed:
                continue
            why = host.error or ""
            if host.exit_code is not None and f"exit {host.exit_code}" not in why:
                why = f"{why} (exit {host.exit_code})" if why else f"exit {host.exit_code}"
            tail = [line for line in (host.output_tail or "").splitlines() if line.strip()]
            if tail and tail[-1].strip() not in why:
                why = f"{why}: {tail[-1].strip()}" if why else tail[-1].strip()
            out.append(FailedHost(host.host.name, region.region, host.step, why or "failed"))
    return tuple(out)


def drift_of(result: DeploymentResult) -> tuple[str, ...]:
    """Each component the deployment's hosts disagree on (as their probe steps said), with the values and the
    hosts: `perl: 5.36.0 on p1, p2; 5.38.2 on p5`."""
    values: dict[str, dict[str, list[str]]] = {}
    for region in result.regions:
        for host in region.hosts:
            for name, reading in host.components.items():
                said = reading.value if reading.value is not None else "unreadable"
                values.setdefault(name, {}).setdefault(said, []).append(host.host.name)
    lines = []
    for name, seen in values.items():
        if len(seen) > 1:
            ordered = sorted(seen.items(), key=lambda item: -len(item[1]))
            lines.append(f"{name}: " + "; ".join(f"{shown(v) if v != 'unreadable' else v} on {names(sorted(h))}"
                                                 for v, h in ordered))
    return tuple(lines)


def previous_of(result: DeploymentResult) -> dict[str, str | None]:
    """region → the release most of its hosts ran before, as the hosts reported it."""
    out: dict[str, str | None] = {}
    for region in result.regions:
        seen = [h.previous for h in region.hosts if h.previous]
        out[region.region] = max(set(seen), key=seen.count) if seen else None
    return out


def end_of_the_path(config: Config) -> set[str]:
    """The environments where a release is finally live: those no other environment promotes from.

    Environments outside any promotion path do not count; when no environment promotes from another, the
    last one listed is the end.
    """
    environments = config.environments
    sources = {env.promote_from for env in environments.values() if env.promote_from}
    if not sources:
        return {list(environments)[-1]}
    return {name for name, env in environments.items() if env.promote_from and name not in sources}


def live_for(commits: Sequence[Commit], authors: Mapping[str, str]) -> tuple[str, ...]:
    """The people whose commits went out: their handle when `authors:` maps their email, else their name."""
    out: list[str] = []
    for commit in commits:
        who = authors.get(commit.email.strip().lower()) or commit.author.strip()
        if who and who not in out:
            out.append(who)
    return tuple(out)
