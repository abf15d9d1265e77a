"""The stack hosts run on, read by the operations that already talk to them (`status --verify`, converge)
and kept in the state store; deployments record it through their recorder."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from conveyor.engine.probe import Probe
from conveyor.engine.stack import ComponentProbe, Reading, read_components
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
