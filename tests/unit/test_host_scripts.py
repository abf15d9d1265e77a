"""Host scripts: the command lines built for each phase, and what the real scripts do to a host's layout.

The scripts run here with the system's `sh`, exactly as the local transport runs them, against hostile
paths and values: nothing in a value may ever be executed, and everything must land where it was asked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from conveyor.artifact import pack
from conveyor.engine import commands
from conveyor.engine.exits import HostExit, shell_names
from conveyor.engine.probe import Probe, current_at_exit, journal_entry, last_step, markers, parse_probe, tail

HAS_ZSTD = shutil.which("zstd") is not None

# --------------------------------------------------------------------------------------------------
# Command lines are data: exact strings.


def pinned(line: str) -> str:
    """The command line with its mark (new for every command) written as MARK."""
    words = shlex.split(line)
    mark = words[next(i for i, w in enumerate(words) if w.startswith("conveyor-")) + 1]
    assert commands.genuine(mark), mark
    return line.replace(mark, "MARK")


def test_a_switch_that_prunes_passes_keep_and_the_protected_releases_as_words_after_the_restart() -> None:
    line = commands.activate("/srv/www", "R3", "{}", "{}", "", {}, keep=5, protected=["a", "b"])
    assert pinned(line) == (f"sh -c {shlex.quote(commands.script('activate'))} conveyor-activate MARK "
                            "/srv/www R3 '{}' '{}' '' 5 a b")


def test_a_switch_that_prunes_leaves_out_empty_protected_releases() -> None:
    line = commands.activate("/srv/www", "R3", "{}", "{}", "", {}, keep=3, protected=["R2", ""])
    assert pinned(line).endswith(" conveyor-activate MARK /srv/www R3 '{}' '{}' '' 3 R2")


def test_env_is_the_scripts_first_line_sorted_and_each_assignment_quoted() -> None:
    line = commands.check("/srv/www/releases/R1", "curl -fsS localhost", 3, 0.5, {"B": "x", "A": "b c"})
    assert line.startswith("sh -c '")  # no `env` process: the script exports them itself
    assert shlex.split(line)[2] == "export 'A=b c' B=x\n" + commands.script("check")
    assert pinned(line).endswith(" conveyor-check MARK /srv/www/releases/R1 'curl -fsS localhost' 3 0.5")


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "A=B", "$(x)", "A;B"])
def test_an_env_name_that_is_no_variable_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a variable name"):
        commands.check("/r", "true", 0, 0, {name: "x"})


def test_env_values_reach_a_hosts_commands_exactly_under_bash_and_sh(tmp_path: Path) -> None:
    values = {"CONVEYOR_RELEASE": "it's \"R1\" $(touch pwned) `touch pwned`", "CONVEYOR_HOST": "a\nb\tc; d",
              "CONVEYOR_KIND": "", "CONVEYOR_APP": "\\ ' \" $HOME *"}
    show = 'for n in CONVEYOR_APP CONVEYOR_HOST CONVEYOR_KIND CONVEYOR_RELEASE; do printenv "$n"; echo "|"; done'
    for shell in ("sh", "bash"):
        done = subprocess.run([shell, "-c", commands.check(str(tmp_path), show, 0, 0, values)], cwd=tmp_path,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout
        said = "".join(line + "\n" for line in done.stdout.splitlines() if not line.startswith("@@conveyor"))
        assert said == "".join(values[n] + "\n|\n" for n in sorted(values)), shell
        assert not (tmp_path / "pwned").exists()


def test_a_command_without_env_starts_with_sh() -> None:
    line = commands.activate("/srv/www", "", '{"event": "activate"}', '{"event": "ready"}', "", {})
    assert line.startswith("sh -c '")
    assert pinned(line).endswith(
        """ conveyor-activate MARK /srv/www '' '{"event": "activate"}' '{"event": "ready"}' ''""")


@pytest.mark.parametrize(("interval", "word"), [(0, "0"), (0.5, "0.5"), (2.0, "2"), (1.25, "1.25")])
def test_check_writes_its_interval_as_a_plain_number(interval: float, word: str) -> None:
    assert pinned(commands.check("/r", "true", 0, interval, {})).endswith(f" conveyor-check MARK /r true 0 {word}")


def test_receive_lists_shared_paths_after_the_checksum() -> None:
    line = commands.receive("/srv/my app", "R1", "abc123", ["log", "tmp/uploads"])
    assert pinned(line).endswith(" conveyor-receive MARK '/srv/my app' R1 abc123 gzip log tmp/uploads")
    zstd = commands.receive("/srv/my app", "R1", "abc123", ["log"], "zstd")
    assert pinned(zstd).endswith(" conveyor-receive MARK '/srv/my app' R1 abc123 zstd log")


def test_probe_passes_an_empty_release_as_an_empty_word() -> None:
    assert pinned(commands.probe("/srv/www", "")).endswith(" conveyor-probe MARK /srv/www ''")


def test_every_command_gets_its_own_mark_and_only_this_process_makes_genuine_ones() -> None:
    marks = {shlex.split(commands.probe("/srv/www", ""))[4] for _ in range(3)}
    assert len(marks) == 3
    assert all(commands.genuine(mark) for mark in marks)
    mark = marks.pop()
    forged = [mark[:16] + "0" * 16, "0" * 32, mark.upper(), mark[:-1], mark + "0", "", "step=switch"]
    assert not any(commands.genuine(word) for word in forged)
    assert shlex.split(commands.command("probe", ["/srv/www", "R1"], mark="M"))[4:] == ["M", "/srv/www", "R1"]


def test_every_word_survives_a_round_trip_through_the_shell_parser() -> None:
    env = {"CONVEYOR_RELEASE": "it's \"R1\"", "A": "$(x) `y`"}
    line = commands.activate("/srv/a b", "R'1", "{\"x\": \"y'z\"}", "{}", "echo \"$HOME\" 'q'", env)
    assert shlex.split(pinned(line)) == [
        "sh", "-c", "export 'A=$(x) `y`' 'CONVEYOR_RELEASE=it'\"'\"'s \"R1\"'\n" + commands.script("activate"),
        "conveyor-activate", "MARK",
        "/srv/a b", "R'1", "{\"x\": \"y'z\"}", "{}", "echo \"$HOME\" 'q'",
    ]


def test_a_nul_byte_cannot_be_sent_to_a_host() -> None:
    with pytest.raises(ValueError, match="NUL"):
        commands.probe("/srv/www\0", "")
    with pytest.raises(ValueError, match="NUL"):
        commands.check("/r", "true", 0, 0, {"A": "\0"})


def test_an_unknown_phase_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown phase 'deploy'"):
        commands.script("deploy")


@pytest.mark.parametrize("phase", commands.PHASES)
def test_every_phase_is_the_common_prelude_then_valid_posix_sh(phase: str) -> None:
    prelude = (resources.files("conveyor.engine") / "scripts" / "common.sh").read_text(encoding="utf-8")
    source = commands.script(phase)
    assert source.startswith(prelude)
    assert source[len(prelude):].startswith(f"# {phase} ")
    assert "set -eu" in prelude
    parsed = subprocess.run(["sh", "-n", "-c", source], capture_output=True, text=True, check=False)
    assert parsed.returncode == 0, parsed.stderr


# --------------------------------------------------------------------------------------------------
# Exit codes: named once (engine/exits.py), and the scripts say the same names.

SCRIPTS = resources.files("conveyor.engine") / "scripts"


def script_sources() -> dict[str, str]:
    """Every host script by file name."""
    return {item.name: item.read_text(encoding="utf-8") for item in SCRIPTS.iterdir() if item.name.endswith(".sh")}


def test_the_prelude_names_the_exit_codes_as_the_controller_does() -> None:
    # After changing HostExit, paste the output of `python -m conveyor.engine.exits` over the block in common.sh.
    common = script_sources()["common.sh"]
    assert re.findall(r"^EXIT_\w+=.*$", common, flags=re.MULTILINE) == shell_names().splitlines()
    assert shell_names() in common


def test_the_exit_codes_keep_the_numbers_hosts_and_docs_show() -> None:
    assert {code.name: int(code) for code in HostExit} == {
        "BAD_ARGUMENT": 2, "CHECKSUM_MISMATCH": 10, "UNPACK_FAILED": 11, "BASE_MISSING": 12, "NO_HARD_LINKS": 13,
        "TOOL_MISSING": 14, "EXPECTATION_UNMET": 15, "DOWNLOAD_FAILED": 16, "NO_DOWNLOADER": 17,
        "SHARED_PATH_UNSAFE": 18, "RELEASE_REFUSED": 19, "RELEASE_MISSING": 20, "CANNOT_WRITE": 21,
    }


def test_every_exit_a_script_makes_is_named_and_every_name_it_uses_is_one() -> None:
    used: set[str] = set()
    for name, source in script_sources().items():
        code = "\n".join(line.split("#", 1)[0] for line in source.splitlines() if not line.startswith("EXIT_"))
        # 0 is success; 1 is only what the find helper in common.sh says to find, never a script's exit.
        numbered = [n for n in re.findall(r"\b(?:fail|exit)\s+(\d+)", code) if n not in {"0", "1"}]
        assert numbered == [], f"{name} exits with a bare number: {numbered}"
        used |= set(re.findall(r"\$\{?EXIT_(\w+)", source))
    assert used <= {code.name for code in HostExit}
    assert used == {code.name for code in HostExit}  # a name no script uses has no business in the table


# --------------------------------------------------------------------------------------------------
# The real scripts, run with sh against a directory.


@dataclass(frozen=True)
class Ran:
    """What one script run did: its exit code and its combined output."""

    code: int
    output: str

    @property
    def step(self) -> str | None:
        return last_step(self.output)


@dataclass(frozen=True)
class Artifact:
    """A packed release tarball and its sha256."""

    data: bytes
    sha256: str


@dataclass(frozen=True)
class HostDirectory:
    """A host that is a directory, driven the way the engine drives it: one script per phase."""

    deploy_to: str
    cwd: Path  # where the scripts start: a stray `touch` would land here
    shared: tuple[str, ...] = ("log", "tmp/uploads")

    @property
    def root(self) -> Path:
        return self.cwd / self.deploy_to

    def run(self, command: str, stdin: bytes = b"") -> Ran:
        done = subprocess.run(["sh", "-c", command], cwd=self.cwd, input=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, check=False)
        return Ran(done.returncode, done.stdout.decode("utf-8", "replace"))

    def probe(self, release: str = "") -> Probe:
        ran = self.run(commands.probe(self.deploy_to, release))
        assert ran.code == 0, ran.output
        return parse_probe(ran.output)

    def receive(self, release: str, artifact: Artifact, sha256: str | None = None) -> Ran:
        line = commands.receive(self.deploy_to, release, sha256 or artifact.sha256, list(self.shared))
        return self.run(line, stdin=artifact.data)

    def activate(self, release: str, *, previous: str | None = None, kind: str = "deploy",
                 restart: str = "", keep: int | None = None, protected: list[str] | None = None) -> Ran:
        """Switch to `release`; with `keep`, prune in the same round trip, as the engine does."""
        entry = {"event": "activate", "kind": kind, "release": release or None, "previous": previous}
        env = {"CONVEYOR_RELEASE": release, "CONVEYOR_PREVIOUS_RELEASE": previous or "", "CONVEYOR_KIND": kind,
               "CONVEYOR_DEPLOY_TO": self.deploy_to}
        return self.run(commands.activate(self.deploy_to, release, json.dumps(entry, sort_keys=True),
                                          json.dumps({**entry, "event": "ready"}, sort_keys=True), restart, env,
                                          keep=keep, protected=protected))

    def deploy(self, release: str, artifact: Artifact, *, previous: str | None = None, kind: str = "deploy",
               restart: str = "", keep: int | None = None, protected: list[str] | None = None) -> Ran:
        """Receive (unless on disk already) and activate, as one deployment does on one host."""
        if not (self.root / "releases" / release).is_dir():
            received = self.receive(release, artifact)
            assert received.code == 0, received.output
        return self.activate(release, previous=previous, kind=kind, restart=restart, keep=keep, protected=protected)

    def check(self, release: str, command: str, retries: int, env: dict[str, str] | None = None) -> Ran:
        path = os.path.join(self.deploy_to, "releases", release)
        return self.run(commands.check(path, command, retries, 0, env or {}))

    def journal(self) -> list[dict[str, Any]]:
        lines = (self.root / ".conveyor" / "journal.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def releases(self) -> list[str]:
        return sorted(os.listdir(self.root / "releases"))


def events(journal: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """The journal as (event, release) pairs."""
    return [(entry["event"], entry["release"]) for entry in journal]


def pwned(root: Path) -> list[Path]:
    """Every file an injected `touch PWNED` could have created under `root`."""
    return [path for path in root.rglob("*") if path.name == "PWNED"]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    source = tmp_path_factory.mktemp("app")
    (source / "bin").mkdir()
    (source / "bin" / "start").write_text("#!/bin/sh\nexec true\n")
    (source / "bin" / "start").chmod(0o755)
    (source / "index.html").write_text("<h1>www</h1>\n")
    (source / "log").mkdir()
    (source / "log" / "boot.log").write_text("shipped with the release\n")
    tarball = tmp_path_factory.mktemp("dist") / "www.tar.gz"
    packed = pack(source, tarball)
    data = tarball.read_bytes()
    assert hashlib.sha256(data).hexdigest() == packed.sha256
    return Artifact(data, packed.sha256)


@pytest.fixture
def host(tmp_path: Path) -> HostDirectory:
    (tmp_path / "cwd").mkdir()
    return HostDirectory(deploy_to=str(tmp_path / "srv" / "www"), cwd=tmp_path / "cwd")


def test_probe_makes_the_layout_and_reports_an_empty_host(host: HostDirectory) -> None:
    probe = host.probe("R1")
    assert sorted(os.listdir(host.root)) == [".conveyor", "incoming", "releases", "shared"]
    assert probe == Probe(current=None, has_release=False, releases=(), journal=(), zstd=HAS_ZSTD)


def test_receive_unpacks_a_complete_release_and_links_shared_paths(host: HostDirectory, artifact: Artifact) -> None:
    ran = host.receive("R1", artifact)
    assert (ran.code, ran.step) == (0, "place"), ran.output
    release = host.root / "releases" / "R1"
    assert (release / "index.html").read_text() == "<h1>www</h1>\n"
    assert os.access(release / "bin" / "start", os.X_OK)
    # Shared paths are links into shared/; what the first release shipped there seeds shared/.
    assert os.readlink(release / "log") == f"{host.deploy_to}/shared/log"
    assert os.readlink(release / "tmp" / "uploads") == f"{host.deploy_to}/shared/tmp/uploads"
    assert (host.root / "shared" / "log" / "boot.log").read_text() == "shipped with the release\n"
    assert (host.root / "shared" / "tmp" / "uploads").is_dir()
    assert os.listdir(host.root / "incoming") == []
    assert not (host.root / "current").exists()
    assert host.probe("R1") == Probe(current=None, has_release=True, releases=("R1",), journal=(), zstd=HAS_ZSTD)


def test_shared_content_survives_the_next_release(host: HostDirectory, artifact: Artifact) -> None:
    host.receive("R1", artifact)
    (host.root / "shared" / "log" / "app.log").write_text("written at run time\n")
    ran = host.receive("R2", artifact)
    assert ran.code == 0, ran.output
    assert (host.root / "releases" / "R2" / "log" / "app.log").read_text() == "written at run time\n"
    assert (host.root / "shared" / "log" / "boot.log").read_text() == "shipped with the release\n"


def test_receiving_a_release_already_on_the_host_keeps_it(host: HostDirectory, artifact: Artifact) -> None:
    host.receive("R1", artifact)
    (host.root / "releases" / "R1" / "marker").write_text("first\n")
    ran = host.receive("R1", artifact)
    assert ran.code == 0, ran.output
    assert "release R1 was already complete here" in ran.output
    assert (host.root / "releases" / "R1" / "marker").read_text() == "first\n"
    assert os.listdir(host.root / "incoming") == []


def test_a_wrong_checksum_exits_10_and_leaves_nothing_under_releases(host: HostDirectory,
                                                                     artifact: Artifact) -> None:
    ran = host.receive("R1", artifact, sha256="0" * 64)
    assert (ran.code, ran.step) == (HostExit.CHECKSUM_MISMATCH, "verify"), ran.output
    assert f"checksum mismatch: expected {'0' * 64}, received {artifact.sha256}" in ran.output
    assert host.releases() == []
    assert os.listdir(host.root / "incoming") == []


def test_a_tarball_that_is_not_gzip_exits_11(host: HostDirectory) -> None:
    junk = Artifact(b"not a tarball\n", hashlib.sha256(b"not a tarball\n").hexdigest())
    ran = host.receive("R1", junk)
    assert (ran.code, ran.step) == (HostExit.UNPACK_FAILED, "unpack"), ran.output
    assert host.releases() == []
    assert os.listdir(host.root / "incoming") == []


# --------------------------------------------------------------------------------------------------
# Hostile tarballs: a host refuses, after unpacking and before placing, what no release may hold, even
# when the tarball is exactly the one the controller announced (its sha256 matches).


def crafted(*members: tuple[str, str, str | int]) -> Artifact:
    """A gzip tarball of (name, kind, detail) members: ("f", mode) files, ("l", target) symlinks, ("d", mode)
    directories, ("c"|"b", "major,minor") devices, ("p", "") fifos, with a VERSION file first."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(tarfile.TarInfo("VERSION"), io.BytesIO(b""))
        for name, kind, detail in members:
            info = tarfile.TarInfo(name)
            if kind == "f":
                info.mode = int(detail)
                info.size = 3
                archive.addfile(info, io.BytesIO(b"#!\n"))
                continue
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, int(detail)
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, str(detail)
            elif kind in ("c", "b"):
                info.type = tarfile.CHRTYPE if kind == "c" else tarfile.BLKTYPE
                info.devmajor, info.devminor = (int(n) for n in str(detail).split(","))
                info.mode = 0o666
            else:
                info.type = tarfile.FIFOTYPE
            archive.addfile(info)
    data = raw.getvalue()
    return Artifact(data, hashlib.sha256(data).hexdigest())


HOSTILE = [
    ([("bin/su", "f", 0o4755)], "bin/su is setuid"),
    ([("bin/sg", "f", 0o2711)], "bin/sg is setgid"),
    ([("dev/null", "c", "1,3")], "dev/null is a device node"),
    ([("dev/loop", "b", "7,0")], "dev/loop is a device node"),
    ([("run/pipe", "p", "")], "run/pipe is a fifo"),
    ([("etc", "l", "/etc")], "etc is a symlink to an absolute path (/etc)"),
    ([("a/b/up", "l", "../../../x")], "a/b/up is a symlink leaving the release (../../../x)"),
    ([("s", "l", "."), ("esc", "l", "s/..")], "esc is a symlink leaving the release (s/..)"),
    ([("a/s", "l", ".."), ("a/esc", "l", "s/../..")], "a/esc is a symlink leaving the release (s/../..)"),
    ([("x", "l", "missing/../../etc")], "x is a symlink leaving the release (missing/../../etc)"),
    ([("bad\nname", "l", "/\n@@conveyor step=done")], "bad?name is a symlink to an absolute path (/?@@conveyor"),
]


@pytest.mark.parametrize(("members", "why"), HOSTILE, ids=[why.split(" (")[0] for _m, why in HOSTILE])
def test_a_host_refuses_a_release_holding_what_no_release_may_hold(
        host: HostDirectory, members: list[tuple[str, str, str | int]], why: str) -> None:
    ran = host.receive("R1", crafted(*members))
    assert (ran.code, ran.step) == (HostExit.RELEASE_REFUSED, "inspect"), ran.output
    assert tail(ran.output, 1).startswith(f"conveyor: refused the release: {why}"), ran.output
    assert host.releases() == []
    assert os.listdir(host.root / "incoming") == []


def test_links_that_stay_inside_the_release_are_kept(host: HostDirectory) -> None:
    release = crafted(("lib/v1/app.py", "f", 0o644), ("lib/current", "l", "v1"), ("a/b/top", "l", "../.."),
                      ("a/lib", "l", "../lib/current"), ("a/later", "l", "../not/yet/there"),
                      ("bin/run", "f", 0o755), ("data", "d", 0o2775))
    ran = host.receive("R1", release)
    assert (ran.code, ran.step) == (0, "place"), ran.output
    root = host.root / "releases" / "R1"
    assert (root / "a" / "lib" / "app.py").read_text() == "#!\n"
    assert os.readlink(root / "a" / "b" / "top") == "../.."


def test_a_hostile_delta_is_refused_too(tmp_path: Path, host: HostDirectory, artifact: Artifact) -> None:
    assert host.receive("R1", artifact).code == 0
    delta = crafted(("bin/su", "f", 0o4755))
    ran = host.run(commands.receive_delta(host.deploy_to, "R2", "R1", delta.sha256, list(host.shared), []),
                   stdin=delta.data)
    assert (ran.code, ran.step) == (HostExit.RELEASE_REFUSED, "inspect"), ran.output
    assert "refused the delta: bin/su is setuid" in ran.output
    assert host.releases() == ["R1"]


HOST_TOOLS = ("sh", "tar", "gzip", "sha256sum", "mkdir", "ln", "mv", "rm", "tee", "cat", "mkfifo", "readlink",
              "tail", "head", "cp", "dirname", "printf", "find", "tr", "awk", "dd")


@pytest.mark.parametrize("missing", ["sha256sum", "tar", "find"])
def test_a_missing_tool_is_the_reason_given_not_what_it_breaks(tmp_path: Path, host: HostDirectory,
                                                               artifact: Artifact, missing: str) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in HOST_TOOLS:
        found = shutil.which(tool)
        if found and tool != missing:
            (tools / tool).symlink_to(found)
    line = commands.receive(host.deploy_to, "R1", artifact.sha256, list(host.shared))
    done = subprocess.run(["sh", "-c", line], cwd=host.cwd, input=artifact.data, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env={"PATH": str(tools)}, check=False)
    ran = Ran(done.returncode, done.stdout.decode())
    assert ran.code == HostExit.TOOL_MISSING, ran.output
    assert tail(ran.output, 1) == f"conveyor: {missing} is not installed on this host"
    assert host.releases() == []


def test_a_tarball_that_unpacks_badly_says_what_tar_said(host: HostDirectory) -> None:
    data = gzip.compress(b"not a tar archive, but gzip all right\n" * 40)
    ran = host.receive("R1", Artifact(data, hashlib.sha256(data).hexdigest()))
    assert (ran.code, ran.step) == (HostExit.UNPACK_FAILED, "unpack"), ran.output
    assert tail(ran.output, 1) == "conveyor: cannot unpack the release: tar: This does not look like a tar archive"


def test_activate_switches_current_journals_the_switch_and_restarts_in_the_release(
        host: HostDirectory, artifact: Artifact) -> None:
    host.receive("R1", artifact)
    restart = 'printf "%s %s %s\\n" "$CONVEYOR_RELEASE" "$CONVEYOR_RELEASE_PATH" "$PWD" > restarted'
    ran = host.activate("R1", restart=restart)
    assert (ran.code, ran.step) == (0, "done"), ran.output
    release_path = f"{host.deploy_to}/releases/R1"
    assert (host.root / "releases" / "R1" / "restarted").read_text() == f"R1 {release_path} {release_path}\n"
    assert os.readlink(host.root / "current") == "releases/R1"
    assert (host.root / "current").resolve() == (host.root / "releases" / "R1").resolve()
    assert host.journal() == [
        {"event": "activate", "kind": "deploy", "release": "R1", "previous": None},
        {"event": "ready", "kind": "deploy", "release": "R1", "previous": None},
    ]
    probe = host.probe("R1")
    assert (probe.current, probe.ready("R1")) == ("R1", True)


def test_activating_a_release_that_is_not_on_the_host_exits_20(host: HostDirectory) -> None:
    host.probe()
    ran = host.activate("R9")
    assert (ran.code, ran.step) == (HostExit.RELEASE_MISSING, "switch"), ran.output
    assert "release R9 is not on this host" in ran.output
    assert not (host.root / "current").is_symlink()
    assert not (host.root / ".conveyor" / "journal.jsonl").exists()


def test_activating_no_release_removes_current(host: HostDirectory, artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    ran = host.activate("", previous="R1", kind="rollback", restart="touch restarted")
    assert (ran.code, ran.step) == (0, "done"), ran.output
    assert not (host.root / "current").is_symlink()
    assert not (host.cwd / "restarted").exists()
    assert host.releases() == ["R1"]
    assert events(host.journal())[-2:] == [("activate", None), ("ready", None)]
    assert host.probe().current is None


def test_the_switch_replaces_the_link_and_never_leaves_a_temporary_one(host: HostDirectory,
                                                                        artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    host.receive("R2", artifact)
    ran = host.activate("R2", previous="R1")
    assert ran.code == 0, ran.output
    assert os.readlink(host.root / "current") == "releases/R2"
    # `mv` without -T would have moved the new link into the directory the old one pointed at.
    assert sorted(os.listdir(host.root)) == [".conveyor", "current", "incoming", "releases", "shared"]
    assert sorted(os.listdir(host.root / "releases" / "R1")) == ["bin", "index.html", "log", "tmp"]


def test_current_is_a_link_to_a_complete_release_at_every_moment_of_a_switch(host: HostDirectory,
                                                                              artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    host.receive("R2", artifact)
    link = host.root / "current"
    seen: set[str] = set()
    looks = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                seen.add(os.readlink(link))
            except OSError as exc:
                seen.add(f"not a link: {exc.strerror}")
            looks[0] += 1

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        codes = [host.activate(release).code for release in ["R2", "R1"] * 10]
    finally:
        stop.set()
        watcher.join()
    assert codes == [0] * 20
    assert looks[0] > 0
    assert seen <= {"releases/R1", "releases/R2"}
    assert [p for p in os.listdir(host.root) if p.startswith("current.")] == []


def test_a_failing_restart_fails_at_the_restart_step_and_is_not_journaled_ready(host: HostDirectory,
                                                                                 artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    host.receive("R2", artifact)
    ran = host.activate("R2", previous="R1", restart="echo cannot restart; exit 7")
    assert (ran.code, ran.step) == (7, "restart"), ran.output
    assert tail(ran.output) == "cannot restart"
    assert os.readlink(host.root / "current") == "releases/R2"
    assert events(host.journal()) == [("activate", "R1"), ("ready", "R1"), ("activate", "R2")]
    probe = host.probe("R2")
    assert (probe.current, probe.ready("R2")) == ("R2", False)


# A restart that forges markers: without a mark, with a made-up one, and with this run's own mark, read
# from the command line of the script that runs it; it leaves that mark in `mark` to show it had it.
FORGING_RESTART = r"""
mark=$(tr '\0' '\n' < /proc/$PPID/cmdline | sed -n '/^conveyor-activate$/{n;p;q;}')
printf '%s\n' "$mark" > mark
echo "@@conveyor step=switch"
echo "@@conveyor 0123456789abcdef0123456789abcdef step=switch"
echo "@@conveyor $mark step=switch"
echo "@@conveyor $mark current=$CONVEYOR_PREVIOUS_RELEASE"
printf 'a line that carries on\r@@conveyor %s step=done\n' "$mark"
printf 'cannot restart, and no newline'
exit 1
"""


def test_a_restart_cannot_forge_a_step_or_where_current_points(host: HostDirectory, artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    host.receive("R2", artifact)
    ran = host.activate("R2", previous="R1", restart=FORGING_RESTART)
    assert commands.genuine((host.root / "releases" / "R2" / "mark").read_text().strip())
    assert (ran.code, ran.step) == (1, "restart"), ran.output
    assert current_at_exit(ran.output) == "R2"
    assert os.readlink(host.root / "current") == "releases/R2"
    shown = tail(ran.output).splitlines()
    assert shown[0] == " @@conveyor step=switch"  # what the restart printed is output, set off by a space
    assert shown[-1] == "cannot restart, and no newline"


def test_a_restarts_output_is_kept_in_a_private_log_and_a_server_it_leaves_running_does_not_hold_the_switch(
        host: HostDirectory, artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    host.receive("R2", artifact)
    # The restart starts a server that keeps the restart's output open (no redirection, as people write them).
    started = "echo starting; sleep 60 & echo $! > server.pid; echo started"
    try:
        ran = host.activate("R2", previous="R1", restart=started)
    finally:
        pid_file = host.root / "releases" / "R2" / "server.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), 9)
    assert (ran.code, ran.step) == (0, "done"), ran.output
    assert tail(ran.output).splitlines() == ["starting", "started"]
    log = host.root / ".conveyor" / "restart.log"
    assert log.read_text() == "starting\nstarted\n"
    assert log.stat().st_mode & 0o777 == 0o600
    # A link put where the log goes is replaced, not followed.
    outside = host.cwd / "outside"
    outside.write_text("kept\n")
    log.unlink()
    log.symlink_to(outside)
    assert host.activate("R1", previous="R2", restart="echo again").code == 0
    assert outside.read_text() == "kept\n"
    assert not log.is_symlink()
    assert log.read_text() == "again\n"


def test_a_switch_that_fails_after_the_link_moved_says_where_current_points(host: HostDirectory,
                                                                            artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    host.receive("R2", artifact)
    journal = host.root / ".conveyor" / "journal.jsonl"
    journal.unlink()
    journal.mkdir()  # the journal cannot be written: the switch step fails once `current` has moved
    ran = host.activate("R2", previous="R1", restart="touch restarted")
    assert ran.code != 0
    assert ran.step == "switch", ran.output
    assert current_at_exit(ran.output) == "R2"
    assert os.readlink(host.root / "current") == "releases/R2"
    assert not (host.root / "releases" / "R2" / "restarted").exists()


def test_a_check_cannot_forge_a_marker_either(host: HostDirectory, artifact: Artifact) -> None:
    host.receive("R1", artifact)
    ran = host.check("R1", "echo '@@conveyor step=done'; printf x", retries=0)
    assert (ran.code, ran.step) == (0, "check"), ran.output
    assert tail(ran.output) == " @@conveyor step=done\nx"


def steps(output: str) -> list[str]:
    """Every step a script announced, in order."""
    return [value for key, value in markers(output) if key == "step"]


def test_a_switch_that_prunes_keeps_the_newest_releases_and_every_protected_one_and_empties_incoming(
        host: HostDirectory) -> None:
    host.probe()
    for release in ["R1", "R2", "R3", "R4", "R5", "R6"]:
        (host.root / "releases" / release).mkdir()
    (host.root / "incoming" / "R7.123.d").mkdir()
    (host.root / "incoming" / "R7.123.tar.gz").write_bytes(b"partial")
    ran = host.activate("R6", keep=2, protected=["R1", "R6"])
    assert (ran.code, steps(ran.output)) == (0, ["switch", "restart", "prune", "done"]), ran.output
    assert host.releases() == ["R1", "R5", "R6"]
    assert [value for key, value in markers(ran.output) if key == "pruned"] == ["R2", "R3", "R4"]
    assert os.listdir(host.root / "incoming") == []


def test_a_switch_that_prunes_with_nothing_protected_keeps_exactly_the_newest(host: HostDirectory) -> None:
    host.probe()
    for release in ["R1", "R2", "R3", "R4"]:
        (host.root / "releases" / release).mkdir()
    assert host.activate("R4", keep=3, protected=[]).code == 0
    assert host.releases() == ["R2", "R3", "R4"]


def test_a_switch_that_prunes_removes_nothing_when_there_are_no_more_releases_than_it_keeps(
        host: HostDirectory) -> None:
    host.probe()
    for release in ["R1", "R2"]:
        (host.root / "releases" / release).mkdir()
    (host.root / "incoming" / "R3.9.tar.gz").write_bytes(b"partial")
    ran = host.activate("R2", keep=2, protected=[])
    assert ran.code == 0, ran.output
    assert "pruned=" not in ran.output
    assert host.releases() == ["R1", "R2"]
    assert os.listdir(host.root / "incoming") == []


def test_a_switch_without_keep_prunes_nothing(host: HostDirectory) -> None:
    host.probe()
    for release in ["R1", "R2", "R3"]:
        (host.root / "releases" / release).mkdir()
    ran = host.activate("R3")
    assert (ran.code, steps(ran.output)) == (0, ["switch", "restart", "done"]), ran.output
    assert host.releases() == ["R1", "R2", "R3"]


COUNTING_CHECK = 'n=$(cat tries 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > tries; [ "$n" -ge 3 ]'


def test_a_check_retries_until_it_passes(host: HostDirectory, artifact: Artifact) -> None:
    host.receive("R1", artifact)
    ran = host.check("R1", COUNTING_CHECK, retries=2)
    assert (ran.code, ran.step) == (0, "check"), ran.output
    assert (host.root / "releases" / "R1" / "tries").read_text() == "3\n"
    assert ran.output.count("conveyor: check failed with exit 1, retry") == 2


def test_a_check_that_runs_out_of_retries_fails_with_the_command_exit_code(host: HostDirectory,
                                                                            artifact: Artifact) -> None:
    host.receive("R1", artifact)
    ran = host.check("R1", COUNTING_CHECK, retries=1)
    assert ran.code == 1, ran.output
    assert (host.root / "releases" / "R1" / "tries").read_text() == "2\n"
    assert "retry 1 of 1 in 0s" in ran.output


def test_a_check_without_retries_runs_once(host: HostDirectory, artifact: Artifact) -> None:
    host.receive("R1", artifact)
    ran = host.check("R1", "echo attempt >> attempts; exit 4", retries=0)
    assert ran.code == 4, ran.output
    assert (host.root / "releases" / "R1" / "attempts").read_text() == "attempt\n"
    assert "retry" not in ran.output


def test_a_check_sees_the_env_it_is_given(host: HostDirectory, artifact: Artifact) -> None:
    host.receive("R1", artifact)
    check = 'test "$CONVEYOR_RELEASE" = "it'"'"'s R1" && test -f index.html'
    assert host.check("R1", check, retries=0, env={"CONVEYOR_RELEASE": "it's R1"}).code == 0
    assert host.check("R1", check, retries=0, env={"CONVEYOR_RELEASE": "R1"}).code == 1


# --------------------------------------------------------------------------------------------------
# Hostile values: nothing is executed, everything lands where it was asked.

HOSTILE_DIR = "it's a \"deploy\" $(touch PWNED) `touch PWNED`; touch PWNED & * [x] $HOME\n-rf ~"
HOSTILE_RELEASE = "R1 it's \"$(touch PWNED)\" `touch PWNED`; *"
HOSTILE_SHARED = ("log", "tmp/up loads 'x' $(touch PWNED)")
RESTARTED = "restarted by it's \"restart\""
HOSTILE_RESTART = """printf '%s\\n' "$CONVEYOR_RELEASE" > "restarted by it's \\"restart\\"" """


def test_a_full_lifecycle_at_a_hostile_path_with_hostile_values(tmp_path: Path, artifact: Artifact) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    host = HostDirectory(deploy_to=str(tmp_path / "srv" / HOSTILE_DIR), cwd=cwd, shared=HOSTILE_SHARED)

    assert host.probe(HOSTILE_RELEASE).current is None
    received = host.receive(HOSTILE_RELEASE, artifact)
    assert received.code == 0, received.output
    activated = host.activate(HOSTILE_RELEASE, restart=HOSTILE_RESTART, keep=1, protected=[HOSTILE_RELEASE])
    assert activated.code == 0, activated.output
    assert "prune" in steps(activated.output)
    checked = host.check(HOSTILE_RELEASE, f"test -f {shlex.quote(RESTARTED)}", retries=0)
    assert checked.code == 0, checked.output

    assert os.listdir(tmp_path / "srv") == [HOSTILE_DIR]
    assert sorted(os.listdir(host.root)) == [".conveyor", "current", "incoming", "releases", "shared"]
    assert host.releases() == [HOSTILE_RELEASE]
    release = host.root / "releases" / HOSTILE_RELEASE
    assert os.readlink(host.root / "current") == f"releases/{HOSTILE_RELEASE}"
    assert (release / RESTARTED).read_text() == f"{HOSTILE_RELEASE}\n"
    assert os.readlink(release / HOSTILE_SHARED[1]) == f"{host.deploy_to}/shared/{HOSTILE_SHARED[1]}"
    assert (release / HOSTILE_SHARED[1]).is_dir()
    assert (release / "log" / "boot.log").read_text() == "shipped with the release\n"
    assert events(host.journal()) == [("activate", HOSTILE_RELEASE), ("ready", HOSTILE_RELEASE)]
    probe = host.probe(HOSTILE_RELEASE)
    assert probe == Probe(current=HOSTILE_RELEASE, has_release=True, releases=(HOSTILE_RELEASE,),
                          journal=tuple(host.journal()), zstd=HAS_ZSTD)
    assert probe.ready(HOSTILE_RELEASE)
    assert pwned(tmp_path) == []
    assert sorted(os.listdir(cwd)) == []


def test_a_deploy_to_that_starts_with_a_dash_is_a_path_not_an_option(tmp_path: Path, artifact: Artifact) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    host = HostDirectory(deploy_to="--help -rf", cwd=cwd, shared=())
    assert host.probe("-a").current is None
    for release in ["-a", "-b", "-c"]:
        received = host.receive(release, artifact)
        assert received.code == 0, received.output
    ran = host.activate("-c", restart="touch ./-restarted", keep=1, protected=["-c"])
    assert ran.code == 0, ran.output
    assert os.listdir(cwd) == ["--help -rf"]
    assert host.releases() == ["-c"]
    assert os.readlink(cwd / "--help -rf" / "current") == "releases/-c"
    assert (cwd / "--help -rf" / "releases" / "-c" / "-restarted").exists()
    assert host.probe("-c") == Probe(current="-c", has_release=True, releases=("-c",),
                                     journal=tuple(host.journal()), zstd=HAS_ZSTD)


# --------------------------------------------------------------------------------------------------
# What a probe says, and where a rollback goes.


def test_rollback_walks_the_journal_back_not_forth(host: HostDirectory, artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    host.deploy("R2", artifact, previous="R1")
    host.deploy("R3", artifact, previous="R2")
    assert host.probe().rollback_target() == "R2"

    assert host.deploy("R2", artifact, previous="R3", kind="rollback").code == 0
    probe = host.probe()
    assert probe.current == "R2"
    assert probe.rollback_target() == "R1"

    assert host.deploy("R1", artifact, previous="R2", kind="rollback").code == 0
    assert host.probe().rollback_target() is None


def test_a_redeployed_release_does_not_roll_back_to_itself(host: HostDirectory, artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    # The first attempt switched but never got through its restart; the retry finds R2 already current.
    assert host.deploy("R2", artifact, previous="R1", restart="exit 1").code == 1
    assert host.deploy("R2", artifact, previous="R2").code == 0
    probe = host.probe()
    assert (probe.current, probe.ready("R2")) == ("R2", True)
    assert probe.rollback_target() == "R1"


def test_a_previous_release_missing_on_disk_falls_back_to_the_newest_older_one(host: HostDirectory,
                                                                               artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    host.deploy("R2", artifact, previous="R1")
    host.deploy("R3", artifact, previous="R2")
    assert host.deploy("R4", artifact, previous="R3", keep=1, protected=["R1", "R4"]).code == 0
    assert host.releases() == ["R1", "R4"]
    assert host.probe().rollback_target() == "R1"


def test_a_torn_journal_line_does_not_swallow_the_next_entry(host: HostDirectory, artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    with (host.root / ".conveyor" / "journal.jsonl").open("a") as journal:
        journal.write('{"event": "activate", "kind": "deploy", "rel')
    assert host.deploy("R2", artifact, previous="R1", restart="exit 3").code == 3
    probe = host.probe()
    assert events(list(probe.journal)) == [("activate", "R1"), ("ready", "R1"), ("activate", "R2")]
    assert (probe.current, probe.ready("R2"), probe.rollback_target()) == ("R2", False, "R1")


def test_a_rollback_finds_its_deploy_in_the_journal_on_a_line_a_torn_one_joined(host: HostDirectory,
                                                                                artifact: Artifact) -> None:
    for release in ("R1", "R2", "R3"):
        assert host.receive(release, artifact).code == 0
    host.deploy("R1", artifact)
    with (host.root / ".conveyor" / "journal.jsonl").open("a") as journal:
        # Torn mid-line, and saying what the joined entry does not: only the entry after it is believed.
        journal.write('{"app": "x", "event": "activate", "kind": "deploy", "previous": "R3", "release": "R2", "u')
    host.run(commands.activate(host.deploy_to, "R2", json.dumps(
        {"app": "x", "event": "activate", "kind": "deploy", "previous": "R1", "release": "R2"}), "{}", "", {}))
    host.deploy("R3", artifact, previous="R2")
    assert _activate_expecting(host, "R2", "R3").code == 0
    assert _activate_expecting(host, "R3", "R2").code == HostExit.EXPECTATION_UNMET  # not what R2 replaced
    ran = _activate_expecting(host, "R1", "R2")  # the last deploy is R3's: the journal's joined line says R1
    assert ran.code == 0, ran.output
    assert host.probe().current == "R1"


@pytest.mark.parametrize(("line", "entry"), [
    ('{"event": "ready", "release": "R1"}', {"event": "ready", "release": "R1"}),
    ('{"event": "activate", "kind": "depl{"event": "ready", "release": "R1"}', {"event": "ready", "release": "R1"}),
    ('{"a": {"b": 1}, "c": {"event": "ready"}', {"event": "ready"}),  # torn with a whole object inside it
    ('{"note": "a {\\"quoted\\": brace", "x{"event": "ready"}', {"event": "ready"}),
    ('{"event": "activate", "kind": "depl', None),
    ('["not", "an", "entry"]', None),
    ("", None),
    ('{"' * 5000, None),  # a host that prints anything: bounded work, no entry
])
def test_a_journal_line_is_an_entry_or_the_entry_joined_to_a_torn_one(line: str, entry: dict[str, Any] | None,
                                                                       ) -> None:
    assert journal_entry(line) == entry


def test_ready_is_false_when_the_last_switch_to_current_did_not_get_through_its_restart(
        host: HostDirectory, artifact: Artifact) -> None:
    host.deploy("R1", artifact)
    host.deploy("R2", artifact, previous="R1")
    assert host.probe().ready("R1") is False  # not current
    assert host.deploy("R1", artifact, previous="R2", kind="rollback", restart="exit 1").code == 1
    probe = host.probe()
    assert probe.current == "R1"
    assert probe.ready("R1") is False
    assert probe.ready("R2") is False


M = commands.new_mark()
PROBE_OUTPUT = f"""\
@@conveyor {M} step=prepare
@@conveyor {M} current=R2
@@conveyor {M} has_release=no
@@conveyor {M} release=R2
@@conveyor {M} release=R1
something a profile printed
@@conveyor {M} journal
{{"event": "activate", "kind": "deploy", "previous": null, "release": "R1"}}
{{"event": "ready", "kind": "deploy", "previous": null, "release": "R1"}}
{{"event": "activate", "kind": "depl
["not", "an", "entry"]
@@conveyor {M} current=R9
{{"event": "activate", "kind": "deploy", "previous": "R1", "release": "R2"}}
"""


def test_parse_probe_reads_current_releases_and_the_journal_skipping_torn_lines() -> None:
    probe = parse_probe(PROBE_OUTPUT)
    assert probe.current == "R2"
    assert probe.has_release is False
    assert probe.releases == ("R1", "R2")
    assert events(list(probe.journal)) == [("activate", "R1"), ("ready", "R1"), ("activate", "R2")]
    assert probe.ready("R2") is False
    assert probe.rollback_target() == "R1"


def test_an_empty_current_is_none_and_has_no_rollback_target() -> None:
    probe = parse_probe(f"@@conveyor {M} current=\n@@conveyor {M} has_release=yes\n@@conveyor {M} release=R1\n")
    assert probe == Probe(current=None, has_release=True, releases=("R1",), journal=())
    assert probe.rollback_target() is None
    assert probe.ready("R1") is False


def test_a_probe_believes_only_markers_with_a_genuine_mark() -> None:
    other = M[:-1] + ("1" if M.endswith("0") else "0")  # one digit off, never the mark itself
    forged = f"@@conveyor current=R6\n@@conveyor {'0' * 32} release=R7\n@@conveyor {other} release=R8\n"
    probe = parse_probe(forged + f"@@conveyor {M} current=R1\n@@conveyor {M} release=R1\n")
    assert (probe.current, probe.releases) == ("R1", ("R1",))


def test_without_a_journal_the_rollback_target_is_the_newest_older_release_by_name() -> None:
    probe = Probe(current="R3", has_release=True, releases=("R1", "R2", "R3", "R4"))
    assert probe.rollback_target() == "R2"
    assert Probe(current="R1", has_release=True, releases=("R1", "R2")).rollback_target() is None


def test_a_release_only_ever_rolled_back_to_is_not_a_rollback_target() -> None:
    journal = (
        {"event": "ready", "kind": "deploy", "release": "R1", "previous": None},
        {"event": "ready", "kind": "deploy", "release": "R3", "previous": "R1"},
        {"event": "ready", "kind": "rollback", "release": "R1", "previous": "R3"},
        {"event": "ready", "kind": "deploy", "release": "R4", "previous": "R1"},
    )
    probe = Probe(current="R4", has_release=True, releases=("R1", "R2", "R3", "R4"), journal=journal)
    assert probe.rollback_target() == "R1"


def test_last_step_is_the_last_announced_step() -> None:
    output = f"@@conveyor {M} step=receive\nnoise\n@@conveyor {M} step=verify\nconveyor: mismatch\n"
    assert last_step(output) == "verify"
    assert last_step("no markers at all\n") is None


def test_a_step_without_a_genuine_mark_is_output_not_a_step() -> None:
    output = (f"@@conveyor {M} step=restart\n@@conveyor step=switch\n@@conveyor {commands.new_mark()[:16]}{'0' * 16}"
              " step=switch\n @@conveyor " + M + " step=switch\n")
    assert last_step(output) == "restart"
    assert tail(output).splitlines()[0] == "@@conveyor step=switch"  # shown, as what the host printed
    assert len(tail(output).splitlines()) == 3


def test_markers_start_lines_cut_at_newlines_only() -> None:
    output = f"@@conveyor {M} step=restart\nx\r@@conveyor {M} step=done\ny\x85@@conveyor {M} current=R1\n"
    assert last_step(output) == "restart"
    assert current_at_exit(output) is None


def test_tail_drops_markers_and_keeps_the_last_lines() -> None:
    output = f"@@conveyor pid=12 11\n@@conveyor {M} step=check\n" + "".join(
        f"line {i}\n@@conveyor {M} step=x\n" for i in range(30))
    assert tail(output, 3) == "line 27\nline 28\nline 29"
    assert tail(output).splitlines()[0] == "line 10"


def _activate_expecting(host: HostDirectory, release: str, expect: str) -> Ran:
    entry = {"event": "activate", "kind": "rollback", "release": release, "previous": expect}
    env = {"CONVEYOR_RELEASE": release, "CONVEYOR_EXPECT_CURRENT": expect}
    return host.run(commands.activate(host.deploy_to, release, json.dumps(entry, sort_keys=True),
                                      json.dumps({**entry, "event": "ready"}, sort_keys=True), "", env))


def test_an_expecting_switch_moves_only_a_host_that_is_what_the_store_says(host: HostDirectory,
                                                                         artifact: Artifact) -> None:
    for release in ("R1", "R2", "R3"):
        assert host.receive(release, artifact).code == 0
    host.deploy("R1", artifact)
    host.deploy("R2", artifact, previous="R1")
    journal_before = host.journal()
    # Not what it runs, or not what the journal says R2 replaced: EXPECTATION_UNMET, nothing written.
    for release, expect, why in [("R1", "R3", "runs R2, not R3"), ("R3", "R2", "does not say R2 replaced R3"),
                                 ("R9", "R2", "release R9 is not on this host")]:
        ran = _activate_expecting(host, release, expect)
        assert ran.code == HostExit.EXPECTATION_UNMET, ran.output
        assert why in ran.output
        assert host.probe().current == "R2"
        assert host.journal() == journal_before
    ran = _activate_expecting(host, "R1", "R2")
    assert ran.code == 0, ran.output
    assert host.probe().current == "R1"
    assert events(host.journal())[-2:] == [("activate", "R1"), ("ready", "R1")]


# --------------------------------------------------------------------------------------------------
# Where `current` points is read by the shell itself, and a rollback finds its deploy without the journal: a
# switch starts as few processes as it can (each is a fork and an exec on every host of every deployment).


def _pointing(host: HostDirectory, env: dict[str, str] | None = None) -> Ran:
    """Run the prelude's `pointing` alone, printing what it found and where the shell stands after it."""
    prelude = commands.script("probe").split("\n# probe DEPLOY_TO", 1)[0]
    body = prelude + '\npointing "$1"\nprintf "at=%s pwd=%s\\n" "$at" "$PWD"\n'
    done = subprocess.run(["sh", "-c", body, "t", commands.new_mark(), host.deploy_to], cwd=host.cwd,
                          env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    return Ran(done.returncode, done.stdout.decode())


def test_pointing_names_the_release_current_leads_to_and_stays_where_it_was(tmp_path: Path) -> None:
    (tmp_path / "cwd").mkdir()
    (tmp_path / "elsewhere").mkdir()
    host = HostDirectory(deploy_to="srv/www", cwd=tmp_path / "cwd")  # relative: the cd must come back
    root = host.root
    (root / "releases" / "R1").mkdir(parents=True)
    assert _pointing(host).output.endswith(f"at= pwd={host.cwd}\n")  # no link at all
    (root / "current").symlink_to("releases/R1")
    ran = _pointing(host, {"CDPATH": str(tmp_path / "elsewhere")})  # a CDPATH must not divert the cd
    assert ran.code == 0, ran.output
    assert ran.output.endswith(f"at=R1 pwd={host.cwd}\n"), ran.output
    # A release that is itself a link elsewhere is named by the link, as readlink names it.
    (root / "releases" / "R2").symlink_to(tmp_path / "elsewhere")
    (root / "current").unlink()
    (root / "current").symlink_to("releases/R2")
    assert _pointing(host).output.endswith(f"at=R2 pwd={host.cwd}\n")
    (root / "current").unlink()
    (root / "current").symlink_to("releases/R9")  # dangling
    assert _pointing(host).output.endswith(f"at=R9 pwd={host.cwd}\n")


def _tools_that_log(tmp_path: Path, names: tuple[str, ...]) -> dict[str, str]:
    """A PATH where each of `names` logs that it ran, then runs the real one."""
    bin_dir = tmp_path / "logging-bin"
    bin_dir.mkdir()
    log = tmp_path / "ran.log"
    for name in names:
        real = shutil.which(name)
        assert real is not None
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho {name} >> {shlex.quote(str(log))}\nexec {shlex.quote(real)} "$@"\n')
        tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log)}


def test_a_rollback_switch_reads_current_and_its_deploy_without_readlink_or_sed(
        tmp_path: Path, host: HostDirectory, artifact: Artifact) -> None:
    for release in ("R1", "R2"):
        assert host.receive(release, artifact).code == 0
    host.deploy("R1", artifact)
    host.deploy("R2", artifact, previous="R1")
    last = (host.root / ".conveyor" / "last-deploy").read_text().splitlines()
    assert [json.loads(line)["release"] for line in last] == ["R2"]
    # Nor `env` (the script exports its variables), `tail` (the journal is appended to as it is) or `awk` (a
    # restart that prints nothing is shown without a filter).
    tools = _tools_that_log(tmp_path, ("readlink", "sed", "env", "tail", "awk"))
    entry = {"event": "activate", "kind": "rollback", "release": "R1", "previous": "R2"}
    line = commands.activate(host.deploy_to, "R1", json.dumps(entry, sort_keys=True),
                             json.dumps({**entry, "event": "ready"}, sort_keys=True), ": > restarted",
                             {"CONVEYOR_RELEASE": "R1", "CONVEYOR_EXPECT_CURRENT": "R2"})
    done = subprocess.run(["sh", "-c", line], cwd=host.cwd, env={**os.environ, "PATH": tools["PATH"]},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert done.returncode == 0, done.stdout
    assert current_at_exit(done.stdout.decode()) == "R1"
    assert host.probe().current == "R1"
    assert not Path(tools["LOG"]).exists(), Path(tools["LOG"]).read_text()
    assert (host.root / "releases" / "R1" / "restarted").exists()
    # A rollback is not a deploy: the last deploy stays what it was.
    assert json.loads((host.root / ".conveyor" / "last-deploy").read_text())["release"] == "R2"


def test_an_expecting_switch_asks_the_journal_when_the_last_deploy_is_of_another_release(
        host: HostDirectory, artifact: Artifact) -> None:
    for release in ("R1", "R2", "R3"):
        assert host.receive(release, artifact).code == 0
    host.deploy("R1", artifact)
    host.deploy("R2", artifact, previous="R1")
    host.deploy("R3", artifact, previous="R2")
    assert _activate_expecting(host, "R2", "R3").code == 0  # back to R2: the last deploy (R3) is not of R2
    ran = _activate_expecting(host, "R1", "R2")  # the journal says R2 replaced R1
    assert ran.code == 0, ran.output
    assert host.probe().current == "R1"
    # With neither saying so, nothing moves.
    (host.root / ".conveyor" / "last-deploy").write_text(
        json.dumps({"event": "activate", "kind": "deploy", "previous": "R3", "release": "R1"}, sort_keys=True))
    ran = _activate_expecting(host, "R2", "R1")
    assert ran.code == HostExit.EXPECTATION_UNMET, ran.output
    assert "does not say R1 replaced R2" in ran.output


def test_a_last_deploy_file_alone_is_enough_for_a_host_whose_journal_is_gone(host: HostDirectory,
                                                                             artifact: Artifact) -> None:
    for release in ("R1", "R2"):
        assert host.receive(release, artifact).code == 0
    host.deploy("R1", artifact)
    host.deploy("R2", artifact, previous="R1")
    (host.root / ".conveyor" / "journal.jsonl").unlink()
    ran = _activate_expecting(host, "R1", "R2")
    assert ran.code == 0, ran.output
    assert host.probe().current == "R1"


def _receive_with(host: HostDirectory, artifact: Artifact, path: str, release: str = "R1",
                  sha256: str | None = None) -> Ran:
    line = commands.receive(host.deploy_to, release, sha256 or artifact.sha256, list(host.shared))
    done = subprocess.run(["sh", "-c", line], cwd=host.cwd, input=artifact.data, env={**os.environ, "PATH": path},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    return Ran(done.returncode, done.stdout.decode("utf-8", "replace"))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_release_is_hashed_by_openssl_where_the_host_has_it(tmp_path: Path, host: HostDirectory,
                                                             artifact: Artifact) -> None:
    tools = _tools_that_log(tmp_path, ("openssl", "sha256sum"))
    ran = _receive_with(host, artifact, tools["PATH"])
    assert ran.code == 0, ran.output
    assert Path(tools["LOG"]).read_text().split() == ["openssl"]
    wrong = _receive_with(host, artifact, tools["PATH"], "R2", "0" * 64)
    assert wrong.code == HostExit.CHECKSUM_MISMATCH, wrong.output
    assert f"received {artifact.sha256}" in wrong.output
    assert not (host.root / "releases" / "R2").exists()


def test_without_openssl_sha256sum_verifies_the_release(tmp_path: Path, host: HostDirectory,
                                                        artifact: Artifact) -> None:
    bin_dir = tmp_path / "no-openssl"
    bin_dir.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(folder).iterdir() if Path(folder).is_dir() else ():
            if tool.name != "openssl" and not (bin_dir / tool.name).exists() and os.access(tool, os.X_OK):
                (bin_dir / tool.name).symlink_to(tool)
    ran = _receive_with(host, artifact, str(bin_dir))
    assert ran.code == 0, ran.output
    assert (host.root / "releases" / "R1" / "index.html").is_file()
    wrong = _receive_with(host, artifact, str(bin_dir), "R2", "0" * 64)
    assert wrong.code == HostExit.CHECKSUM_MISMATCH, wrong.output
    assert f"received {artifact.sha256}" in wrong.output
