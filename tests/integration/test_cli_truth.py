"""The command line tells the truth at every step (issue 14): each test is one thing a new user saw go wrong.

Every run is the real `conveyor` CLI against a local fleet in the test's own directory (`make_fleet`).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from collections.abc import Callable
from typing import Any

import pytest

from gitrepo import Repo, git, isolate

pytestmark = pytest.mark.integration

RELEASE_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")
SERVE = 'echo "$CONVEYOR_RELEASE" > "$CONVEYOR_DEPLOY_TO/serving"'


def settings(**environments: dict[str, Any]) -> dict[str, Any]:
    """An app on local hosts: staging (uk) and production (uk, us) unless given."""
    return {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "roles": {"web": {"restart": SERVE, "canary": 1, "canary_bake": "2s", "batch": 1}},
        "environments": environments or {
            "staging": local(["uk"]),
            "production": local(["uk", "us"], promote_from="staging"),
        },
    }


def local(regions: list[str], **extra: Any) -> dict[str, Any]:
    return {"transport": "local", **extra,
            "regions": {r: {"hosts": {"web": [f"{r}-web-1", f"{r}-web-2"]}} for r in regions}}


def on_a_terminal(fleet: Any, *args: str, columns: int) -> str:
    """Run `conveyor ARGS` with stdout and stderr on a pseudo-terminal `columns` wide; what it printed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**fleet.env_vars(), "COLUMNS": str(columns), "TERM": "dumb"}
    with subprocess.Popen(fleet.command(*args), stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                          env=env, cwd=fleet.root) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not data:
                break
            chunks.append(data)
        assert process.wait(timeout=60) == 0
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


# -- plan shows what deploy then does ------------------------------------------------------------------


@pytest.fixture
def repo_fleet(make_fleet: Callable[[dict[str, Any]], Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fleet whose directory is a git work tree with one commit of the app."""
    isolate(monkeypatch)
    fleet = make_fleet(settings())
    fleet.write_artifact("1.0")
    (fleet.root / ".gitignore").write_text(".conveyor/\n", encoding="utf-8")
    Repo.init(fleet.root)
    commit_all(fleet, "first version")
    return fleet


def commit_all(fleet: Any, subject: str) -> None:
    """Commit everything in the fleet's work tree (the config, the app)."""
    git(fleet.root, "add", "-A")
    git(fleet.root, "commit", "--quiet", "--no-verify", "-m", subject)


def test_plan_names_the_release_deploy_then_ships_even_after_an_edit(repo_fleet: Any) -> None:
    fleet = repo_fleet
    first = fleet.json("plan", "staging")
    assert RELEASE_ID.fullmatch(first["release"]), first
    assert first["candidate"]["built"] == "now", first["candidate"]
    shipped = fleet.json("deploy", "staging", "--yes")
    assert shipped["release"] == first["release"]

    # An edit after the last build: plan must not show the newest *built* release but the one deploy makes.
    fleet.write_artifact("1.1")
    commit_all(fleet, "second version")
    second = fleet.json("plan", "staging")
    assert second["release"] != first["release"]
    assert second["candidate"]["commit"] == git(fleet.root, "rev-parse", "HEAD")
    assert second["candidate"]["dirty"] is False
    again = fleet.json("plan", "staging")
    assert again["release"] == second["release"]
    assert again["candidate"]["built"] == "earlier"
    deployed = fleet.json("deploy", "staging", "--yes")
    assert deployed["release"] == second["release"]
    assert set(fleet.currents("staging").values()) == {second["release"]}


def test_plan_stops_where_deploy_would_with_the_same_exit_code(repo_fleet: Any) -> None:
    fleet = repo_fleet
    # Promotion: production refuses what staging never ran; plan says so and exits 3, as deploy does.
    plan = fleet.run("plan", "production", "--json", expect=3).json()
    assert plan["holds"]["exit_code"] == 3
    assert "has not succeeded in staging" in plan["holds"]["message"]
    text = fleet.run("plan", "production", expect=3)
    assert "has not succeeded in staging" in text.stderr
    assert "a deploy would stop here" in text.stdout
    fleet.run("deploy", "production", "--yes", expect=3)
    # The override deploy takes is taken by plan too.
    fleet.run("plan", "production", "--skip-promotion", expect=2)  # needs --reason, as deploy does
    overridden = fleet.json("plan", "production", "--skip-promotion", "--reason", "hotfix")
    gate = next(g for g in overridden["gates"] if g["gate"] == "promotion")
    assert gate["open"] is False
    assert gate["overridden"] == "skip_promotion"
    assert "holds" not in overridden
    # Nothing changed on any host, and plan recorded no audit event (it only says what deploy would do).
    assert set(fleet.currents("production").values()) == {None}
    assert not [d for d in fleet.json("history")["deployments"] if d["environment"] == "production"
                and d["status"] != "blocked"]


def test_plan_says_when_the_artifact_is_missing(make_fleet: Callable[[dict[str, Any]], Any]) -> None:
    fleet = make_fleet(settings())
    refused = fleet.run("plan", "staging", expect=2)
    assert "artifact.path app: no such file or directory" in refused.stderr
    assert fleet.run("deploy", "staging", "--yes", expect=2).stderr == refused.stderr


def test_the_first_plan_makes_up_no_estimate(make_fleet: Callable[[dict[str, Any]], Any]) -> None:
    fleet = make_fleet(settings())
    fleet.write_artifact("1.0")
    plan = fleet.json("plan", "staging")
    assert plan["estimate"]["per_host_step"] is None
    text = fleet.run("plan", "staging").stdout
    assert "no history yet" in text
    assert "from recent history" not in text
    fleet.json("deploy", "staging", "--yes")
    measured = fleet.json("plan", "staging")["estimate"]
    assert measured["per_host_step"] is not None
    assert measured["per_host_step"] >= 0
    assert "from recent history" in fleet.run("plan", "staging").stdout


def test_text_plan_shows_what_json_plan_shows(make_fleet: Callable[[dict[str, Any]], Any]) -> None:
    fleet = make_fleet(settings())
    fleet.write_artifact("1.0")
    text = fleet.run("plan", "staging").stdout
    assert "canary bake: 2s" in text
    assert f"restart: {SERVE}" in text
    assert "max failures" in text
    for gate in fleet.json("plan", "staging")["gates"]:
        assert f"gate {gate['gate']}:" in text


# -- dirty work trees ----------------------------------------------------------------------------------


def test_a_dirty_tree_is_recorded_shown_and_refused_where_it_must_be(repo_fleet: Any) -> None:
    fleet = repo_fleet
    (fleet.artifact / "VERSION").write_text("1.0-local-edit\n", encoding="utf-8")
    built = fleet.json("build")
    assert built["dirty"] is True
    assert re.fullmatch(r"[0-9a-f]{64}", built["diff_sha256"])
    assert built["git"]["sha"] == git(fleet.root, "rev-parse", "HEAD")
    plan = fleet.json("plan", "staging", "--release", built["id"])
    assert plan["candidate"]["dirty"] is True
    assert "uncommitted changes" in fleet.run("plan", "staging", "--release", built["id"]).stdout
    # Staging allows it (no promote_from, no approval); history says it was dirty.
    shipped = fleet.json("deploy", "staging", "--release", built["id"], "--yes")
    (row,) = [d for d in fleet.json("history")["deployments"] if d["id"] == shipped["id"]]
    assert row["dirty"] is True
    assert f"{built['id']} (dirty)" in fleet.run("history").stdout
    detail = fleet.run("history", "--id", str(shipped["id"])).stdout
    assert f"with uncommitted changes (diff {built['diff_sha256'][:12]})" in detail
    # Production (promote_from) refuses it even though staging ran it: allow_dirty defaults to false there.
    refused = fleet.run("deploy", "production", "--release", built["id"], "--yes", expect=3)
    assert "uncommitted changes" in refused.stderr
    assert "allow_dirty: false" in refused.stderr
    plan = fleet.run("plan", "production", "--release", built["id"], "--json", expect=3).json()
    assert {g["gate"]: g["open"] for g in plan["gates"]}["clean"] is False
    # A clean build of the same commit is another release, and goes.
    git(fleet.root, "checkout", "--", ".")
    clean = fleet.json("build")
    assert clean["dirty"] is False
    assert clean["id"] != built["id"]


def test_allow_dirty_is_the_environments_choice(repo_fleet: Any) -> None:
    fleet = repo_fleet
    fleet.settings["environments"]["staging"]["allow_dirty"] = False
    fleet.write_config()
    commit_all(fleet, "staging refuses dirty builds")
    (fleet.artifact / "VERSION").write_text("edited\n", encoding="utf-8")
    refused = fleet.run("deploy", "staging", "--yes", expect=3)
    assert "allow_dirty: false" in refused.stderr
    assert set(fleet.currents("staging").values()) == {None}


# -- output ---------------------------------------------------------------------------------------------


def test_rollback_names_what_it_goes_back_to_never_none(make_fleet: Callable[[dict[str, Any]], Any]) -> None:
    fleet = make_fleet(settings())
    fleet.ship("staging", "1.0")
    fleet.ship("staging", "2.0")
    # A state store that knows nothing of these hosts (a new controller): the target is read from the hosts.
    (fleet.root / ".conveyor" / "state.db").unlink()
    done = fleet.run("rollback", "staging", "--yes")
    assert "None" not in done.stderr + done.stdout
    assert "rollback #1: each region's previous release (read from its hosts) to staging" in done.stderr


def test_history_keeps_release_ids_whole_on_a_narrow_terminal(make_fleet: Callable[[dict[str, Any]], Any]) -> None:
    fleet = make_fleet(settings())
    shipped = fleet.ship("staging", "1.0")
    history = fleet.json("history")["deployments"][0]
    history_id = str(history["id"])
    for columns in (80, 120):
        screen = on_a_terminal(fleet, "history", columns=columns)
        assert shipped["release"] in screen, screen
        detail = on_a_terminal(fleet, "history", "--id", history_id, columns=columns)
        assert shipped["release"] in detail, detail
        releases = on_a_terminal(fleet, "releases", columns=columns)
        assert shipped["release"] in releases, releases


def test_history_shows_every_override_and_its_reason(make_fleet: Callable[[dict[str, Any]], Any]) -> None:
    fleet = make_fleet(settings())
    release = fleet.build("1.0")
    done = fleet.json("deploy", "production", "--release", release, "--yes", "--skip-promotion", "--reason",
                      "hotfix for [INC-42] 100% outage")
    text = fleet.run("history", "--id", str(done["id"])).stdout
    assert "override: skip-promotion — reason: hotfix for [INC-42] 100% outage" in text


def test_version(conveyor_bin: str) -> None:
    from importlib.metadata import version

    done = subprocess.run([conveyor_bin, "--version"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"conveyor {version('conveyor-deploy')}"


def test_validate_json_lists_problems_with_the_closest_known_name(
        make_fleet: Callable[[dict[str, Any]], Any]) -> None:
    fleet = make_fleet(settings())
    fleet.settings["keep_release"] = 3
    fleet.settings["roles"]["web"]["restrat"] = "x"
    fleet.write_config()
    document = fleet.run("validate", "--json", expect=2).json()
    problems = sorted(document["problems"], key=lambda p: p["path"])
    assert [(p["file"], p["path"], p["message"]) for p in problems] == [
        (str(fleet.cfg), "keep_release", "unknown field; did you mean `keep_releases`?"),
        (str(fleet.cfg), "roles.web.restrat", "unknown field; did you mean `restart`?"),
    ]
    assert all(isinstance(p["line"], int) and p["line"] > 0 for p in problems)
    text = fleet.run("validate", expect=2).stderr
    assert "keep_release: unknown field; did you mean `keep_releases`?" in text


# -- confirmation -----------------------------------------------------------------------------------


def test_commands_that_change_hosts_refuse_without_a_terminal_or_yes(
        make_fleet: Callable[[dict[str, Any]], Any]) -> None:
    fleet = make_fleet(settings())
    release = fleet.build("1.0")
    for args in (("deploy", "staging", "--release", release), ("rollback", "staging"),
                 ("deploy", "staging", "--release", release, "--json")):
        refused = fleet.run(*args, expect=2)
        assert "pass --yes to run without a terminal" in refused.stderr, refused
    assert set(fleet.currents("staging").values()) == {None}
    assert fleet.json("history")["deployments"] == []
    fleet.json("deploy", "staging", "--release", release, "--yes")
