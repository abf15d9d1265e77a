"""Fixtures for integration tests that drive the real `conveyor` CLI against a local fleet.

Every test gets its own directory with its own `conveyor.yml` (every environment `transport: local`), an
artifact directory the test writes, and its own state store beside the config. Hosts are directories under
`<config dir>/.conveyor/hosts/<env>/<region>/<host>/<deploy_to>/`.

`stack` is a real Prometheus + Alertmanager + exporter (promstack.py), started once per session for the
tests that ask for it. Tests sharing it keep apart by label: each uses its own regions and alert names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promstack
import pytest
import yaml

RELEASE_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")

def _find_conveyor() -> str:
    # Prefer the console script of the interpreter running the tests (the editable install), then PATH.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("conveyor", path=search) or shutil.which("conveyor")
    if found is None:
        pytest.fail("the `conveyor` console script is not installed (pip install -e .)")
    return found


@dataclass
class Result:
    """One finished `conveyor` run."""

    args: list[str]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"conveyor {' '.join(self.args)} -> exit {self.code}\n--- stdout ---\n{self.stdout}"
                f"\n--- stderr ---\n{self.stderr}")

    def json(self) -> Any:
        """The one JSON document on stdout."""
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"stdout is not one JSON document ({exc}):\n{self}") from None


@dataclass
class Fleet:
    """A config directory with its local fleet, and the `conveyor` CLI to drive it."""

    root: Path
    conveyor: str
    settings: dict[str, Any]
    pycache: Path
    user: str = "alice"
    versions: dict[str, str] = field(default_factory=dict)  # release id -> VERSION it was built from

    @property
    def cfg(self) -> Path:
        """The config file."""
        return self.root / "conveyor.yml"

    @property
    def artifact(self) -> Path:
        """The directory `artifact.path` names."""
        return self.root / "app"

    def write_config(self) -> None:
        """Write `settings` as conveyor.yml."""
        self.cfg.write_text(yaml.safe_dump(self.settings, sort_keys=False), encoding="utf-8")

    def env_vars(self, user: str | None = None) -> dict[str, str]:
        """The environment of a `conveyor` run: ours, minus anything that would point elsewhere."""
        env = {k: v for k, v in os.environ.items()
               if k not in {"CONVEYOR_CONFIG", "CONVEYOR_STATE_URL"} and not k.startswith(("GITLAB_", "GITHUB_"))}
        env["CONVEYOR_USER"] = user or self.user
        # Each run is a fresh interpreter: let them share compiled bytecode, kept outside the source tree.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        env["GIT_CEILING_DIRECTORIES"] = str(self.root.parent)
        env["NO_COLOR"] = "1"
        env["COLUMNS"] = "200"
        return env

    def command(self, *args: str) -> list[str]:
        """The argv of a `conveyor` run against this fleet's config."""
        return [self.conveyor, "-c", str(self.cfg), *args]

    def run(self, *args: str, expect: int | None = 0, user: str | None = None, timeout: float = 60) -> Result:
        """Run `conveyor -c CFG ARGS...`; check the exit code (unless `expect` is None) and that no traceback leaked."""
        done = subprocess.run(self.command(*args), capture_output=True, text=True, env=self.env_vars(user),
                              cwd=self.root, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        result = Result(list(args), done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, str(result)
        assert "Traceback" not in done.stdout, str(result)
        if expect is not None:
            assert done.returncode == expect, str(result)
        return result

    def json(self, *args: str, expect: int = 0, user: str | None = None) -> Any:
        """Run a reporting command with `--json` and return its document."""
        return self.run(*args, "--json", expect=expect, user=user).json()

    # -- releases ---------------------------------------------------------------------------
    def write_artifact(self, version: str) -> None:
        """Make the build output of `version`: a few files, one of them executable, in subdirectories."""
        shutil.rmtree(self.artifact, ignore_errors=True)
        for name, text in self.artifact_files(version).items():
            path = self.artifact / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        (self.artifact / "bin" / "start").chmod(0o755)

    @staticmethod
    def artifact_files(version: str) -> dict[str, str]:
        """The files (relative name -> text) of the build output of `version`."""
        return {
            "VERSION": f"{version}\n",
            "bin/start": "#!/bin/sh\nexec echo shop\n",
            "static/index.html": f"<h1>shop {version}</h1>\n",
            "lib/shop/app.py": f"VERSION = {version!r}\n",
        }

    def build(self, version: str) -> str:
        """Write the artifact of `version`, `conveyor build` it, and return the release id."""
        self.write_artifact(version)
        release = self.json("build")["id"]
        assert RELEASE_ID.match(release), release
        self.versions[release] = version
        return release

    def ship(self, env: str, version: str, *args: str, expect: int = 0) -> Any:
        """Write the artifact of `version` and `conveyor deploy ENV --yes --json` it (building it): the result."""
        self.write_artifact(version)
        result = self.json("deploy", env, "--yes", *args, expect=expect)
        assert RELEASE_ID.match(result["release"]), result
        self.versions[result["release"]] = version
        return result

    def deploy(self, env: str, release: str, *args: str, expect: int = 0, user: str | None = None) -> Any:
        """`conveyor deploy ENV --release ID --yes --json ARGS...`: the result document."""
        return self.json("deploy", env, "--release", release, "--yes", *args, expect=expect, user=user)

    # -- hosts ------------------------------------------------------------------------------
    def hosts(self, env: str, region: str | None = None) -> list[tuple[str, str, str]]:
        """(region, role, host) of every host of an environment (or one region), in config order."""
        out = []
        for reg, spec in self.settings["environments"][env]["regions"].items():
            if region is None or reg == region:
                out += [(reg, role, name) for role, names in spec["hosts"].items() for name in names]
        return out

    def host_dir(self, env: str, region: str, host: str) -> Path:
        """`deploy_to` of a local host."""
        return self.root / ".conveyor" / "hosts" / env / region / host / self.settings["deploy_to"].lstrip("/")

    def current(self, env: str, region: str, host: str) -> str | None:
        """The release `current` points at (None if there is no `current`), checking the link's form."""
        link = self.host_dir(env, region, host) / "current"
        if not link.is_symlink():
            assert not link.exists(), f"{link} exists but is not a symlink"
            return None
        target = os.readlink(link)
        parts = target.split("/")
        assert len(parts) == 2, f"{link} -> {target}, expected releases/<release id>"
        assert parts[0] == "releases", f"{link} -> {target}, expected releases/<release id>"
        assert RELEASE_ID.match(parts[1]), f"{link} -> {target}, expected releases/<release id>"
        assert (link.parent / target).is_dir(), f"{link} -> {target}, which is not a directory"
        return parts[1]

    def currents(self, env: str, region: str | None = None) -> dict[str, str | None]:
        """host -> the release its `current` points at."""
        return {host: self.current(env, reg, host) for reg, _role, host in self.hosts(env, region)}

    def releases_on(self, env: str, region: str, host: str) -> set[str]:
        """The names under a host's `releases/`."""
        folder = self.host_dir(env, region, host) / "releases"
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()

    def assert_complete(self, env: str, region: str, host: str, release: str) -> None:
        """The release directory holds exactly the files of the build it came from, and the shared links."""
        folder = self.host_dir(env, region, host) / "releases" / release
        version = self.versions[release]
        expected = self.artifact_files(version)
        found = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}
        assert found == set(expected), f"{folder}: files {sorted(found)}, expected {sorted(expected)}"
        for name, text in expected.items():
            assert (folder / name).read_text(encoding="utf-8") == text, f"{folder / name} differs from the build"
        assert os.access(folder / "bin" / "start", os.X_OK), f"{folder}/bin/start lost its executable bit"
        log = folder / "log"
        assert log.is_symlink(), f"{log} is not a link to shared/log"
        shared = folder.parent.parent / "shared" / "log"
        assert log.resolve() == shared.resolve(), f"{log} is not linked to {shared}"


@pytest.fixture(scope="session")
def conveyor_bin() -> str:
    """The `conveyor` console script."""
    return _find_conveyor()


@pytest.fixture(scope="session")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the `conveyor` runs of this session keep their bytecode."""
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture
def make_fleet(tmp_path: Path, conveyor_bin: str, pycache: Path) -> Callable[[dict[str, Any]], Fleet]:
    """Write a config into this test's own directory and return its Fleet."""
    made: list[Fleet] = []

    def make(settings: dict[str, Any]) -> Fleet:
        root = tmp_path / f"fleet{len(made) + 1}"
        root.mkdir()
        fleet = Fleet(root, conveyor_bin, settings, pycache)
        fleet.write_config()
        made.append(fleet)
        return fleet

    return make


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[promstack.Stack]:
    """Exporter, Prometheus and Alertmanager on loopback ports, ready; all stopped at the end of the session."""
    with promstack.running(tmp_path_factory.mktemp("monitoring")) as running:
        yield running
