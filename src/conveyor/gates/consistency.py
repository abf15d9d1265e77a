"""The consistency gate: a release runs on the stack it was built and tested on.

For an environment in `consistency.match`, the hosts about to move must run, for every component, a value
the release's hosts had where it was promoted from (its last succeeded deployment there), and the values it
was built with (`consistency.build`, in its manifest). In any environment, hosts of one role that disagree
among themselves hold it (`on_drift: refuse`) or are only shown (`warn`). What hosts run is what they last
said (a deployment's probe step, `status --verify`, converge). `--accept-drift --reason` lets a closed gate
through, audited.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.errors import HeldError
from conveyor.gates.base import GateContext, GateVerdict
from conveyor.gates.drift import Answer, Finding, across, against, reference_of, within_roles

if TYPE_CHECKING:
    from conveyor.config.models import Consistency

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
        return GateVerdict(NAME, open=True, detail="warning: " + "; ".join(f.detail for f in warn), warning=True)
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


class StackLedger(Protocol):
    """What drift across environments reads from the state store (conveyor.state.store.Store is one)."""

    def host_components(self, environment: str) -> Sequence[Answer]:
        """Every host's latest answer for each component."""
        ...

    def pointers(self, environment: str) -> dict[str, dict[str, Any]]:
        """region → its pointer ({"release", ...})."""
        ...

    def release_manifest(self, release_id: str) -> dict[str, Any] | None:
        """A release's recorded manifest."""
        ...


@dataclass(frozen=True)
class Survey:
    """The environments' stacks as last said, and their drift: `conveyor consistency` and the metrics."""

    answers: Mapping[str, Sequence[Answer]]              # environment → its hosts' answers
    running: Mapping[str, str | None]                    # environment → the release most regions point at
    built: Mapping[str, Mapping[str, str]]               # environment → what that release was built with
    findings: Mapping[str, Sequence[Finding]]            # environment → drift found in it (within roles, build)
    across: Sequence[Finding]                            # match environments that differ


def survey(ledger: StackLedger, consistency: Consistency, environments: Sequence[str]) -> Survey:
    """Every environment's answers and drift: hosts of a role that disagree; for environments in match, hosts
    unlike the build of the release they run, and environments that differ from each other."""
    answers = {env: [a for a in ledger.host_components(env) if a.component in consistency.components]
               for env in environments}
    running: dict[str, str | None] = {}
    built: dict[str, dict[str, str]] = {}
    findings: dict[str, list[Finding]] = {}
    for env in environments:
        pointers = Counter(p.get("release") for p in ledger.pointers(env).values() if p.get("release"))
        release = running[env] = pointers.most_common(1)[0][0] if pointers else None
        built[env] = built_with(ledger.release_manifest(release) or {}) if release else {}
        findings[env] = within_roles(env, answers[env])
        if built[env] and env in consistency.match:
            findings[env] += against(env, answers[env], {n: [v] for n, v in built[env].items()}, kind="build",
                                     where=f"the build of {release}")
    spread_across = across({env: answers[env] for env in environments if env in consistency.match})
    return Survey(answers, running, built, findings, spread_across)
