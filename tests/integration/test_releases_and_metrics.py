"""Release tags, `diff`, `plan`'s commits and deployment metrics, with the real CLI and real parts.

The fleet's directory is itself a git repository (tests/gitrepo.py) whose commits are made by different
authors; releases are built at chosen commits, so tags, changelogs and diffs have exact expected values.
Metrics go to a real Pushgateway (Debian's prometheus-pushgateway) and to a textfile that a real
`promtool check metrics` validates.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promstack
import pytest

from conveyor.state.store import Store
from gitrepo import ALICE, BOB, CAROL, Repo, git, isolate

pytestmark = pytest.mark.integration

PUSHGATEWAY = Path("/usr/bin/prometheus-pushgateway")
PROMTOOL = Path("/usr/bin/promtool")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def config(environments: dict[str, list[str]], **extra: Any) -> dict[str, Any]:
    """A conveyor.yml as data: one web host per region, local transport; production promotes from staging."""
    envs: dict[str, Any] = {}
    for env, regions in environments.items():
        envs[env] = {"transport": "local", "regions": {r: {"hosts": {"web": [f"{env}-{r}-web-1"]}} for r in regions}}
    return {"app": "shop", "artifact": {"path": "app"}, "deploy_to": "/srv/shop", **extra,
            "roles": {"web": {"restart": "true"}}, "environments": envs}


def commit_json(sha: str, author: tuple[str, str], subject: str) -> dict[str, str]:
    return {"sha": sha, "author": author[0], "email": author[1], "subject": subject}


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch)


# -- tags, diff and plan --------------------------------------------------------------------------------


def test_tags_mark_what_each_region_runs_and_diff_and_plan_list_exactly_the_commits_going_out(
        make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(config({"staging": ["uk"], "production": ["za", "uk"]}, git={"tags": True, "push": "origin"}))
    repo = Repo.init(fleet.root)
    remote = repo.bare_remote(tmp_path / "origin.git")
    first = repo.commit("Add the shop", ALICE)
    r1 = fleet.build("1")
    fleet.deploy("staging", r1)
    fleet.deploy("production", r1)
    fix = repo.commit("Fix the basket total", BOB)
    rand = repo.commit("Show prices in rand", CAROL)
    r2 = fleet.build("2")
    staged = fleet.run("deploy", "staging", "--release", r2, "--yes")
    assert "warning" not in staged.stderr, staged

    going_out = [commit_json(rand, CAROL, "Show prices in rand"), commit_json(fix, BOB, "Fix the basket total")]
    # Every region that moved tagged the commit of the release it now runs (annotated: the repo has a tagger),
    # and the tags reached the remote.
    expected_tags = {f"deploy/staging/uk/{r1}": first, f"deploy/production/za/{r1}": first,
                     f"deploy/production/uk/{r1}": first, f"deploy/staging/uk/{r2}": rand}
    assert repo.tags() == expected_tags
    assert git(repo.path, "cat-file", "-t", f"deploy/staging/uk/{r2}") == "tag"
    assert git(repo.path, "tag", "-l", "--format=%(contents:subject)", f"deploy/staging/uk/{r2}").startswith(
        f"{r2} deployed to staging/uk by alice (deploy, deployment #")
    assert git(remote, "tag", "-l", "deploy/*").splitlines() == sorted(expected_tags)
    assert git(remote, "rev-list", "-n1", f"deploy/staging/uk/{r2}") == rand

    # diff staging production: what promoting staging would ship, per production region. uk matches by name;
    # staging has no za, so za is compared with the one release staging runs everywhere.
    assert fleet.json("diff", "staging", "production") == {"from": "staging", "to": "production", "regions": {
        "za": {"from": r2, "to": r1, "commits": going_out,
               "note": "staging has no region za: compared with what all its regions run"},
        "uk": {"from": r2, "to": r1, "commits": going_out, "note": None},
    }}
    # The other way round nothing is new, and the note says production is behind.
    back = fleet.json("diff", "production", "staging")
    assert back["regions"]["uk"] == {"from": r1, "to": r2, "commits": [], "note": "nothing new: it already runs "
                                     "2 commit(s) that this release lacks (going back)"}
    # One environment: a candidate release against what each region runs.
    assert fleet.json("diff", "production", "--release", r2, "-r", "uk") == {
        "from": r2, "to": "production",
        "regions": {"uk": {"from": r2, "to": r1, "commits": going_out, "note": None}}}

    text = fleet.run("diff", "staging", "production").stdout
    assert f"uk: {r1} → {r2}: 2 commits" in text
    assert f"{rand[:10]}  Carol Nkosi <carol@example.net>  Show prices in rand" in text

    plan = fleet.json("plan", "production")
    assert plan["release"] == r2
    assert plan["commits"] == {region: {"running": r1, "release": r2, "commits": going_out, "note": None}
                               for region in ("za", "uk")}
    plan_text = fleet.run("plan", "production").stdout
    assert "commits going out:" in plan_text
    assert f"  za (runs {r1}): 2 commits" in plan_text
    assert f"    {fix[:10]}  Bob Smith <bob@example.org>  Fix the basket total" in plan_text

    # Usage errors exit 2 with a message.
    assert "--release compares a release with one environment" in fleet.run(
        "diff", "staging", "production", "--release", r1, expect=2).stderr
    assert "unknown region 'eu' in production" in fleet.run("diff", "staging", "production", "-r", "eu",
                                                            expect=2).stderr


def test_a_release_built_from_a_commit_a_shallow_clone_lacks_gets_a_note_instead_of_a_failure(make_fleet) -> None:
    fleet = make_fleet(config({"staging": ["uk"]}))
    repo = Repo.init(fleet.root)
    first = repo.commit("Add the shop", ALICE)
    r1 = fleet.build("1")
    fleet.deploy("staging", r1)
    repo.commit("Fix the basket total", BOB)
    repo.commit("Show prices in rand", CAROL)
    r2 = fleet.build("2")
    assert len(fleet.json("diff", "staging")["regions"]["uk"]["commits"]) == 2

    repo.make_shallow(depth=1)  # as a CI job checks out: only the newest commit

    entry = fleet.json("diff", "staging")["regions"]["uk"]
    assert (entry["from"], entry["to"], entry["commits"]) == (r2, r1, [])
    assert entry["note"].startswith(f"commit {first[:12]} is not in this repository (this is a shallow clone: "
                                   "`git fetch --unshallow`")
    plan = fleet.json("plan", "staging")["commits"]["uk"]
    assert (plan["commits"], plan["note"]) == ([], entry["note"])


def test_a_region_that_runs_nothing_yet_is_shown_the_releases_own_commit_and_its_pending_migrations(
        make_fleet) -> None:
    migrations = {"dir": "db/migrations", "dialect": "postgresql", "apply": "true", "status": "true"}
    fleet = make_fleet(config({"staging": ["uk"]}, migrations=migrations))
    head = Repo.init(fleet.root).commit("Show prices in rand", CAROL)
    fleet.write_artifact("1")
    folder = fleet.artifact / "db" / "migrations"
    (folder / "contract").mkdir(parents=True)
    (folder / "0001_prices.sql").write_text("CREATE TABLE prices (id bigint PRIMARY KEY, rand numeric);\n")
    (folder / "contract" / "0002_drop_cents.sql").write_text("ALTER TABLE prices DROP COLUMN cents;\n")
    release = fleet.json("build")["id"]

    entry = fleet.json("diff", "staging")["regions"]["uk"]

    assert (entry["from"], entry["to"]) == (release, None)
    assert entry["commits"] == [commit_json(head, CAROL, "Show prices in rand")]
    assert entry["note"] == "nothing ran there before: only the release's commit"
    pending = {phase: [(m["name"], m["phase"]) for m in entry["migrations"][phase]]
               for phase in ("contract", "expand", "waiting")}
    assert pending == {"contract": [], "expand": [("0001_prices.sql", "expand")],
                       "waiting": [("contract/0002_drop_cents.sql", "contract")]}


# -- metrics --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Pushgateway on a free loopback port (no persistence file); stopped by its PID at the end."""
    if not os.access(PUSHGATEWAY, os.X_OK):
        promstack.unavailable("the Pushgateway is not installed (apt-get install prometheus-pushgateway)")
    folder = tmp_path_factory.mktemp("pushgateway")
    port = promstack.free_port()
    url = f"http://127.0.0.1:{port}"
    server = promstack.start("pushgateway", [str(PUSHGATEWAY), f"--web.listen-address=127.0.0.1:{port}"], url,
                             folder / "pushgateway.log")
    try:
        promstack.wait_for("the Pushgateway answering /-/ready", server.ready, time.monotonic() + 15,
                           server.log_tail)
        yield url
    finally:
        server.stop()


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric in exposition text: (labels, value) each."""
    out = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1) == name:
            out.append((dict(LABEL.findall(match.group(2) or "")), float(match.group(3))))
    return out


def value(text: str, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    found = [v for got, v in samples(text, name) if all(got.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found}\n{text}"
    return found[0]


def promtool_check(path: Path) -> None:
    if not os.access(PROMTOOL, os.X_OK):
        promstack.unavailable("promtool is not installed (apt-get install prometheus)")
    with path.open("rb") as handle:
        done = subprocess.run([str(PROMTOOL), "check", "metrics"], stdin=handle, capture_output=True, timeout=30,
                              check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == b"", done.stdout + done.stderr


def test_a_real_pushgateway_receives_counts_durations_hosts_rollbacks_and_last_success_per_region(
        make_fleet, pushgateway: str) -> None:
    fleet = make_fleet(config({"staging": ["uk", "za"], "production": ["uk"]},
                              metrics={"pushgateway": pushgateway, "textfile": "metrics/conveyor.prom"}))
    (fleet.root / "metrics").mkdir()
    before = time.time()
    fleet.ship("staging", "1")
    fleet.ship("staging", "2")
    rolled = fleet.json("rollback", "staging", "--region", "za", "--yes")
    assert rolled["status"] == "succeeded"

    status, body = promstack.get(f"{pushgateway}/metrics")
    assert status == 200
    text = body.decode()
    group = {"job": "conveyor", "app": "shop", "environment": "staging", "instance": ""}
    total = "conveyor_deployments_total"
    assert value(text, total, **group, kind="deploy", status="succeeded") == 2  # read from the store: it counts
    assert value(text, total, **group, kind="rollback", status="succeeded") == 1
    assert value(text, total, **group, kind="deploy", status="failed") == 0
    assert value(text, "conveyor_rollbacks_total", **group) == 1
    # The last deployment was the rollback of za: one host, switched back.
    assert value(text, "conveyor_deployment_hosts", **group, kind="rollback", status="succeeded") == 1
    assert value(text, "conveyor_deployment_hosts", **group, kind="rollback", status="failed") == 0
    assert 0 < value(text, "conveyor_deployment_duration_seconds", **group, kind="rollback", status="succeeded") < 60
    for region in ("uk", "za"):
        moment = value(text, "conveyor_last_success_timestamp_seconds", **group, region=region)
        assert before - 1 <= moment <= time.time() + 1
    # Only the environment that deployed pushed its group; its series carry no second app/environment label.
    assert not [labels for labels, _ in samples(text, total) if labels.get("environment") == "production"]

    # The textfile holds every environment (production's counters are zero), and promtool accepts it.
    textfile = fleet.root / "metrics" / "conveyor.prom"
    promtool_check(textfile)
    written = textfile.read_text()
    assert value(written, total, app="shop", environment="staging", kind="deploy", status="succeeded") == 2
    assert value(written, total, app="shop", environment="production", kind="deploy", status="succeeded") == 0
    assert [p.name for p in (fleet.root / "metrics").iterdir()] == ["conveyor.prom"]  # no temp files left


def test_an_unreachable_pushgateway_leaves_the_deploy_succeeded_with_a_warning_and_an_event(make_fleet) -> None:
    port = promstack.free_port()  # nothing listens there
    fleet = make_fleet(config({"staging": ["uk"]}, metrics={"pushgateway": f"http://127.0.0.1:{port}",
                                                            "textfile": "conveyor.prom", "timeout": "2s"}))
    fleet.write_artifact("1")
    done = fleet.run("deploy", "staging", "--yes", "--json")

    assert done.json()["status"] == "succeeded"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("conveyor: warning: metrics:")]
    assert len(warnings) == 1, done.stderr
    assert warnings[0].startswith(f"conveyor: warning: metrics: pushgateway http://127.0.0.1:{port}: cannot reach it")
    store = Store(f"sqlite:///{fleet.root / '.conveyor' / 'state.db'}", "shop")
    try:
        events = [e for e in store.events() if e["kind"] == "metrics_failed"]
    finally:
        store.close()
    assert len(events) == 1
    assert events[0]["data"]["target"] == "pushgateway"
    assert events[0]["deployment_id"] == done.json()["id"]
    # The other target still got its metrics.
    promtool_check(fleet.root / "conveyor.prom")
