"""`conveyor consistency`: the stack hosts run, component × environment/region/role, and where it drifts.

What hosts run is what they last said (a deployment's probe step, `status --verify`); what a release was built
with is its manifest's `stack`; `--local` probes this machine with the same script. The document is the one
`--json` prints (docs/consistency.md):

    {"components": [NAME...], "environments": [ENV...], "match": [ENV...],
     "matrix": [{"component", "environment", "region", "role", "values": {VALUE: [HOST...]},
                 "common": VALUE | null, "unreadable": {HOST: ERROR}, "consistent": bool}],
     "build": {ENV: {"release": ID | null, "values": {NAME: VALUE | null}}},
     "local": {NAME: {"value", "error"}} | null,
     "drift": [{"component", "kind", "environment", "detail", "values", "hosts"}],
     "consistent": bool}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.config.consistency import Consistency
from conveyor.errors import UsageError
from conveyor.gates.consistency import survey
from conveyor.gates.drift import Answer, Finding, against, spread
from conveyor.operations.stack import probe_here
from conveyor.operations.workspace import Workspace


def settings(ws: Workspace) -> Consistency:
    """The config's `consistency:`, or a usage error saying how to add it."""
    if ws.config.consistency is None:
        raise UsageError("conveyor.yml has no consistency: section: name the components to compare under "
                         "consistency.components (docs/consistency.md)")
    return ws.config.consistency


def consistency(ws: Workspace, environments: Sequence[str] = (), *, local: bool = False) -> dict[str, Any]:
    """The matrix and its drift for `environments` (default: every one), with this machine's stack if `local`."""
    config = settings(ws)
    for env in environments:
        ws.environment(env)
    envs = list(environments) or list(ws.config.environments)
    found = survey(ws.store, config, envs)
    answers = found.answers
    findings: list[Finding] = [f for env in envs for f in found.findings[env]] + list(found.across)
    build = {env: {"release": found.running[env], "values": {n: found.built[env].get(n) for n in config.build}}
             for env in envs}
    here = None
    if local:
        readings = probe_here(ws, list(config.components), "local")
        here = {name: reading.to_json() for name, reading in readings.items()}
        mine = {name: [r.value] for name, r in readings.items() if r.value is not None}
        for env in envs:
            findings += against(env, answers[env], mine, kind="local", where="this machine")
    return {
        "components": list(config.components), "environments": envs,
        "match": [env for env in config.match if env in envs],
        "matrix": [row for env in envs for row in _matrix(env, answers[env], list(config.components))],
        "build": build, "local": here, "drift": [f.to_json() for f in findings], "consistent": not findings,
    }


def _matrix(env: str, answers: Sequence[Answer], order: list[str]) -> list[dict[str, Any]]:
    """One row per component, region and role; `common` is the value most of the environment's hosts of that
    role have (what the others differ from)."""
    groups: dict[tuple[str, str, str], list[Answer]] = {}
    roles: dict[tuple[str, str], list[Answer]] = {}
    for row in answers:
        groups.setdefault((row.component, row.region, row.role), []).append(row)
        roles.setdefault((row.component, row.role), []).append(row)
    rows = []
    for (component, region, role), group in sorted(groups.items(), key=lambda g: (order.index(g[0][0]), g[0])):
        values = spread(group)
        common = next(iter(spread(roles[component, role])), None)
        unreadable = {r.host: r.error or "no answer" for r in sorted(group, key=lambda r: r.host) if r.value is None}
        rows.append({"component": component, "environment": env, "region": region, "role": role,
                     "values": values, "common": common, "unreadable": unreadable,
                     "consistent": len(values) <= 1 and not unreadable and set(values) <= {common}})
    return rows
