"""Consistency where people and Prometheus see it: the metrics families (from a real SQLite state store,
checked by promtool when it is installed) and the drift a notification carries."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conveyor.config.loader import parse_config
from conveyor.config.models import Consistency
from conveyor.engine.results import DeploymentResult, DeploymentStatus, HostOutcome, RegionOutcome
from conveyor.engine.stack import Reading
from conveyor.inventory import Host
from conveyor.metrics.exposition import render
from conveyor.metrics.stack import collect_stack
from conveyor.notify.message import Facts, compose, drift_of
from conveyor.state.components import ComponentRow
from conveyor.state.store import Store

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def facts(event: str, **changes: object) -> Facts:
    return Facts(event=event, app="shop", environment="production", kind="deploy", user="alice", regions=("za",),
                 release="R2", **changes)  # type: ignore[arg-type]


def consistency(**more: object) -> Consistency:
    settings = {"app": "shop", "roles": {"web": {}},
                "environments": {"staging": {"transport": "local", "regions": {"uk": {"hosts": {"web": ["s1"]}}}},
                                 "production": {"transport": "local", "regions": {"za": {"hosts": {"web": ["p1"]}}}}},
                "consistency": {"components": {"perl": {"probe": "perl -v"}}, "match": ["staging", "production"],
                                **more}}
    loaded = parse_config(yaml.safe_dump(settings), "conveyor.yml", env={})[0].consistency
    assert loaded is not None
    return loaded


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    ledger = Store(f"sqlite:///{tmp_path / 'state.db'}", "shop")
    yield ledger
    ledger.close()


def test_component_info_counts_hosts_per_value_and_drift_counts_findings(store: Store) -> None:
    store.record_components("staging", [ComponentRow("s1", "uk", "web", "perl", "5.36.0")])
    store.record_components("production", [ComponentRow("p1", "za", "web", "perl", "5.36.0"),
                                           ComponentRow("p2", "za", "web", "perl", "5.36.0"),
                                           ComponentRow("p3", "za", "web", "perl", "5.38.2"),
                                           ComponentRow("p4", "za", "web", "perl", None, "timed out")])
    text = render(collect_stack(store, "shop", ["staging", "production"], consistency()))
    assert ('conveyor_component_info{app="shop",component="perl",environment="production",region="za",'
            'role="web",value="5.36.0"} 2.0') in text
    assert ('conveyor_component_info{app="shop",component="perl",environment="production",region="za",'
            'role="web",value="5.38.2"} 1.0') in text
    # production: its web hosts disagree (1), and staging and production differ (1); staging shares the latter
    assert 'conveyor_component_drift{app="shop",environment="production"} 2.0' in text
    assert 'conveyor_component_drift{app="shop",environment="staging"} 1.0' in text
    if os.access(PROMTOOL, os.X_OK):
        done = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True,
                              timeout=30, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_without_consistency_there_are_no_such_families(store: Store) -> None:
    assert collect_stack(store, "shop", ["staging"], None) == []


def outcome(name: str, perl: Reading) -> HostOutcome:
    done = HostOutcome(Host(name=name, environment="production", region="za", role="web", address=name))
    done.components = {"perl": perl}
    return done


def test_a_notification_names_the_components_the_deployments_hosts_disagree_on() -> None:
    result = DeploymentResult(7, "production", "deploy", "R2", DeploymentStatus.SUCCEEDED, regions=[
        RegionOutcome("za", "R2", hosts=[outcome("p1", Reading("5.36.0")), outcome("p2", Reading("5.36.0")),
                                          outcome("p5", Reading("5.38.2")), outcome("p6", Reading(None, "x"))])])
    drift = drift_of(result)
    assert drift == ("perl: 5.36.0 on p1, p2; 5.38.2 on p5; unreadable on p6",)
    body = compose(facts("succeeded", drift=drift)).body
    assert "Stack drift:\n  perl: 5.36.0 on p1, p2; 5.38.2 on p5; unreadable on p6" in body


def test_hosts_that_agree_make_no_drift_line() -> None:
    result = DeploymentResult(7, "production", "deploy", "R2", DeploymentStatus.SUCCEEDED, regions=[
        RegionOutcome("za", "R2", hosts=[outcome("p1", Reading("5.36.0")), outcome("p2", Reading("5.36.0"))])])
    assert drift_of(result) == ()
    assert "Stack drift" not in compose(facts("succeeded")).body
