"""Every gate, in the order a deployment meets them, and how their verdicts decide whether it may go."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from conveyor.errors import ConveyorError, HeldError, UsageError
from conveyor.gates import alerts, approval, clean, consistency, flags, lock, migrations, promotion, window
from conveyor.gates.base import GateContext, GateVerdict

Gate = Callable[[GateContext], GateVerdict | None]
"""A gate's `check`: its verdict on a deployment, or None where it does not apply."""

GATES: tuple[Gate, ...] = (
    lock.check,
    promotion.check,
    clean.check,
    consistency.check,
    window.check,
    alerts.check,
    approval.check,
    migrations.check,
    flags.check,
)
"""In order: the first that holds is the one a deployment stops on."""


@dataclass(frozen=True)
class Judgement:
    """Every gate's verdict on one deployment, and what it would stop on (None: it may go)."""

    verdicts: tuple[GateVerdict, ...]
    problem: ConveyorError | None

    @property
    def overridden(self) -> tuple[GateVerdict, ...]:
        """The closed gates an override lets through: each is audited by a deployment that goes on."""
        return tuple(v for v in self.verdicts if v.override is not None)

    @property
    def warnings(self) -> tuple[GateVerdict, ...]:
        """The open gates with something the person deploying must hear (`on_drift: warn`, for one)."""
        return tuple(v for v in self.verdicts if v.open and v.warning)

    def listed(self) -> list[dict[str, Any]]:
        """Plan's `gates`: the listed verdicts as JSON."""
        return [v.to_json() for v in self.verdicts if v.listed]


def judge(context: GateContext, gates: Sequence[Gate] = GATES) -> Judgement:
    """Ask every gate, without side effects. The deployment stops on the request's own problem (an override
    without a reason, `--auto` where a person deploys), else on the first gate that holds. An override
    counts only where the deployment gets to: past the first problem, none is marked."""
    problem = request_problem(context)
    verdicts = []
    for gate in gates:
        verdict = gate(context)
        if verdict is None:
            continue
        if problem is not None and verdict.override is not None:
            verdict = replace(verdict, override=None)
        elif problem is None and verdict.holds:
            problem = refusal(context, verdict)
        verdicts.append(verdict)
    return Judgement(tuple(verdicts), problem)


def refusal(context: GateContext, verdict: GateVerdict) -> ConveyorError:
    """The error a holding gate stops a deployment with: its own, or "ENV is held: DETAIL" (exit 3)."""
    return verdict.refusal or HeldError(f"{context.environment} is held: {verdict.detail}")


def request_problem(context: GateContext) -> ConveyorError | None:
    """What is wrong with the request itself, whatever the gates say."""
    if context.overrides and not (context.reason or "").strip():
        return UsageError(f"--{context.overrides[0].replace('_', '-')} needs --reason TEXT: it is audited")
    if context.auto and not context.settings.auto:
        return HeldError(f"{context.environment} is not deployed automatically (auto: false): a person deploys "
                         "it, so `deploy --auto` is refused")
    return None
