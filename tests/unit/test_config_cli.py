"""`conveyor validate`, `init` and `schema`: exit codes and what reaches the terminal.

A couple of cases run the installed `conveyor` script, to see exactly what a user sees (no traceback);
the rest call the entry point in-process, which is faster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conveyor.cli.app import main
from conveyor.secrets import MASK

INVALID = """\
app: www
keep_releases: 0
roles:
  web: {batch: 150%}
environments:
  staging:
    regions:
      uk: {hosts: {web: [web-1], db: [db-1]}}
"""
INVALID_LINES = [
    "{f}:2: keep_releases: must be at least 1, got 0",
    "{f}:4: roles.web.batch: a percent must be between 0% and 100%, got '150%'",
    "{f}:8: environments.staging.regions.uk.hosts.db: unknown role 'db'; known: web",
]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `conveyor ARGV`, in-process."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture(scope="module")
def conveyor() -> str:
    path = shutil.which("conveyor")
    assert path, "the conveyor script is not installed (pip install -e .)"
    return path


def test_script_missing_file(conveyor: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    done = subprocess.run([conveyor, "validate", "-c", str(missing)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "no such file" in done.stderr
    assert str(missing) in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_script_invalid_file(conveyor: str, tmp_path: Path) -> None:
    config = tmp_path / "conveyor.yml"
    config.write_text(INVALID, encoding="utf-8")
    done = subprocess.run([conveyor, "validate", "-c", str(config)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [line.format(f=config) for line in INVALID_LINES]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_validate_invalid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "conveyor.yml"
    config.write_text("app: www\nroles: {web: {}\n", encoding="utf-8")
    code, out, err = run(["validate", "-c", str(config)], capsys)
    assert code == 2
    assert err.splitlines() == [
        f"{config}:3: YAML syntax error at column 1: expected ',' or '}}', but got '<stream end>' "
        "(while parsing a flow mapping that started at line 2, column 8)"
    ]
    assert out == ""


def test_validate_json_reports_the_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "conveyor.yml"
    config.write_text(INVALID, encoding="utf-8")
    code, out, err = run(["validate", "--json", "-c", str(config)], capsys)
    assert code == 2
    document = json.loads(out)
    assert document["exit_code"] == 2
    assert document["error"].splitlines() == [line.format(f=config) for line in INVALID_LINES]
    assert err.splitlines() == document["error"].splitlines()


def test_global_config_option_and_env(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "deploy.yml"
    config.write_text(INVALID, encoding="utf-8")
    code, _, err = run(["-c", str(config), "validate"], capsys)
    assert (code, err.splitlines()[0]) == (2, INVALID_LINES[0].format(f=config))
    monkeypatch.setenv("CONVEYOR_CONFIG", str(config))
    code, _, err = run(["validate"], capsys)
    assert (code, err.splitlines()[0]) == (2, INVALID_LINES[0].format(f=config))


def test_secret_in_an_error_is_masked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "-hunter2-secret-user"
    monkeypatch.setenv("CONVEYOR_TEST_SSH_USER", secret)
    config = tmp_path / "conveyor.yml"
    config.write_text("app: www\nssh: {user: '${CONVEYOR_TEST_SSH_USER}'}\nroles: {web: {}}\n"
                      "environments: {s: {regions: {uk: {hosts: {web: [w1]}}}}}\n", encoding="utf-8")
    code, _, err = run(["validate", "-c", str(config)], capsys)
    assert code == 2
    assert secret not in err
    assert err.startswith(f"{config}:2: ssh.user: user '{MASK}' must start with")


def test_init_writes_a_config_that_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "conveyor.yml"
    code, _, err = run(["init", str(config)], capsys)
    assert code == 0
    assert f"wrote {config}" in err
    assert config.read_text(encoding="utf-8").startswith("# conveyor.yml")
    code, out, err = run(["validate", "-c", str(config)], capsys)
    assert code == 0, err
    assert f"{config}: valid (2 environment(s), 9 host(s) listed)" in out
    code, out, _ = run(["validate", "--json", "-c", str(config)], capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary["valid"] is True
    assert summary["environments"]["production"] == {"regions": ["za", "uk"], "hosts": 6, "inventories": []}


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "conveyor.yml"
    config.write_text("app: mine\n", encoding="utf-8")
    code, _, err = run(["init", str(config)], capsys)
    assert code == 2
    assert "exists; use --force" in err
    assert config.read_text(encoding="utf-8") == "app: mine\n"
    code, _, _ = run(["init", "--force", str(config)], capsys)
    assert code == 0
    assert config.read_text(encoding="utf-8") != "app: mine\n"


def test_schema_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["schema"], capsys)
    assert code == 0
    schema = json.loads(out)
    assert "environments" in schema["properties"]
    assert set(schema["required"]) == {"app", "roles", "environments"}
    assert schema["additionalProperties"] is False
    hosts = schema["$defs"]["Region"]["properties"]["hosts"]["additionalProperties"]["items"]
    assert {"type": "string"} in hosts["anyOf"]
