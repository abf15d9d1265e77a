"""The stack hosts run on, in the state store: each host's components as last probed, and what every
deployment's hosts ran on (so a release's promotion can be compared with where it was tested)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from conveyor.secrets import mask
from conveyor.state import clock
from conveyor.state import tables as t
from conveyor.state.clock import iso
from conveyor.state.locks import Locking

__all__ = ["ComponentRow", "StackRecords"]


@dataclass(frozen=True)
class ComponentRow:
    """One host's answer for one component: its value, or the error its probe gave."""

    host: str
    region: str
    role: str
    component: str
    value: str | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """{"host", "region", "role", "component", "value", "error"}."""
        return {"host": self.host, "region": self.region, "role": self.role, "component": self.component,
                "value": self.value, "error": self.error}


def _row(row: Any) -> ComponentRow:
    return ComponentRow(row["host"], row["region"], row["role"], row["component"], row["value"], row["error"])


class StackRecords(Locking):
    """Reads and writes of component values (the Store inherits them)."""

    def record_components(self, environment: str, rows: list[ComponentRow], *,
                          deployment_id: int | None = None) -> None:
        """Remember what hosts answered, in one transaction: each host's latest values, and (given a
        deployment) what that deployment's hosts ran on. A host's answer replaces its earlier one."""
        latest = {(r.host, r.component): r for r in rows}
        if not latest:
            return
        now = iso(clock.utcnow())
        kept = [ComponentRow(r.host, r.region, r.role, r.component, mask(r.value) if r.value is not None else None,
                             mask(r.error) if r.error else None) for r in latest.values()]
        hosts = sorted({r.host for r in kept})
        with self._write() as conn:
            hc, dc = t.host_components, t.deployment_components
            for start in range(0, len(hosts), 500):
                chunk = hosts[start:start + 500]
                conn.execute(hc.delete().where(hc.c.app == self.app, hc.c.environment == environment,
                                               hc.c.host.in_(chunk)))
                if deployment_id is not None:
                    conn.execute(dc.delete().where(dc.c.deployment_id == deployment_id, dc.c.host.in_(chunk)))
            conn.execute(hc.insert(), [{**r.to_json(), "app": self.app, "environment": environment,
                                        "probed_at": now, "deployment_id": deployment_id} for r in kept])
            if deployment_id is not None:
                conn.execute(dc.insert(), [{**r.to_json(), "deployment_id": deployment_id} for r in kept])

    def host_components(self, environment: str) -> list[ComponentRow]:
        """Every host's latest answers in an environment, by host then component."""
        hc = t.host_components
        with self._tx() as conn:
            rows = conn.execute(sa.select(hc).where(hc.c.app == self.app, hc.c.environment == environment)
                                .order_by(hc.c.host, hc.c.component)).mappings().all()
        return [_row(row) for row in rows]

    def deployment_components(self, deployment_id: int) -> list[ComponentRow]:
        """What a deployment's hosts answered, by host then component."""
        dc = t.deployment_components
        with self._tx() as conn:
            rows = conn.execute(sa.select(dc).where(dc.c.deployment_id == deployment_id)
                                .order_by(dc.c.host, dc.c.component)).mappings().all()
        return [_row(row) for row in rows]

    def release_components(self, environment: str, release: str) -> tuple[int, list[ComponentRow]] | None:
        """The stack `release` was last deployed on in `environment` (a succeeded deploy that probed its
        hosts): that deployment's id and its hosts' answers, or None."""
        d, dc = t.deployments, t.deployment_components
        with self._tx() as conn:
            found = conn.execute(
                sa.select(d.c.id).where(
                    d.c.app == self.app, d.c.environment == environment, d.c.release == release,
                    d.c.kind == "deploy", d.c.status == "succeeded",
                    sa.exists().where(dc.c.deployment_id == d.c.id))
                .order_by(d.c.id.desc()).limit(1)).first()
        if found is None:
            return None
        return found.id, self.deployment_components(found.id)
