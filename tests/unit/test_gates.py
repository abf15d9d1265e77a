"""Gates, one module at a time: a context in, a verdict out. No CLI and no host.

Each context holds a config parsed from YAML, a real SQLite state store (the gates' ledger) and, where a
gate needs them, a fixed moment for windows and an Alertmanager answered in-process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.config.loader import parse_config
from conveyor.config.models import Config
from conveyor.errors import HeldError, LockHeld, MigrationRefused, PromotionRefused, TransportError, UsageError
from conveyor.gates import alerts, approval, clean, lock, migrations, promotion, registry, window
from conveyor.gates.approval import ApprovalNeeded
from conveyor.gates.base import GateContext, GateVerdict
from conveyor.migrations.catalog import Migration
from conveyor.operations.migrations import Judged, RegionMigrations
from conveyor.state.store import Store

INSIDE = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)   # a Tuesday, 10:00 in London: office hours
OUTSIDE = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)  # the same Tuesday, 18:00: closed until 09:00 on Wednesday
R1, R2 = "20260310T090000Z-aaaaaaaa", "20260310T091500Z-bbbbbbbb"


def config(**production: Any) -> Config:
    """staging (region s) and production (regions a, b) with office hours defined; `production` adds settings."""
    settings = {
        "app": "shop",
        "artifact": {"path": "app"},
        "roles": {"web": {"restart": "true"}},
        "windows": {"office-hours": {"timezone": "Europe/London",
                                     "allow": [{"days": "mon-fri", "hours": "09:00-17:00"}]}},
        "environments": {
            "staging": {"transport": "local", "regions": {"s": {"hosts": {"web": ["stg-web-1"]}}}},
            "production": {"transport": "local", **production,
                           "regions": {"a": {"hosts": {"web": ["a-web-1"]}}, "b": {"hosts": {"web": ["b-web-1"]}}}},
        },
    }
    return parse_config(yaml.safe_dump(settings), "conveyor.yml", env={})[0]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A real state store in a temporary SQLite file."""
    ledger = Store(f"sqlite:///{tmp_path / 'state.db'}", "shop")
    yield ledger
    ledger.close()


def context(store: Store, settings: Config | None = None, **fields: Any) -> GateContext:
    """A deploy of R1 to both regions of production at INSIDE, unless `fields` say otherwise."""
    values: dict[str, Any] = {"config": settings or config(), "ledger": store, "environment": "production",
                              "kind": "deploy", "release": R1, "regions": ("a", "b"), "at": INSIDE}
    return GateContext(**(values | fields))


def succeeded(store: Store, env: str, release: str) -> None:
    """Record a successful deploy of `release` to `env`."""
    number = store.start_deployment(environment=env, regions=["s"], release=release, previous_by_region={},
                                    kind="deploy", user="tester")
    store.finish_deployment(number, "succeeded", [])


# -- lock ---------------------------------------------------------------------------------------------------


def test_the_lock_gate_is_open_while_nobody_holds_the_environment(store: Store) -> None:
    assert lock.check(context(store)) == GateVerdict("lock", open=True, detail="not locked")


def test_a_held_lock_closes_the_gate_and_refuses_with_lock_held_naming_the_holder(store: Store) -> None:
    store.lock("production", owner="alice", reason="card scheme maintenance")
    verdict = lock.check(context(store))
    assert verdict is not None
    assert (verdict.open, verdict.override) == (False, None)
    assert verdict.detail.startswith("production is locked by alice on ")
    assert "a manual lock (card scheme maintenance)" in verdict.detail
    assert isinstance(verdict.refusal, LockHeld)
    assert verdict.refusal.message == verdict.detail


def test_a_held_lock_is_left_to_the_operation_that_takes_the_lock_next(store: Store) -> None:
    store.lock("production", owner="alice", reason=None)
    assert lock.check(context(store, lock_follows=True)) is None
    assert lock.check(context(store, environment="staging", lock_follows=True)) == GateVerdict(
        "lock", open=True, detail="not locked")


# -- promotion ----------------------------------------------------------------------------------------------


def test_promotion_holds_a_release_upstream_has_not_run(store: Store) -> None:
    verdict = promotion.check(context(store, config(promote_from="staging")))
    assert verdict is not None
    assert (verdict.open, verdict.detail, verdict.override) == (False, f"{R1} has not succeeded in staging yet", None)
    assert isinstance(verdict.refusal, PromotionRefused)
    assert verdict.refusal.message == (f"production refuses {R1}: {R1} has not succeeded in staging yet "
                                       "(promote_from; --skip-promotion --reason TEXT overrides it)")


def test_promotion_opens_once_upstream_ran_the_release(store: Store) -> None:
    succeeded(store, "staging", R1)
    assert promotion.check(context(store, config(promote_from="staging"))) == GateVerdict(
        "promotion", open=True, detail=f"{R1} succeeded in staging")


def test_skip_promotion_overrides_a_closed_promotion_gate(store: Store) -> None:
    verdict = promotion.check(context(store, config(promote_from="staging"), overrides=("skip_promotion",)))
    assert verdict is not None
    assert (verdict.open, verdict.override, verdict.holds) == (False, "skip_promotion", False)
    other = promotion.check(context(store, config(promote_from="staging"), overrides=("break_glass",)))
    assert other is not None
    assert other.holds


def test_promotion_lets_a_rollback_return_to_what_the_environment_ran(store: Store) -> None:
    settings = config(promote_from="staging")
    succeeded(store, "production", R2)
    back = promotion.check(context(store, settings, kind="rollback", release=R2))
    assert back is not None
    assert back.open
    never = promotion.check(context(store, settings, kind="rollback", release=R1))
    assert never is not None
    assert not never.open
    # Back to "the previous release" (no --to): whatever that is, production ran it.
    assert promotion.check(context(store, settings, kind="rollback", release=R1, explicit=False)) is None


def test_promotion_does_not_apply_without_promote_from(store: Store) -> None:
    assert promotion.check(context(store)) is None


# -- clean --------------------------------------------------------------------------------------------------


def test_a_clean_build_passes_the_clean_gate(store: Store) -> None:
    assert clean.check(context(store, manifest={"dirty": False})) == GateVerdict(
        "clean", open=True, detail=f"{R1} was built from a clean commit (or no git)")


def test_a_dirty_build_is_held_where_allow_dirty_is_false(store: Store) -> None:
    dirty = {"dirty": True, "diff_sha256": "0123456789abcdef" * 4}
    verdict = clean.check(context(store, config(promote_from="staging"), manifest=dirty))
    assert verdict == GateVerdict("clean", open=False, detail=(
        f"{R1} was built from a work tree with uncommitted changes (diff 0123456789ab); production has "
        "allow_dirty: false (commit, then build again)"))
    assert verdict.holds
    assert verdict.refusal is None  # the registry's "production is held: DETAIL"
    allowed = clean.check(context(store, manifest=dirty))
    assert allowed is not None
    assert allowed.open
    assert allowed.detail.endswith("; production allows it")


def test_the_clean_gate_judges_deploys_of_a_known_release_only(store: Store) -> None:
    assert clean.check(context(store, kind="rollback", manifest={"dirty": True})) is None
    assert clean.check(context(store, release=None)) is None


# -- window -------------------------------------------------------------------------------------------------


def test_the_window_gate_is_open_inside_the_window(store: Store) -> None:
    verdict = window.check(context(store, config(window="office-hours")))
    assert verdict is not None
    assert verdict.open
    assert verdict.detail.startswith("window office-hours is open: ")


def test_outside_the_window_the_gate_says_when_it_opens_and_break_glass_overrides_it(store: Store) -> None:
    settings = config(window="office-hours")
    verdict = window.check(context(store, settings, at=OUTSIDE))
    detail = "window office-hours is closed: no allow rule matches; opens 2026-03-11T09:00:00+00:00"
    assert verdict is not None
    assert (verdict.open, verdict.detail, verdict.override) == (False, detail, None)
    assert isinstance(verdict.refusal, HeldError)
    assert verdict.refusal.message == f"production is held: {detail} (--break-glass --reason TEXT overrides it)"
    glass = window.check(context(store, settings, at=OUTSIDE, overrides=("break_glass",), reason="INC-42"))
    assert glass is not None
    assert (glass.open, glass.override) == (False, "break_glass")


def test_no_window_holds_a_rollback_or_an_environment_without_one(store: Store) -> None:
    assert window.check(context(store, config(window="office-hours"), kind="rollback", at=OUTSIDE)) is None
    assert window.check(context(store, at=OUTSIDE)) is None


# -- alerts -------------------------------------------------------------------------------------------------

WATCH = {"alerts": "http://alertmanager.invalid:9093", "matchers": {"region": "$region"}, "timeout": "2s"}


def alertmanager(*firing: dict[str, str]) -> Any:
    """A fetch answering every question with these active alerts (the gate filters them by label)."""
    async def fetch(url: str, timeout: float) -> tuple[int, bytes]:
        return 200, json.dumps([{"labels": labels} for labels in firing]).encode()
    return fetch


def test_an_alert_for_a_region_about_to_move_closes_the_alerts_gate(store: Store) -> None:
    fetch = alertmanager({"alertname": "CheckoutErrors", "region": "a"}, {"alertname": "Elsewhere", "region": "z"})
    verdict = alerts.check(context(store, config(checks=[WATCH]), fetch=fetch))
    assert verdict is not None
    assert (verdict.open, verdict.override) == (False, None)
    assert "CheckoutErrors" in verdict.detail
    assert 'region="a"' in verdict.detail
    assert "Elsewhere" not in verdict.detail
    assert verdict.holds


def test_quiet_regions_open_the_alerts_gate(store: Store) -> None:
    fetch = alertmanager({"alertname": "CheckoutErrors", "region": "a"})
    verdict = alerts.check(context(store, config(checks=[WATCH]), fetch=fetch, regions=("b",)))
    assert verdict == GateVerdict("alerts", open=True, detail="no active alert for b")


def test_an_alertmanager_that_cannot_be_asked_holds_the_deployment(store: Store) -> None:
    async def down(url: str, timeout: float) -> tuple[int, bytes]:
        raise TransportError("connection refused")

    verdict = alerts.check(context(store, config(checks=[WATCH]), fetch=down, regions=("a",)))
    assert verdict is not None
    assert not verdict.open
    assert "connection refused" in verdict.detail
    assert verdict.detail.endswith("(could not ask)")


def test_the_alerts_gate_applies_to_deploys_with_a_before_start_alerts_check(store: Store) -> None:
    fetch = alertmanager({"alertname": "CheckoutErrors", "region": "a"})
    assert alerts.check(context(store, fetch=fetch)) is None
    assert alerts.check(context(store, config(checks=[WATCH]), kind="rollback", fetch=fetch)) is None
    later = config(checks=[{**WATCH, "before_start": False}])
    assert alerts.check(context(store, later, fetch=fetch)) is None


# -- approval -----------------------------------------------------------------------------------------------


def requested(store: Store, *, release: str = R1, regions: tuple[str, ...] = ("a", "b"), by: str = "alice",
              approved_by: str | None = "bob", expires_in: float = 3600.0) -> int:
    """An approval request for production, approved by `approved_by` (None: not yet)."""
    number = store.request_approval("production", release, list(regions), by, expires_in, None)
    if approved_by is not None:
        store.approve(number, approved_by)
    return number


def test_an_environment_that_needs_approval_holds_a_deploy_that_names_none(store: Store) -> None:
    verdict = approval.check(context(store, config(approval="required")))
    assert verdict is not None
    assert (verdict.open, verdict.listed) == (False, False)
    assert isinstance(verdict.refusal, ApprovalNeeded)
    assert verdict.refusal.message == ("production needs approval: a deploy records a request for "
                                       f"{R1} that another person approves (`conveyor approve ID`)")


def test_an_approved_request_for_this_release_and_these_regions_opens_the_gate(store: Store) -> None:
    number = requested(store)
    verdict = approval.check(context(store, config(approval="required"), approval=number))
    assert verdict == GateVerdict("approval", open=True, detail=f"approval #{number} by bob", listed=False)


@pytest.mark.parametrize(("case", "message"), [
    ("unknown", "no approval request #{n} for production"),
    ("release", f"approval #{{n}} is for {R2}, not {R1}"),
    ("regions", "approval #{n} covers a, not b; request a new one for those regions"),
    ("used", "approval #{n} was already used by deployment #7"),
    ("expired", "approval #{n} expired at {expires}; request a new one"),
    ("pending", "approval #{n} has not been approved yet (`conveyor approve {n}` by someone other than alice)"),
])
def test_a_named_request_that_does_not_cover_this_deploy_holds_it(store: Store, case: str, message: str) -> None:
    number = {
        "unknown": lambda: 99,
        "release": lambda: requested(store, release=R2),
        "regions": lambda: requested(store, regions=("a",)),
        "used": lambda: requested(store),
        "expired": lambda: requested(store, expires_in=-60),
        "pending": lambda: requested(store, approved_by=None),
    }[case]()
    if case == "used":
        store.use_approval(number, 7)
    record = store.approval(number) or {}
    verdict = approval.check(context(store, approval=number))  # checked wherever named, required or not
    assert verdict is not None
    assert (verdict.open, type(verdict.refusal)) == (False, HeldError)
    assert verdict.detail == message.format(n=number, expires=record.get("expires_at"))


def test_the_regions_asked_for_are_what_an_approval_must_cover(store: Store) -> None:
    number = requested(store, regions=("a",))
    verdict = approval.check(context(store, approval=number, requested_regions=("a",), regions=("a",)))
    assert verdict is not None
    assert verdict.open


def test_approval_applies_to_deploys_of_a_known_release_where_required_or_named(store: Store) -> None:
    assert approval.check(context(store)) is None
    assert approval.check(context(store, config(approval="required"), kind="rollback")) is None
    assert approval.check(context(store, config(approval="required"), release=None)) is None


# -- migrations ---------------------------------------------------------------------------------------------

FINDING = {"line": 1, "rule": "adding-not-null-field", "class": "breaking",
           "message": "a NOT NULL column without a default", "hint": "add a default"}


def judged(name: str, cls: str, phase: str = "expand", findings: tuple[dict[str, Any], ...] = ()) -> Judged:
    return Judged(Migration(name, phase, "0" * 64, ""), cls, findings)  # type: ignore[arg-type]


def test_a_breaking_expand_migration_is_refused_whatever_the_request_says(store: Store) -> None:
    plans = {"a": RegionMigrations("a", expand=[judged("0002_email.sql", "breaking", findings=(FINDING,))]),
             "b": RegionMigrations("b")}
    verdict = migrations.check(context(store, migrations=plans, overrides=("break_glass",), reason="now"))
    assert verdict is not None
    assert (verdict.open, verdict.override, verdict.listed) == (False, None, False)
    assert isinstance(verdict.refusal, MigrationRefused)
    assert verdict.refusal.message.endswith(
        "for a later deployment: a: 0002_email.sql (line 1: adding-not-null-field: a NOT NULL column without a "
        "default; add a default)")


def test_a_migration_that_needs_a_window_waits_for_the_migration_window(store: Store) -> None:
    settings = config(migration_window="office-hours")
    plans = {"a": RegionMigrations("a", expand=[judged("0002_index.sql", "needs-window")])}
    inside = migrations.check(context(store, settings, migrations=plans))
    assert inside is not None
    assert inside.open
    verdict = migrations.check(context(store, settings, migrations=plans, at=OUTSIDE))
    assert verdict is not None
    assert (verdict.open, verdict.override) == (False, None)
    assert verdict.detail == "migrations 0002_index.sql: migration window office-hours is closed: no allow rule matches"
    assert isinstance(verdict.refusal, HeldError)
    assert verdict.refusal.message == (
        "production is held: 0002_index.sql take strong locks or rewrite tables and run only in a migration "
        "window; migration window office-hours is closed: no allow rule matches (--break-glass --reason TEXT "
        "overrides it)")
    glass = migrations.check(context(store, settings, migrations=plans, at=OUTSIDE, overrides=("break_glass",)))
    assert glass is not None
    assert glass.override == "break_glass"


def test_without_a_migration_window_a_migration_that_needs_one_is_held(store: Store) -> None:
    plans = {"b": RegionMigrations("b", contract=[judged("contract/0003_drop.sql", "needs-window", "contract")])}
    verdict = migrations.check(context(store, migrations=plans))
    assert verdict is not None
    assert verdict.detail == ("migrations contract/0003_drop.sql: no migration_window is set for this "
                              "environment")


def test_safe_migrations_and_no_planned_migrations_pass(store: Store) -> None:
    plans = {"a": RegionMigrations("a", expand=[judged("0002_email.sql", "safe")])}
    verdict = migrations.check(context(store, migrations=plans, at=OUTSIDE))
    assert verdict is not None
    assert verdict.open
    assert migrations.check(context(store)) is None


# -- the registry -------------------------------------------------------------------------------------------


def test_gates_are_met_in_the_order_a_deployment_meets_them() -> None:
    assert [gate.__module__.rsplit(".", 1)[-1] for gate in registry.GATES] == [
        "lock", "promotion", "clean", "consistency", "window", "alerts", "approval", "migrations", "flags"]


def test_the_first_gate_that_holds_is_the_one_a_deployment_stops_on(store: Store) -> None:
    store.lock("production", owner="alice", reason=None)
    settings = config(promote_from="staging", window="office-hours")
    judged_now = registry.judge(context(store, settings, at=OUTSIDE, overrides=("break_glass",), reason="INC-1"))
    assert isinstance(judged_now.problem, LockHeld)
    assert [(v.name, v.open) for v in judged_now.verdicts] == [
        ("lock", False), ("promotion", False), ("clean", True), ("window", False)]
    # An override counts only where the deployment gets to: past the lock, the break-glass is not used.
    assert judged_now.overridden == ()
    assert [g["gate"] for g in judged_now.listed()] == ["lock", "promotion", "clean", "window"]


def test_overrides_before_the_first_holding_gate_are_marked_for_the_audit(store: Store) -> None:
    settings = config(promote_from="staging", window="office-hours", approval="required")
    judged_now = registry.judge(context(store, settings, at=OUTSIDE, reason="hotfix",
                                        overrides=("break_glass", "skip_promotion")))
    assert isinstance(judged_now.problem, ApprovalNeeded)
    assert [(v.name, v.override) for v in judged_now.overridden] == [
        ("promotion", "skip_promotion"), ("window", "break_glass")]
    listed = {g["gate"]: g for g in judged_now.listed()}
    assert listed["window"]["overridden"] == "break_glass"
    assert set(listed["window"]) == {"gate", "open", "detail", "overridden"}
    assert set(listed["lock"]) == {"gate", "open", "detail"}
    assert "approval" not in listed


def test_an_override_without_a_reason_is_refused_before_any_gate_counts(store: Store) -> None:
    settings = config(window="office-hours")
    judged_now = registry.judge(context(store, settings, at=OUTSIDE, overrides=("break_glass",), reason="  "))
    assert isinstance(judged_now.problem, UsageError)
    assert judged_now.problem.message == "--break-glass needs --reason TEXT: it is audited"
    assert judged_now.overridden == ()


def test_auto_deploys_are_refused_where_a_person_deploys(store: Store) -> None:
    problem = registry.judge(context(store, auto=True)).problem
    assert isinstance(problem, HeldError)
    assert problem.message == ("production is not deployed automatically (auto: false): a person deploys it, "
                               "so `deploy --auto` is refused")
    assert registry.judge(context(store, config(auto=True), auto=True)).problem is None


def test_a_gate_without_its_own_refusal_holds_with_env_is_held(store: Store) -> None:
    closed = GateVerdict("frozen", open=False, detail="frozen for the audit")
    judged_now = registry.judge(context(store), gates=[lambda _c: None, lambda _c: closed])
    assert isinstance(judged_now.problem, HeldError)
    assert judged_now.problem.message == "production is held: frozen for the audit"
    assert judged_now.verdicts == (closed,)


def test_a_verdict_past_the_first_problem_keeps_its_state_but_not_its_override(store: Store) -> None:
    first = GateVerdict("one", open=False, detail="closed")
    second = GateVerdict("two", open=False, detail="closed too", override="break_glass")
    judged_now = registry.judge(context(store, overrides=("break_glass",), reason="r"),
                                gates=[lambda _c: first, lambda _c: second])
    assert judged_now.verdicts == (first, replace(second, override=None))
    assert isinstance(judged_now.problem, HeldError)
    assert judged_now.problem.message == "production is held: closed"


def test_approval_expiry_is_real_time_whatever_moment_windows_are_judged_at(store: Store) -> None:
    number = requested(store, expires_in=3600)
    verdict = approval.check(context(store, approval=number, at=datetime.now(UTC) + timedelta(days=30)))
    assert verdict is not None
    assert verdict.open
