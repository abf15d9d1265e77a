"""The stack hosts run on, read by the operations that already talk to them (`status --verify`, converge)
and kept in the state store (deployments record it through their recorder); and this machine's own, probed
with the same script (`conveyor consistency --local`, and the `build` components when a release is built)."""

from __future__ import annotations

import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conveyor.engine import commands
from conveyor.engine.probe import Probe, parse_probe, tail
from conveyor.engine.stack import ComponentProbe, Reading, read_components
from conveyor.errors import ConveyorError
from conveyor.gates.consistency import built_with
from conveyor.gates.drift import against, reference_of, spread
from conveyor.inventory import Host
from conveyor.operations.workspace import Workspace
from conveyor.state.components import ComponentRow


def rows_of(host: Host, readings: Mapping[str, Reading]) -> list[ComponentRow]:
    """A host's readings as the state store keeps them."""
    return [ComponentRow(host.name, host.region, host.role, name, r.value, r.error) for name, r in readings.items()]


def record_stack(ws: Workspace, env: str, hosts: Sequence[Host], seen: Mapping[str, Probe | str],
                 asked: Callable[[Host], Sequence[ComponentProbe]]) -> None:
    """Keep what each host that answered said of its components (a host that could not be read keeps its
    last answers)."""
    rows: list[ComponentRow] = []
    for host in hosts:
        probe = seen.get(host.key)
        if isinstance(probe, Probe):
            rows += rows_of(host, read_components(probe.components, asked(host)))
    ws.store.record_components(env, rows)


def probe_here(ws: Workspace, names: Sequence[str], kind: str) -> dict[str, Reading]:
    """This machine's answers for the named components, from the same probe script hosts run (in a directory
    of its own that is thrown away), under the same limits; `kind` is CONVEYOR_KIND (build, local)."""
    consistency = ws.config.consistency
    if consistency is None or not names:
        return {}
    asked = [ComponentProbe(name, consistency.components[name].probe, consistency.components[name].timeout)
             for name in names]
    env = {"CONVEYOR_APP": ws.config.app, "CONVEYOR_HOST": socket.gethostname(), "CONVEYOR_KIND": kind}
    with tempfile.TemporaryDirectory(prefix="conveyor-probe-") as where:
        env["CONVEYOR_DEPLOY_TO"] = where
        try:
            done = subprocess.run(["sh", "-c", commands.probe(where, "", asked, env)], capture_output=True,
                                  text=True, errors="replace", stdin=subprocess.DEVNULL, check=False,
                                  timeout=sum(p.timeout for p in asked) + 30, cwd=where)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConveyorError(f"cannot probe this machine's components: {exc}") from exc
    if done.returncode != 0:
        raise ConveyorError(f"cannot probe this machine's components: exit {done.returncode}: "
                            f"{tail(done.stdout, 1)}")
    return read_components(parse_probe(done.stdout).components, asked)



def build_stack(ws: Workspace) -> dict[str, dict[str, str | None]]:
    """The `build` components as this machine (where the release is built) answers them, for its manifest:
    component → {"value", "error"}."""
    consistency = ws.config.consistency
    if consistency is None or not consistency.build:
        return {}
    return {name: reading.to_json() for name, reading in probe_here(ws, consistency.build, "build").items()}


def deployment_stack(ws: Workspace, record: Mapping[str, Any], manifest: Mapping[str, Any] | None
                     ) -> dict[str, Any] | None:
    """What a deployment's release was built with, tested on (its last succeeded deployment where it was
    promoted from) and runs on (this deployment's hosts): each component → {value: [hosts]} ("built_with":
    component → value). None without `consistency:`."""
    consistency = ws.config.consistency
    if consistency is None:
        return None
    release, env = record.get("release"), record.get("environment")
    source = ws.config.environments[env].promote_from if env in ws.config.environments else None
    tested = ws.store.release_components(source, release) if source and release else None
    return {
        "built_with": built_with(manifest or {}),
        "tested_on": ({"environment": source, "deployment": tested[0], "components": _by_component(tested[1])}
                      if tested is not None else None),
        "runs_on": _by_component(ws.store.deployment_components(int(record["id"]))),
    }


def _by_component(rows: Sequence[ComponentRow]) -> dict[str, dict[str, list[str]]]:
    by: dict[str, list[ComponentRow]] = {}
    for row in rows:
        by.setdefault(row.component, []).append(row)
    return {component: {**spread(group), **({"(unreadable)": sorted(r.host for r in group if r.value is None)}
                                           if any(r.value is None for r in group) else {})}
            for component, group in by.items()}


def promotion_judge(ws: Workspace, env: str, release: str | None
                    ) -> Callable[[Host, Mapping[str, Reading]], str | None] | None:
    """For a deploy to an environment in `consistency.match`: a judge of each host's probe step, so a host
    whose stack changed since it last answered (the gate judged what it said then) is refused before anything
    is put on it, in the round trip the deploy makes anyway. Its reference: what the release's hosts ran where
    it was promoted from, and what it was built with. None when there is nothing to compare with."""
    consistency = ws.config.consistency
    if consistency is None or release is None or env not in consistency.match:
        return None
    source = ws.config.environments[env].promote_from
    tested = ws.store.release_components(source, release) if source else None
    reference = {name: list(values) for name, values in reference_of(tested[1]).items()} if tested else {}
    wheres = [f"{source}, where {release} was tested"] if tested else []
    for name, value in built_with(ws.store.release_manifest(release) or {}).items():
        reference[name] = [v for v in reference.get(name, []) if v == value] if name in reference else [value]
        if f"the build of {release}" not in wheres:
            wheres.append(f"the build of {release}")
    if not reference:
        return None
    where = " and ".join(wheres)

    def judge(host: Host, readings: Mapping[str, Reading]) -> str | None:
        findings = against("this host", rows_of(host, readings), reference, kind="promotion", where=where)
        if not findings:
            return None
        return (f"not deployed: its stack drifted: {'; '.join(f.detail for f in findings)} "
                "(--accept-drift --reason TEXT deploys anyway)")

    return judge
