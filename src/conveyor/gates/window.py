"""The deploy-window gate: an environment with a `window` is deployed to only while it is open.

The rules themselves (allow, deny, cron, time zones) are read by `config.windows` and judged by `gates.windows`.
"""

from __future__ import annotations

from conveyor.errors import HeldError
from conveyor.gates.base import GateContext, GateVerdict
from conveyor.gates.windows import evaluate

NAME = "window"
OVERRIDE = "break_glass"
FLAG_EXEMPT = "flag_window_false"


def check(context: GateContext) -> GateVerdict | None:
    """Closed outside the environment's window, judged at `context.at`. Deploys and flag changes only: a
    rollback is the remedy, no window holds it. `--break-glass --reason` overrides it (audited)."""
    name = context.settings.window
    if name is None or context.kind not in ("deploy", "flags"):
        return None
    verdict = evaluate(name, context.config.windows[name], context.at)
    detail = f"window {name} is {'open' if verdict.open else 'closed'}: {verdict.rule}"
    if not verdict.open and verdict.next_open:
        detail += f"; opens {verdict.next_open.isoformat()}"
    if verdict.open:
        return GateVerdict(NAME, open=True, detail=detail)
    # A flag marked `window: false` may change while the window is closed; the operation audits it.
    exempt = context.kind == "flags" and context.flags is not None and not context.flags.windowed
    return GateVerdict(NAME, open=False, detail=detail,
                       override=OVERRIDE if OVERRIDE in context.overrides else FLAG_EXEMPT if exempt else None,
                       refusal=HeldError(f"{context.environment} is held: {detail} (--break-glass --reason TEXT "
                                         "overrides it)"))
