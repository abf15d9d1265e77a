"""Consistency with the real `conveyor` CLI on a local fleet: what a deployment's probe step records, the
matrix and its --json, --local, the gate's refusal and --accept-drift, and history --id.

Each host answers from a file beside its deploy_to (`<host dir>/srv/stack/perl`), the default otherwise; the
probe runs in deploy_to, so `../stack/perl` is the host's own.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration

PERL = "cat ../stack/perl 2>/dev/null || echo 5.36.0"


def settings(**stack: Any) -> dict[str, Any]:
    return {
        "app": "shop", "artifact": {"path": "app"}, "deploy_to": "/srv/shop", "shared": ["log"],
        "roles": {"web": {}, "batch": {}},
        "environments": {
            "staging": {"transport": "local", "regions": {"uk": {"hosts": {"web": ["s-web-1"], "batch": ["s-b-1"]}}}},
            "production": {"transport": "local", "promote_from": "staging", "regions": {
                "za": {"hosts": {"web": ["za-web-1", "za-web-2"]}}, "uk": {"hosts": {"web": ["uk-web-1"]}}}},
        },
        "consistency": {"components": {"perl": {"probe": PERL}, "pdf": {"probe": "echo 0.12.6", "roles": ["web"]}},
                        "build": ["perl"], "match": ["staging", "production"], **stack},
    }


def answer(fleet: Any, env: str, region: str, host: str, perl: str) -> None:
    folder = fleet.host_dir(env, region, host).parent / "stack"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "perl").write_text(perl + "\n")


def test_the_matrix_the_gate_and_accept_drift_on_a_local_fleet(make_fleet: Any) -> None:
    fleet = make_fleet(settings())
    first = fleet.ship("staging", "1")["release"]
    fleet.deploy("production", first)
    document = fleet.json("consistency")
    assert document["consistent"], document
    assert document["components"] == ["perl", "pdf"]
    za = next(r for r in document["matrix"] if (r["environment"], r["region"], r["component"]) ==
              ("production", "za", "perl"))
    assert za["values"] == {"5.36.0": ["za-web-1", "za-web-2"]}
    assert document["build"]["production"] == {"release": first, "values": {"perl": "5.36.0"}}
    assert not [r for r in document["matrix"] if r["component"] == "pdf" and r["role"] == "batch"]

    # One production host is rebuilt from another image; a deployment's probe step is what notices.
    answer(fleet, "production", "za", "za-web-2", "5.30.0")
    second = fleet.ship("staging", "2")["release"]
    assert fleet.json("consistency", "production")["consistent"]  # as last recorded: not seen yet
    fleet.json("status", "production", "--verify")
    drifted = fleet.run("consistency", "production", "--json", expect=1).json()
    assert [(d["kind"], d["hosts"]) for d in drifted["drift"]] == [("role", ["za-web-2"]), ("build", ["za-web-2"])]
    everywhere = fleet.run("consistency", "--json", expect=1).json()["drift"]
    assert everywhere[-1]["detail"] == "perl: staging, production run 5.36.0; production runs 5.30.0"

    refused = fleet.run("deploy", "production", "--release", second, "--yes", expect=3)
    assert "production refuses" in refused.stderr
    assert "perl" in refused.stderr
    assert "5.30.0 on za-web-2" in refused.stderr
    assert "--accept-drift --reason" in refused.stderr
    assert fleet.currents("production") == {"za-web-1": first, "za-web-2": first, "uk-web-1": first}

    fleet.run("deploy", "production", "--release", second, "--yes", "--accept-drift", expect=2)
    accepted = fleet.deploy("production", second, "--accept-drift", "--reason", "za-web-2 is replaced today")
    assert accepted["status"] == "succeeded"
    history = fleet.json("history", "production")["deployments"]
    assert history[0]["overrides"] == ["accept_drift"]
    detail = fleet.json("history", "--id", str(accepted["id"]))
    assert detail["stack"]["built_with"] == {"perl": "5.36.0"}
    assert detail["stack"]["tested_on"]["environment"] == "staging"
    assert detail["stack"]["tested_on"]["components"]["perl"] == {"5.36.0": ["s-b-1", "s-web-1"]}
    assert detail["stack"]["runs_on"]["perl"] == {"5.36.0": ["uk-web-1", "za-web-1"], "5.30.0": ["za-web-2"]}
    text = fleet.run("history", "--id", str(accepted["id"])).stdout
    assert "tested on (staging, deployment #" in text
    assert "5.30.0 (za-web-2)" in text


def test_local_probes_this_machine_and_names_where_it_differs(make_fleet: Any) -> None:
    fleet = make_fleet(settings())
    fleet.ship("staging", "1")
    document = fleet.run("consistency", "staging", "--local", "--json", expect=None).json()
    # The probe runs in a directory of its own here: no ../stack/perl, so the default answer.
    assert document["local"]["perl"] == {"value": "5.36.0", "error": None}
    assert document["local"]["pdf"] == {"value": "0.12.6", "error": None}
    assert document["consistent"]
    fleet.settings["consistency"]["components"]["perl"]["probe"] = "echo 5.40.0"
    fleet.write_config()
    # staging's hosts said 5.36.0 (recorded); this machine says 5.40.0 now
    drifted = fleet.run("consistency", "staging", "--local", "--json", expect=1).json()
    assert [(d["kind"], d["hosts"]) for d in drifted["drift"]] == [("local", ["s-b-1", "s-web-1"])]
    text = fleet.run("consistency", "staging", "--local", expect=1).stdout
    assert "this machine: 5.40.0" in text
    assert "drift:" in text


def test_consistency_without_the_section_is_bad_input(make_fleet: Any) -> None:
    plain = settings()
    del plain["consistency"]
    fleet = make_fleet(plain)
    result = fleet.run("consistency", expect=2)
    assert "no consistency: section" in result.stderr
    assert fleet.run("consistency", "nowhere", expect=2).stderr


def test_with_on_drift_warn_hosts_of_one_role_that_disagree_are_a_warning_a_deploy_shows_and_returns(
        make_fleet: Any) -> None:
    # Production outside `match`: only the hosts of one role against each other are judged.
    fleet = make_fleet(settings(on_drift="warn", match=["staging"]))
    first = fleet.ship("staging", "1")["release"]
    fleet.deploy("production", first)
    answer(fleet, "production", "za", "za-web-2", "5.30.0")
    fleet.json("status", "production", "--verify")  # the hosts say what they run now
    second = fleet.ship("staging", "2")["release"]

    shown = fleet.run("deploy", "production", "--release", second, "--yes", "--json")
    result = shown.json()
    assert result["status"] == "succeeded"
    assert len(result["warnings"]) == 1, result["warnings"]
    assert result["warnings"][0].startswith("consistency: warning: ")
    assert "5.30.0" in result["warnings"][0]
    assert "za-web-2" in result["warnings"][0]
    assert "conveyor: warning: production: warning: " in shown.stderr  # beside the JSON, never in it

    plan = fleet.json("plan", "production", "--release", second)
    gate = next(g for g in plan["gates"] if g["gate"] == "consistency")
    assert (gate["open"], gate.get("warning")) == (True, True)

    third = fleet.ship("staging", "3")["release"]
    told = fleet.run("deploy", "production", "--release", third, "--yes")  # a person's terminal (not JSON)
    assert "za-web-2" in told.stdout + told.stderr
    assert "5.30.0" in told.stdout + told.stderr
