"""The consistency gate: a release runs on the stack it was built and tested on.

For an environment in `consistency.match`, the hosts about to move must run, for every component, a value
the release's hosts had where it was promoted from (its last succeeded deployment there), and the values it
was built with (`consistency.build`, in its manifest). In any environment, hosts of one role that disagree
among themselves hold it (`on_drift: refuse`) or are only shown (`warn`). What hosts run is what they last
said (a deployment's probe step, `status --verify`, converge). `--accept-drift --reason` lets a closed gate
through, audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.errors import HeldError
from conveyor.gates.base import GateContext, GateVerdict
from conveyor.gates.drift import Finding, against, reference_of, within_roles

NAME = "consistency"
OVERRIDE = "accept_drift"


def check(context: GateContext) -> GateVerdict | None:
    """Closed when the hosts about to move drift (see the module); None for a rollback, or without
    `consistency:` in the config."""
    consistency = context.config.consistency
    if consistency is None or context.kind != "deploy" or context.release is None:
        return None
    env, release = context.environment, context.release
    regions = set(context.regions)
    target = [a for a in context.ledger.host_components(env)
              if a.region in regions and a.component in consistency.components]
    if not target:
        return GateVerdict(NAME, open=True, detail=f"no host of {env} has said what it runs yet (a deployment or "
                                                   "`status --verify` asks them)")
    refuse: list[Finding] = []
    warn: list[Finding] = []
    (refuse if consistency.on_drift == "refuse" else warn).extend(within_roles(env, target))
    compared = []
    if env in consistency.match:
        source = context.settings.promote_from
        tested = context.ledger.release_components(source, release) if source is not None else None
        if tested is not None:
            deployment, answers = tested
            refuse += against(env, target, reference_of(answers), kind="promotion",
                              where=f"{source} (deployment #{deployment}, where {release} was tested)")
            compared.append(f"what {source} tested it on")
        built = built_with(context.manifest)
        if built:
            refuse += against(env, target, {name: [value] for name, value in built.items()}, kind="build",
                              where=f"the build of {release}")
            compared.append("what it was built with")
    if refuse:
        detail = "; ".join(f.detail for f in [*refuse, *warn])
        return GateVerdict(NAME, open=False, detail=detail,
                           override=OVERRIDE if OVERRIDE in context.overrides else None,
                           refusal=HeldError(f"{env} refuses {release}: {detail} (--accept-drift --reason TEXT "
                                             "overrides it)"))
    if warn:
        return GateVerdict(NAME, open=True, detail="warning: " + "; ".join(f.detail for f in warn))
    checked = f" and agree with {' and '.join(compared)}" if compared else ""
    return GateVerdict(NAME, open=True, detail=f"{env}'s hosts agree within each role{checked}")


def built_with(manifest: Mapping[str, Any]) -> dict[str, str]:
    """component → the value the release was built with, from its manifest's `stack` (probes that failed
    where it was built are left out)."""
    stack = manifest.get("stack")
    if not isinstance(stack, Mapping):
        return {}
    return {name: reading["value"] for name, reading in stack.items()
            if isinstance(reading, Mapping) and isinstance(reading.get("value"), str)}
