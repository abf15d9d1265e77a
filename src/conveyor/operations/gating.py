"""The gates as an operation: the context a request gives them, their verdicts, the audit of every
override, approval requests, the window checked between waves, and the record of a held deployment."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.engine.events import (
    DeploymentBlocked,
    EventBus,
)
from conveyor.errors import (
    HeldError,
    LockHeld,
    UsageError,
)
from conveyor.gates.approval import ApprovalNeeded
from conveyor.gates.base import GateContext, GateVerdict
from conveyor.gates.registry import judge
from conveyor.gates.windows import evaluate, now
from conveyor.operations.integrations import integrations
from conveyor.operations.request import Request
from conveyor.operations.workspace import Workspace

if TYPE_CHECKING:
    from conveyor.flags import FlagFacts
    from conveyor.operations.migrations import RegionMigrations
    from conveyor.state.store import Store


def gate_context(ws: Workspace, request: Request, kind: str, release: str | None, *, explicit: bool = True,
                 regions: list[str] | None = None, lock_follows: bool = False,
                 migrations: Mapping[str, RegionMigrations] | None = None,
                 flags: FlagFacts | None = None) -> GateContext:
    """What the gates judge of a request: its release going to `regions` (default: every region) now."""
    env = request.environment
    manifest = (ws.store.release_manifest(release) or {}) if kind == "deploy" and release is not None else {}
    return GateContext(
        config=ws.config, ledger=ws.store, environment=env, kind=kind, release=release,
        regions=tuple(regions or ws.config.environments[env].regions), explicit=explicit, manifest=manifest,
        requested_regions=tuple(request.regions), overrides=tuple(request.overrides), reason=request.reason,
        approval=request.approval, auto=request.auto, lock_follows=lock_follows, migrations=migrations, flags=flags,
        at=now())

def gates(ws: Workspace, env: str, release: str | None, kind: str, *, explicit: bool = True,
          regions: list[str] | None = None) -> list[dict[str, Any]]:
    """Every gate a plan lists and its verdict now (see conveyor.gates); the first closed one holds a deploy."""
    return judge(gate_context(ws, Request(env), kind, release, explicit=explicit, regions=regions)).listed()

def check_gates(ws: Workspace, env: str, release: str | None, kind: str, *, explicit: bool = True,
                 lock: bool = False, regions: list[str] | None = None, request: Request | None = None,
                 migrations: Mapping[str, RegionMigrations] | None = None,
                 flags: FlagFacts | None = None) -> list[GateVerdict]:
    """Raise the error of the first gate that holds; overrides the request carries are audited. Without
    `lock`, a held lock is left for taking the lock to refuse (atomically). The open gates' warnings, for the
    deployment to show and record."""
    request = request or Request(env)
    judged = judge(gate_context(ws, request, kind, release, explicit=explicit, regions=regions,
                                lock_follows=not lock, migrations=migrations, flags=flags))
    for verdict in judged.overridden:
        assert verdict.override is not None
        ws.store.add_event(verdict.override, ws.user, environment=env, release=release, reason=request.reason,
                           gate=verdict.detail)
    problem = judged.problem
    if isinstance(problem, ApprovalNeeded):
        # The one gate whose holding writes something: the request another person then approves.
        assert release is not None
        problem = _request_approval(ws, env, release, regions or list(ws.config.environments[env].regions),
                                    request)
    if problem is not None:
        raise problem
    return list(judged.warnings)

def _request_approval(ws: Workspace, env: str, release: str, regions: list[str], request: Request) -> HeldError:
    environment = ws.config.environments[env]
    approval_id = ws.store.request_approval(env, release, regions, ws.user, environment.approval_expires,
                                            request.reason)
    ws.store.add_event("approval_requested", ws.user, environment=env, release=release,
                       approval_id=approval_id, regions=regions)
    return HeldError(f"{env} needs approval: request #{approval_id} recorded for {release}; another person "
                     f"runs `conveyor approve {approval_id}`, then `conveyor deploy {env} --request "
                     f"{approval_id}`")

REASON_LIMIT = 500  # characters of a denial's reason: a sentence or two, never a document


def approve(ws: Workspace, approval_id: int) -> dict[str, Any]:
    """Approve a request; the requester cannot approve their own."""
    return approve_as(ws.store, ws.user, approval_id)


def approve_as(store: Store, user: str, approval_id: int) -> dict[str, Any]:
    """Approve a request as `user` (the CLI's user, or the dashboard's signed-in one); never their own."""
    record = _pending(store, user, approval_id, "approve")
    if not store.approve(approval_id, user):
        raise UsageError(f"#{approval_id} was approved or denied by someone else meanwhile")
    store.add_event("approved", user, environment=record["environment"], approval_id=approval_id,
                    release=record["release"], requested_by=record["requested_by"])
    updated = store.approval(approval_id)
    assert updated is not None
    return updated


def deny_as(store: Store, user: str, approval_id: int, reason: str) -> dict[str, Any]:
    """Deny a request as `user`, saying why (a deploy that names it is then held with the reason); the
    requester withdraws theirs by letting it expire, never by denying it."""
    reason = denial_reason(reason)
    record = _pending(store, user, approval_id, "deny")
    if not store.deny(approval_id, user, reason):
        raise UsageError(f"#{approval_id} was approved or denied by someone else meanwhile")
    store.add_event("denied", user, environment=record["environment"], approval_id=approval_id,
                    release=record["release"], requested_by=record["requested_by"], reason=reason)
    updated = store.approval(approval_id)
    assert updated is not None
    return updated


class BadReason(UsageError):
    """A denial without a reason, or with one too long to read."""


def denial_reason(text: str) -> str:
    """A denial's reason on one line, refused when empty or longer than REASON_LIMIT characters."""
    reason = " ".join(text.split())
    if not reason:
        raise BadReason("say why the request is denied (a reason)")
    if len(reason) > REASON_LIMIT:
        raise BadReason(f"the reason is {len(reason)} characters; at most {REASON_LIMIT}")
    return reason


def _pending(store: Store, user: str, approval_id: int, verb: str) -> dict[str, Any]:
    """The request `user` may approve or deny: it exists, someone else made it, nobody has decided it, and it
    has not expired."""
    record = store.approval(approval_id)
    if record is None:
        raise UsageError(f"no approval request #{approval_id}")
    if record["requested_by"] == user:
        raise HeldError(f"{user} requested #{approval_id} and cannot {verb} it: another person must")
    if record["approved_by"] is not None:
        raise UsageError(f"#{approval_id} was already approved by {record['approved_by']}")
    if record.get("denied_by"):
        raise UsageError(f"#{approval_id} was already denied by {record['denied_by']}")
    if datetime.fromisoformat(record["expires_at"]) < datetime.now(UTC):
        raise HeldError(f"#{approval_id} expired at {record['expires_at']}; request a new one")
    return record


def window_before_wave(ws: Workspace, env: str, request: Request) -> Callable[[int], str | None]:
    """A check run before each wave after the first: a closed window stops the deployment between waves."""
    name = ws.config.environments[env].window
    if name is None or request.break_glass:
        return lambda _wave: None
    window = ws.config.windows[name]

    def check(wave: int) -> str | None:
        verdict = evaluate(name, window, now())
        if verdict.open:
            return None
        when = f"; it opens {verdict.next_open.isoformat()}" if verdict.next_open else ""
        return f"window {name} closed before wave {wave} ({verdict.rule}){when}; `deploy --resume` then"

    return check

def record_blocked(ws: Workspace, request: Request, regions: list[str], release: str | None, kind: str,
                    exc: HeldError) -> None:
    store = ws.store
    deployment_id = store.start_deployment(environment=request.environment, regions=regions, release=release,
                                           previous_by_region={}, kind=kind, user=ws.user,
                                           reason=request.reason, status="blocked")
    store.finish_deployment(deployment_id, "blocked", [], summary=exc.message)
    store.add_event("blocked", ws.user, environment=request.environment, deployment_id=deployment_id,
                    reason=exc.message, holder=exc.holder if isinstance(exc, LockHeld) else None)
    EventBus(integrations(ws, request, kind)).emit(DeploymentBlocked(
        id=deployment_id, environment=request.environment, deployment_kind=kind, release=release,
        regions=regions, user=ws.user, reason=exc.message))
