"""No secret reaches any output (issue 15, point 2): the whole CLI surface, text and --json, the state
database's rows and generated files, with secrets that hold backslashes, quotes, spaces, `%` and non-ASCII.

A secret is a value that came from the environment through `${NAME}` in conveyor.yml, or the password of
CONVEYOR_STATE_URL / CONVEYOR_DATABASE_URL. We look for the value itself and for every form Python, JSON,
a shell or a URL would write it in.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

pytestmark = pytest.mark.integration

SECRETS = {
    "DB_PASSWORD": 'pa\\ss "W0rd" it\'s 100% ünïcødé',
    "API_TOKEN": "tok\\en-%41-Zürich-'x'",
}


def forms(value: str) -> set[str]:
    """Every way the value may be written out by a careless print."""
    return {value, repr(value), repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
            quote(value, safe=""), quote_plus(value), shlex.quote(value)}


def assert_clean(where: str, text: str) -> None:
    for name, value in SECRETS.items():
        for form in forms(value):
            assert form not in text, f"{where}: the secret {name} appears as {form!r}:\n{text[:3000]}"


RESTART = "cat <<'EOF'\nrestarting with ${DB_PASSWORD}\nEOF\n"


@pytest.fixture
def leaky(make_fleet: Callable[[dict[str, Any]], Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return make_fleet({
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "roles": {
            "web": {"restart": RESTART, "canary": 1,
                    "checks": [{"command": "test \"${API_TOKEN}\" = never", "name": "token check"}]},
            "batch": {"restart": "echo ok ${API_TOKEN}; exit 0"},
        },
        "environments": {
            "staging": {"transport": "local",
                        "regions": {"uk": {"hosts": {"web": ["uk-web-1", "uk-web-2"], "batch": ["uk-batch-1"]}}}},
        },
    })


def test_no_command_prints_a_secret(leaky: Any) -> None:
    fleet = leaky
    release = fleet.build("1.0")
    outputs: list[tuple[str, str]] = []

    def run(*args: str, expect: int | None = None) -> None:
        done = fleet.run(*args, expect=expect)
        outputs.append((" ".join(args), done.stdout + done.stderr))

    run("validate")
    run("validate", "--json")
    run("plan", "staging")
    run("plan", "staging", "--json")
    run("deploy", "staging", "--release", release, "--yes")  # the token check fails: switched back, exit 1
    run("deploy", "staging", "--release", release, "--yes", "--json")
    run("history")
    run("history", "--json")
    for deployment in fleet.json("history")["deployments"]:
        run("history", "--id", str(deployment["id"]))
        run("history", "--id", str(deployment["id"]), "--json")
    run("status")
    run("status", "--json")
    run("status", "--verify", "--json")
    run("releases", "--json")
    run("lock", "staging", "--reason", "hold")
    run("plan", "staging")
    run("unlock", "staging")
    run("ci", "gitlab")
    run("ci", "github")
    run("windows", "--json")
    # The host's restart printed the secret; the output tail was kept.
    failed = fleet.json("history")["deployments"][0]
    assert failed["status"] in {"failed", "rolled_back"}, failed
    for where, text in outputs:
        assert_clean(where, text)
    assert any("********" in text for _, text in outputs), "nothing was masked: the test saw no secret at all"
    # The state store's rows.
    database = fleet.root / ".conveyor" / "state.db"
    with sqlite3.connect(database) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                assert_clean(f"state table {table}", json.dumps(row, default=str, ensure_ascii=False))
                assert_clean(f"state table {table}", repr(row))


def test_a_state_url_that_does_not_parse_is_not_printed_with_its_password(
        make_fleet: Callable[[dict[str, Any]], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    password = "p@ss\\w0rd%zz"
    fleet = make_fleet({"app": "shop", "artifact": {"path": "app"}, "deploy_to": "/srv/shop",
                        "roles": {"web": {"restart": "true"}},
                        "environments": {"staging": {"transport": "local",
                                                     "regions": {"uk": {"hosts": {"web": ["uk-web-1"]}}}}}})
    env = fleet.env_vars()
    env["CONVEYOR_STATE_URL"] = f"postgresql://deploy:{password}@db.internal:notaport/conveyor"
    import subprocess

    for args in (("history",), ("history", "--json"), ("status",)):
        done = subprocess.run(fleet.command(*args), capture_output=True, text=True, env=env, cwd=fleet.root,
                              timeout=60, stdin=subprocess.DEVNULL, check=False)
        assert done.returncode == 1, done
        assert "Traceback" not in done.stderr
        text = done.stdout + done.stderr
        for form in forms(password) | {"p@ss"}:
            assert form not in text, f"{args}: {text}"
        assert "********" in text or "deploy:" not in text, text


def test_json_output_is_masked_however_deep(tmp_path: Path) -> None:
    from conveyor.secrets import mask_json, register_secret

    register_secret("t0p-s3cr3t\\x")
    document = {"a": [{"b": "x t0p-s3cr3t\\x y"}, ("t0p-s3cr3t\\x",)], "t0p-s3cr3t\\x": 1, "n": 3}
    assert mask_json(document) == {"a": [{"b": "x ******** y"}, ["********"]], "********": 1, "n": 3}
