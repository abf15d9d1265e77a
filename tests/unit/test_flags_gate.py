"""The flags gate: requirements of flags switched on, and contract migrations a flag that is off needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor.config.loader import parse_config
from conveyor.errors import HeldError
from conveyor.flags import Flag, FlagFacts
from conveyor.gates import flags as gate
from conveyor.gates import window
from conveyor.gates.base import GateContext
from conveyor.gates.registry import judge

CONFIG, _ = parse_config("""\
app: www
roles: {web: {}}
environments:
  production:
    window: never
    regions: {uk: {hosts: {web: [a]}}, za: {hosts: {web: [b]}}}
windows:
  never: {timezone: UTC, allow: [{dates: "2000-01-01"}]}
""", "conveyor.yml", env={})

NEEDS_MIGRATION = Flag("new-checkout", "ENABLED", {"on": True, "off": False}, "off", requires_migration="0042_add")
NEEDS_RELEASE = Flag("fast", "ENABLED", {"on": True, "off": False}, "off",
                     requires_release="20260601T000000Z-abcdef12")


class Ledger:
    def lock_holder(self, environment: str) -> None:
        return None

    def succeeded_in(self, environment: str, release: str) -> bool:
        return True

    def approval(self, approval_id: int) -> dict[str, Any] | None:
        return None


def context(kind: str, facts: FlagFacts | None, **more: Any) -> GateContext:
    return GateContext(config=CONFIG, ledger=Ledger(), environment="production", kind=kind, release="flags-x",
                       regions=("uk", "za"), flags=facts, at=datetime(2026, 12, 1, 12, tzinfo=UTC), **more)


def test_a_flag_switched_on_where_its_migration_is_not_applied_is_refused() -> None:
    facts = FlagFacts(switched_on={"uk": (NEEDS_MIGRATION,), "za": (NEEDS_MIGRATION,)},
                      applied={"uk": frozenset({"0042_add"}), "za": frozenset()})
    verdict = gate.check(context("flags", facts))
    assert verdict is not None
    assert verdict.holds
    assert verdict.detail == "za: new-checkout requires migration 0042_add, which is not applied there"
    assert isinstance(verdict.refusal, HeldError)
    assert verdict.refusal.exit_code == 3


def test_a_flag_switched_on_where_its_migration_is_applied_goes() -> None:
    facts = FlagFacts(switched_on={"uk": (NEEDS_MIGRATION,)}, applied={"uk": frozenset({"0042_add"})})
    verdict = gate.check(context("flags", facts))
    assert verdict is not None
    assert verdict.open


def test_a_flag_switched_on_where_a_host_runs_an_older_release_is_refused() -> None:
    facts = FlagFacts(switched_on={"uk": (NEEDS_RELEASE,)},
                      releases={"uk": ("20260501T000000Z-00000000", "20260701T000000Z-11111111")})
    verdict = gate.check(context("flags", facts))
    assert verdict is not None
    assert verdict.holds
    assert "hosts there run 20260501T000000Z-00000000" in verdict.detail
    assert "20260701" not in verdict.detail


def test_a_flag_switched_on_where_every_host_is_new_enough_goes() -> None:
    facts = FlagFacts(switched_on={"uk": (NEEDS_RELEASE,)}, releases={"uk": ("20260601T000000Z-abcdef12",)})
    verdict = gate.check(context("flags", facts))
    assert verdict is not None
    assert verdict.open


def test_switching_nothing_on_needs_nothing() -> None:
    assert gate.check(context("flags", FlagFacts())).open  # type: ignore[union-attr]


@dataclass(frozen=True)
class Planned:
    name: str
    cls: str = "safe"
    findings: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Schema:
    expand: tuple[Planned, ...] = ()
    to_run: tuple[Planned, ...] = field(default=())


def test_a_contract_migration_a_flag_that_is_off_still_needs_is_refused() -> None:
    facts = FlagFacts(off={"new-checkout": ("production/za",)}, contracts={"0050_drop": "new-checkout"})
    verdict = gate.check(context("deploy", facts, migrations={"uk": Schema(to_run=(Planned("0050_drop"),))}))
    assert verdict is not None
    assert verdict.holds
    assert "0050_drop removes what flag new-checkout's off variant needs" in verdict.detail
    assert "production/za" in verdict.detail


def test_a_contract_migration_goes_once_the_flag_is_on_everywhere() -> None:
    facts = FlagFacts(off={}, contracts={"0050_drop": "new-checkout"})
    assert gate.check(context("deploy", facts, migrations={"uk": Schema(to_run=(Planned("0050_drop"),))})) is None


def test_other_migrations_are_not_held_by_a_flag() -> None:
    facts = FlagFacts(off={"new-checkout": ("production/za",)}, contracts={"0050_drop": "new-checkout"})
    assert gate.check(context("deploy", facts, migrations={"uk": Schema(to_run=(Planned("0049_x"),))})) is None


def test_without_flags_the_gate_says_nothing() -> None:
    assert gate.check(context("flags", None)) is None


def test_a_closed_window_holds_a_flag_change() -> None:
    judged = judge(context("flags", FlagFacts(windowed=True)))
    assert isinstance(judged.problem, HeldError)
    assert "window never is closed" in judged.problem.message


def test_a_flag_marked_window_false_goes_through_a_closed_window_and_says_so() -> None:
    verdict = window.check(context("flags", FlagFacts(windowed=False)))
    assert verdict is not None
    assert not verdict.open
    assert verdict.override == "flag_window_false"
    assert judge(context("flags", FlagFacts(windowed=False))).problem is None


@pytest.mark.parametrize("kind", ["deploy", "rollback"])
def test_window_false_means_nothing_outside_flag_changes(kind: str) -> None:
    verdict = window.check(context(kind, FlagFacts(windowed=False)))
    if kind == "rollback":
        assert verdict is None
    else:
        assert verdict is not None
        assert verdict.override is None


def test_migrations_are_matched_by_name_without_their_directory_or_extension() -> None:
    facts = FlagFacts(switched_on={"uk": (NEEDS_MIGRATION,)}, applied={"uk": frozenset({"0042_add.sql"})})
    assert gate.check(context("flags", facts)).open  # type: ignore[union-attr]
    held = FlagFacts(off={"new-checkout": ("production/za",)}, contracts={"0050_drop": "new-checkout"})
    verdict = gate.check(context("deploy", held, migrations={
        "uk": Schema(to_run=(Planned("contract/0050_drop.sql"),))}))
    assert verdict is not None
    assert verdict.holds
