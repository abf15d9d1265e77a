"""The flags gate: a flag is switched on only where what it requires is there, and a contract migration that
removes what a flag's off variant needs waits until no environment serves that flag off.

- A change of kind `flags` that turns a flag on in a region (to anyone, even a percentage) is refused (exit 3)
  where the flag's `requires: {migration: ID}` is not applied, or where a host runs a release older than its
  `requires_release: ">= ID"`. Nothing overrides it: apply the migration, deploy the release, then switch.
- A deploy that would run a contract migration named by a flag's `contract:` is refused (exit 3) while any
  environment/region serves that flag's off variant (to anyone).

The operation gives the facts (`context.flags`, built by operations/flagging.py); this only judges them.
"""

from __future__ import annotations

import posixpath

from conveyor.errors import HeldError
from conveyor.gates.base import GateContext, GateVerdict

NAME = "flags"


def check(context: GateContext) -> GateVerdict | None:
    """Closed for a flag switched on without what it requires, or a contract migration a flag still needs."""
    facts = context.flags
    if facts is None:
        return None
    if context.kind == "flags":
        unmet = []
        for region, flags in sorted(facts.switched_on.items()):
            for flag in flags:
                applied = {_stem(name) for name in facts.applied.get(region, frozenset())}
                if flag.requires_migration and _stem(flag.requires_migration) not in applied:
                    unmet.append(f"{region}: {flag.key} requires migration {flag.requires_migration}, which is "
                                 "not applied there")
                older = sorted({r for r in facts.releases.get(region, ()) if flag.requires_release
                                and r < flag.requires_release})
                if flag.requires_release and older:
                    unmet.append(f"{region}: {flag.key} requires release >= {flag.requires_release}, and hosts "
                                 f"there run {', '.join(older)}")
        if unmet:
            detail = "; ".join(unmet)
            return GateVerdict(NAME, open=False, detail=detail, listed=False, refusal=HeldError(
                f"{context.environment} is held: {detail}. Nothing was changed"))
        return GateVerdict(NAME, open=True, detail="every flag switched on has what it requires", listed=False)
    if context.kind != "deploy" or context.migrations is None:
        return None
    running = {_stem(m.name) for plan in context.migrations.values() for m in plan.to_run}
    blocked = []
    for migration, key in sorted(facts.contracts.items()):
        where = facts.off.get(key, ())
        if _stem(migration) in running and where:
            blocked.append(f"{migration} removes what flag {key}'s off variant needs, and {', '.join(where)} "
                           f"still serve it off")
    if blocked:
        detail = "; ".join(blocked)
        return GateVerdict(NAME, open=False, detail=detail, listed=False, refusal=HeldError(
            f"{context.environment} is held: {detail}; switch the flag on everywhere first (`conveyor flags "
            "set ENV FLAG VARIANT`)"))
    return None


def _stem(name: str) -> str:
    """A migration as flags name it: `0042_add_col` is `0042_add_col.sql`, and `contract/0050_drop.sql` too."""
    base = posixpath.basename(name)
    return base.rsplit(".", 1)[0] if "." in base else base
