"""The consistency gate and the drift it judges: a context in (a config, a real SQLite state store holding what
hosts said they run), a verdict out; and drift itself as pure functions over hosts' answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.config.loader import parse_config
from conveyor.config.models import Config
from conveyor.errors import HeldError, UsageError
from conveyor.gates import consistency, registry
from conveyor.gates.base import GateContext
from conveyor.gates.drift import across, against, reference_of, shown, spread, within_roles
from conveyor.state.components import ComponentRow
from conveyor.state.store import Store

R1 = "20260310T090000Z-aaaaaaaa"


def config(**stack: Any) -> Config:
    settings = {
        "app": "shop",
        "roles": {"web": {}, "batch": {}},
        "environments": {
            "staging": {"transport": "local", "regions": {"s": {"hosts": {"web": ["s1", "s2"]}}}},
            "production": {"transport": "local", "promote_from": "staging", "regions": {
                "za": {"hosts": {"web": ["za1", "za2"], "batch": ["zb1"]}}, "uk": {"hosts": {"web": ["uk1"]}}}},
        },
        "consistency": {"components": {"perl": {"probe": "perl -v"}, "os": {"probe": "cat /etc/os"}},
                        "match": ["staging", "production"], "build": ["perl"], **stack},
    }
    return parse_config(yaml.safe_dump(settings), "conveyor.yml", env={})[0]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    ledger = Store(f"sqlite:///{tmp_path / 'state.db'}", "shop")
    yield ledger
    ledger.close()


def row(host: str, value: str | None, component: str = "perl", region: str = "za", role: str = "web",
        error: str | None = None) -> ComponentRow:
    return ComponentRow(host, region, role, component, value, error)


def staging_ran(store: Store, *rows: ComponentRow) -> int:
    """A succeeded deploy of R1 to staging whose hosts said `rows`."""
    number = store.start_deployment(environment="staging", regions=["s"], release=R1, previous_by_region={},
                                    kind="deploy", user="tester")
    store.record_components("staging", list(rows), deployment_id=number)
    store.finish_deployment(number, "succeeded", [])
    return number


def context(store: Store, settings: Config | None = None, **fields: Any) -> GateContext:
    values: dict[str, Any] = {"config": settings or config(), "ledger": store, "environment": "production",
                              "kind": "deploy", "release": R1, "regions": ("za", "uk")}
    return GateContext(**(values | fields))


# -- drift, pure -------------------------------------------------------------------------------------------


def test_spread_puts_the_most_common_value_first_and_leaves_unreadable_hosts_out() -> None:
    assert spread([row("b", "5.30"), row("a", "5.36"), row("c", "5.36"), row("d", None, error="x")]) == {
        "5.36": ["a", "c"], "5.30": ["b"]}


def test_hosts_of_one_role_that_disagree_are_named_the_minority_first() -> None:
    found = within_roles("production", [row("za1", "5.36"), row("za2", "5.36"), row("uk1", "5.30", region="uk"),
                                        row("zb1", "5.20", role="batch")])
    assert len(found) == 1
    assert found[0].hosts == ("uk1",)
    assert found[0].detail == "perl: production's web hosts disagree: 5.36 on za1, za2; 5.30 on uk1"


def test_an_unreadable_host_is_drift_within_its_role() -> None:
    found = within_roles("production", [row("za1", "5.36"), row("za2", None, error="timed out")])
    assert found[0].hosts == ("za2",)
    assert found[0].detail.endswith("5.36 on za1; unreadable on za2")


def test_hosts_are_compared_with_a_reference_component_by_component() -> None:
    reference = reference_of([row("s1", "5.36", region="s"), row("s1", "debian-12", "os", region="s")])
    found = against("production", [row("za1", "5.36"), row("za2", "5.30"), row("za1", "debian-12", "os")],
                    reference, kind="promotion", where="staging")
    assert [(f.component, f.hosts) for f in found] == [("perl", ("za2",))]
    assert found[0].detail == "perl: staging had 5.36, but production runs 5.30 on za2"


def test_environments_that_must_agree_are_compared_by_their_values() -> None:
    found = across({"staging": [row("s1", "5.36")], "production": [row("za1", "5.36"), row("za2", "5.30")]})
    assert [f.detail for f in found] == ["perl: staging, production run 5.36; production runs 5.30"]
    assert across({"staging": [row("s1", "5.36")], "production": [row("za1", "5.36")]}) == []
    assert across({"production": [row("za1", "5.36"), row("za2", "5.30")]}) == []  # within a role: not this


def test_values_are_shown_on_one_line() -> None:
    assert shown("This is perl 5\nmore") == "'This is perl 5…'"
    assert shown("v5.36.0") == "v5.36.0"
    assert shown("") == "''"


# -- the gate ---------------------------------------------------------------------------------------------


def test_without_consistency_or_for_a_rollback_the_gate_does_not_apply(store: Store) -> None:
    plain = config()
    plain = plain.model_copy(update={"consistency": None})
    assert consistency.check(context(store, plain)) is None
    assert consistency.check(context(store, kind="rollback", release=None)) is None


def test_with_nothing_recorded_yet_the_gate_is_open_and_says_so(store: Store) -> None:
    verdict = consistency.check(context(store))
    assert verdict is not None
    assert verdict.open
    assert "no host of production has said what it runs yet" in verdict.detail


def test_hosts_that_run_what_staging_tested_pass(store: Store) -> None:
    staging_ran(store, row("s1", "5.36", region="s"), row("s2", "5.36", region="s"))
    store.record_components("production", [row("za1", "5.36"), row("za2", "5.36"), row("uk1", "5.36", region="uk")])
    verdict = consistency.check(context(store))
    assert verdict is not None
    assert verdict.open, verdict.detail
    assert verdict.detail == "production's hosts agree within each role and agree with what staging tested it on"


def test_a_host_that_differs_from_where_the_release_was_tested_refuses_the_deploy_naming_it(store: Store) -> None:
    number = staging_ran(store, row("s1", "5.36", region="s"), row("s2", "5.36", region="s"))
    store.record_components("production", [row("uk1", "5.30", region="uk"), row("uk2", "5.30", region="uk")])
    judged = registry.judge(context(store))
    assert isinstance(judged.problem, HeldError)
    assert judged.problem.exit_code == 3
    assert judged.problem.message == (
        f"production refuses {R1}: perl: staging (deployment #{number}, where {R1} was tested) had 5.36, but "
        "production runs 5.30 on uk1, uk2 (--accept-drift --reason TEXT overrides it)")


def test_accept_drift_with_a_reason_lets_it_through_audited_and_without_one_is_bad_input(store: Store) -> None:
    staging_ran(store, row("s1", "5.36", region="s"))
    store.record_components("production", [row("za1", "5.30")])
    accepted = registry.judge(context(store, overrides=("accept_drift",), reason="rebuilt tomorrow"))
    assert accepted.problem is None
    assert [v.override for v in accepted.overridden] == ["accept_drift"]
    unexplained = registry.judge(context(store, overrides=("accept_drift",)))
    assert isinstance(unexplained.problem, UsageError)
    assert "--accept-drift needs --reason" in unexplained.problem.message


def test_only_the_regions_about_to_move_are_judged(store: Store) -> None:
    staging_ran(store, row("s1", "5.36", region="s"))
    store.record_components("production", [row("za1", "5.36"), row("uk1", "5.30", region="uk")])
    verdict = consistency.check(context(store, regions=("za",)))
    assert verdict is not None
    assert verdict.open, verdict.detail


def test_hosts_of_one_role_that_disagree_refuse_or_warn_per_on_drift(store: Store) -> None:
    store.record_components("production", [row("za1", "5.36"), row("za2", "5.30")])
    refused = consistency.check(context(store, environment="staging", regions=("s",)))
    assert refused is not None
    assert refused.open  # staging's hosts said nothing: only production's disagree
    held = consistency.check(context(store))
    assert held is not None
    assert not held.open
    assert "production's web hosts disagree: 5.30 on za2; 5.36 on za1" in held.detail
    warned = consistency.check(context(store, config(on_drift="warn")))
    assert warned is not None
    assert warned.open
    assert warned.detail.startswith("warning: perl: production's web hosts disagree")


def test_an_environment_outside_match_is_judged_only_within_roles(store: Store) -> None:
    staging_ran(store, row("s1", "5.36", region="s"))
    store.record_components("production", [row("za1", "5.30"), row("za2", "5.30")])
    verdict = consistency.check(context(store, config(match=["staging"])))
    assert verdict is not None
    assert verdict.open, verdict.detail


def test_a_release_built_with_other_values_than_the_target_runs_is_refused(store: Store) -> None:
    store.record_components("production", [row("za1", "5.36"), row("za2", "5.36")])
    manifest = {"stack": {"perl": {"value": "5.38", "error": None}, "os": {"value": None, "error": "x"}}}
    verdict = consistency.check(context(store, manifest=manifest))
    assert verdict is not None
    assert not verdict.open
    assert verdict.detail == f"perl: the build of {R1} had 5.38, but production runs 5.36 on za1, za2"
