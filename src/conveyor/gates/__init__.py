"""Gates: what can hold or stop a deployment before a host changes, one module per gate.

    base.py        GateContext (one deploy or rollback as the gates see it) and GateVerdict
    registry.py    GATES, in the order a deployment meets them; `judge` asks them all
    lock.py        someone holds the environment            (LockHeld)
    promotion.py   the release has not succeeded upstream   (PromotionRefused; --skip-promotion)
    clean.py       a dirty build where allow_dirty is false
    consistency.py hosts drift from the stack the release was tested and built on (--accept-drift)
    drift.py       where hosts' answers disagree: within a role, against a reference, across environments
    window.py      outside the environment's deploy window  (--break-glass)
    alerts.py      an alert fires for a region about to move
    approval.py    approval: required, and no approved request
    migrations.py  a breaking migration, or one that needs a window outside it (--break-glass)
    windows/       the window rules themselves (allow, deny, cron, time zones)
    analysis.py    watching checks over a bake (each kind measures itself: conveyor.checks)

Each gate module has `check(context) -> GateVerdict | None`: None where it does not apply (no window
configured, a rollback), else `GateVerdict(name, open, detail, override, refusal)`. A closed gate names the
request's audited override that lets it through (`override`) and the error a deploy stops with when it holds
(`refusal`; none means `HeldError("ENV is held: DETAIL")`, exit 3). A gate reads only its context: the
config, the state store through the read-only `GateLedger`, the clock through `context.at`. It never writes.

`registry.judge(context)` asks every gate in order, without side effects: the deployment stops on the first
that holds; `plan` shows the listed verdicts, and `deploy`/`rollback` (operations/deploy.py) record each
override as an audit event before going on, or record an approval request when `approval` holds.

Adding a gate is one new module and one registry line:

1. `gates/frozen.py`:

       NAME = "frozen"

       def check(context: GateContext) -> GateVerdict | None:
           if context.kind != "deploy":
               return None
           frozen = ...  # from context.config, context.ledger or context.at
           return GateVerdict(NAME, open=not frozen, detail="...")

2. in `registry.GATES`, at the place a deployment should meet it: `frozen.check,`

Plus its unit tests (tests/unit/test_gates.py: a context in, a verdict out). If it needs something the
context lacks, add a field to `GateContext` and fill it where operations build one (`gate_context`).
"""
