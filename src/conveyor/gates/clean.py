"""The clean-tree gate: a release built from uncommitted changes goes only where `allow_dirty` lets it."""

from __future__ import annotations

from conveyor.gates.base import GateContext, GateVerdict

NAME = "clean"


def check(context: GateContext) -> GateVerdict | None:
    """Closed for a dirty build (the state store's manifest says `dirty`) where the environment does not
    allow one: what a commit says must be what was tested or approved. Deploys only."""
    release, env = context.release, context.environment
    if context.kind != "deploy" or release is None:
        return None
    if not context.manifest.get("dirty"):
        return GateVerdict(NAME, open=True, detail=f"{release} was built from a clean commit (or no git)")
    diff = str(context.manifest.get("diff_sha256") or "")[:12]
    allowed = context.settings.dirty_allowed
    detail = (f"{release} was built from a work tree with uncommitted changes (diff {diff}); "
              + (f"{env} allows it" if allowed else f"{env} has allow_dirty: false (commit, then build again)"))
    return GateVerdict(NAME, open=allowed, detail=detail)
