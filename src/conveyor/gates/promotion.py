"""The promotion gate: a release goes to an environment with `promote_from` only once it succeeded there."""

from __future__ import annotations

from conveyor.errors import PromotionRefused
from conveyor.gates.base import GateContext, GateVerdict

NAME = "promotion"
OVERRIDE = "skip_promotion"


def check(context: GateContext) -> GateVerdict | None:
    """Closed for a release the upstream environment has not run successfully. It holds deploys, and a
    rollback to a named release (`--to`): a release this environment really ran has passed upstream, so only
    a release it never ran is held. `--skip-promotion --reason` overrides it (audited)."""
    source = context.settings.promote_from
    if source is None or not (context.kind == "deploy" or context.explicit):
        return None
    release, env = context.release, context.environment
    ok = release is not None and (context.ledger.succeeded_in(source, release)
                                  or (context.kind == "rollback" and context.ledger.succeeded_in(env, release)))
    if ok:
        return GateVerdict(NAME, open=True, detail=f"{release} succeeded in {source}")
    detail = f"{release} has not succeeded in {source} yet"
    return GateVerdict(NAME, open=False, detail=detail,
                       override=OVERRIDE if OVERRIDE in context.overrides else None,
                       refusal=PromotionRefused(f"{env} refuses {release}: {detail} (promote_from; "
                                                "--skip-promotion --reason TEXT overrides it)"))
