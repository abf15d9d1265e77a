"""The alerts gate: do not deploy into an incident. No alert may fire for a region about to move."""

from __future__ import annotations

import asyncio

from conveyor.config.models import AlertsCheck
from conveyor.gates.analysis import Measurement, Scope, Verdict, preflight_alerts
from conveyor.gates.base import GateContext, GateVerdict

NAME = "alerts"


def check(context: GateContext) -> GateVerdict | None:
    """Closed while an Alertmanager `alerts` check with `before_start` (the default) finds an active alert
    for one of the regions, or cannot be asked. Deploys only; each region is asked at once."""
    checks = context.settings.checks
    if context.kind != "deploy" or not any(isinstance(c, AlertsCheck) and c.before_start for c in checks):
        return None

    async def ask() -> list[Measurement]:
        found = await asyncio.gather(*(preflight_alerts(
            checks, Scope(app=context.config.app, environment=context.environment, region=region,
                          release=context.release, host=None), fetch=context.fetch) for region in context.regions))
        return [m for group in found for m in group]

    bad = [m for m in asyncio.run(ask()) if m.verdict != Verdict.PASS]
    if not bad:
        return GateVerdict(NAME, open=True, detail=f"no active alert for {', '.join(context.regions)}")
    detail = "; ".join(f"{m.scope}: {m.detail}" + (" (could not ask)" if m.verdict == Verdict.INCONCLUSIVE
                                                     else "") for m in bad)
    return GateVerdict(NAME, open=False, detail=detail)
