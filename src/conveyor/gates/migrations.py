"""The migrations gate: the schema changes a deploy would run must be safe to run now.

Which migrations run where is planned by `operations.migrations` (and judged by `conveyor.migrations.lint`);
the plan reaches this gate as `context.migrations`. This gate only decides whether they may run:
- an expand migration judged `breaking` is refused (it breaks the release still running, before the code
  switches); nothing overrides that: it has to become a contract migration of a later deployment;
- one judged `needs-window` runs only while the environment's `migration_window` is open;
  `--break-glass --reason` overrides that (audited).
"""

from __future__ import annotations

from conveyor.errors import HeldError, MigrationRefused
from conveyor.gates.base import GateContext, GateVerdict
from conveyor.gates.windows import evaluate

NAME = "migrations"
OVERRIDE = "break_glass"


def check(context: GateContext) -> GateVerdict | None:
    """Closed for a breaking expand migration, or for one that needs a window outside it. Judged when the
    operation gives the planned migrations (deploys, with `migrations:` configured)."""
    plans = context.migrations
    if context.kind != "deploy" or plans is None:
        return None
    breaking = [(region, j) for region, plan in plans.items() for j in plan.expand if j.cls == "breaking"]
    if breaking:
        lines = []
        for region, j in breaking:
            first = next((f for f in j.findings if f["class"] == "breaking"), None)
            why = f" (line {first['line']}: {first['rule']}: {first['message']}; {first['hint']})" if first else ""
            lines.append(f"{region}: {j.name}{why}")
        refusal = MigrationRefused("a migration breaks the release still running, so it cannot run before the "
                                   "code switches; make it a contract migration (first line `-- conveyor: "
                                   "contract`) for a later deployment: " + "; ".join(lines))
        return GateVerdict(NAME, open=False, detail=refusal.message, refusal=refusal, listed=False)
    windowed = sorted({j.name for plan in plans.values() for j in plan.to_run if j.cls == "needs-window"})
    if not windowed:
        return GateVerdict(NAME, open=True, detail="no migration needs a window", listed=False)
    name = context.settings.migration_window
    if name is None:
        detail = "no migration_window is set for this environment"
    else:
        verdict = evaluate(name, context.config.windows[name], context.at)
        if verdict.open:
            return GateVerdict(NAME, open=True, detail=f"migration window {name} is open: {verdict.rule}",
                               listed=False)
        detail = f"migration window {name} is closed: {verdict.rule}"
    names = ", ".join(windowed)
    return GateVerdict(NAME, open=False, detail=f"migrations {names}: {detail}", listed=False,
                       override=OVERRIDE if OVERRIDE in context.overrides else None,
                       refusal=HeldError(f"{context.environment} is held: {names} take strong locks or rewrite "
                                         f"tables and run only in a migration window; {detail} (--break-glass "
                                         "--reason TEXT overrides it)"))
