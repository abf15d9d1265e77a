"""The flags host script, run with the system's `sh` against a directory, as the local transport runs it:
one round trip writes the file atomically, keeps what it replaced outside shared/, and switches back."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from conveyor.engine import commands
from conveyor.engine.flagging import FlagFile, FlagWork, flags_id
from conveyor.engine.probe import last_step, markers


def file_of(text: str) -> FlagFile:
    return FlagFile(text, hashlib.sha256(text.encode()).hexdigest())


class Host:
    def __init__(self, root: Path) -> None:
        self.deploy_to = str(root / "srv" / "www")
        self.path = f"{self.deploy_to}/shared/flags.json"
        self.cwd = root / "cwd"
        self.cwd.mkdir()

    def run(self, mode: str, file: FlagFile | None, on_change: str = "", *, path: str | None = None,
            sha256: str | None = None) -> tuple[int, dict[str, str], str]:
        line = commands.flags(self.deploy_to, path or self.path, file.content if file else "",
                              sha256 or (file.sha256 if file else ""), mode, json.dumps({"event": mode}),
                              on_change, {"CONVEYOR_HOST": "web-1"})
        done = subprocess.run(["sh", "-c", line], cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              check=False)
        output = done.stdout.decode()
        return done.returncode, dict(markers(output)), output

    def read(self) -> str:
        return Path(self.path).read_text(encoding="utf-8")


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_the_command_line_passes_every_value_as_one_quoted_word() -> None:
    line = commands.flags("/srv/www", "/srv/www/shared/flags.json", '{"a": "$(touch x)"}', "ab", "write", "{}",
                          "", {})
    words = shlex.split(line)
    assert words[words.index("conveyor-flags") + 2:] == ["/srv/www", "/srv/www/shared/flags.json",
                                                          '{"a": "$(touch x)"}', "ab", "write", "{}", ""]


def test_a_first_write_creates_the_file_and_remembers_there_was_none(host: Host) -> None:
    code, said, output = host.run("write", file_of('{"flags": {}}\n'))
    assert code == 0, output
    assert host.read() == '{"flags": {}}\n'
    assert said["was"] == ""
    assert said["changed"] == "yes"
    assert Path(host.deploy_to, ".conveyor", "flags.previous.json.absent").exists()


def test_a_second_write_reports_the_previous_files_sha_and_keeps_it_outside_shared(host: Host) -> None:
    first, second = file_of("one\n"), file_of("two\n")
    host.run("write", first)
    code, said, _ = host.run("write", second)
    assert code == 0
    assert said["was"] == first.sha256
    assert host.read() == "two\n"
    assert Path(host.deploy_to, ".conveyor", "flags.previous.json").read_text() == "one\n"
    assert sorted(os.listdir(Path(host.deploy_to, "shared"))) == ["flags.json"]


def test_writing_what_is_already_there_changes_nothing(host: Host) -> None:
    same = file_of("same\n")
    host.run("write", same)
    before = os.stat(host.path).st_ino
    code, said, output = host.run("write", same)
    assert code == 0
    assert said.get("unchanged") == "yes"
    assert "changed" not in said
    assert os.stat(host.path).st_ino == before
    assert last_step(output) == "done"


def test_the_file_is_replaced_by_rename_so_a_reader_never_sees_a_torn_one(host: Host) -> None:
    host.run("write", file_of("one\n"))
    old = os.stat(host.path).st_ino
    host.run("write", file_of("two\n"))
    assert os.stat(host.path).st_ino != old  # a new file renamed over the old, not the old rewritten
    assert [p for p in os.listdir(Path(host.path).parent) if "conveyor" in p] == []


def test_revert_puts_back_the_previous_file(host: Host) -> None:
    host.run("write", file_of("one\n"))
    host.run("write", file_of("two\n"))
    code, said, output = host.run("revert", None)
    assert code == 0, output
    assert host.read() == "one\n"
    assert said["was"] == file_of("two\n").sha256


def test_revert_after_a_first_write_removes_the_file(host: Host) -> None:
    host.run("write", file_of("one\n"))
    code, _, _ = host.run("revert", None)
    assert code == 0
    assert not Path(host.path).exists()


def test_revert_with_nothing_kept_fails_and_changes_nothing(host: Host) -> None:
    code, _, output = host.run("revert", None)
    assert code == 20
    assert "no earlier flags file" in output


def test_a_checksum_that_does_not_match_leaves_the_old_file(host: Host) -> None:
    host.run("write", file_of("one\n"))
    code, said, _ = host.run("write", file_of("two\n"), sha256="0" * 64)
    assert code == 10
    assert host.read() == "one\n"
    assert "changed" not in said


def test_hostile_content_is_written_as_it_is_and_never_run(host: Host) -> None:
    text = "$(touch PWNED) `touch PWNED` ; touch PWNED\n'\"\\n%s\n"
    code, _, _ = host.run("write", file_of(text))
    assert code == 0
    assert host.read() == text
    assert list(Path(host.deploy_to).parent.parent.rglob("PWNED")) == []


def test_on_change_runs_after_a_change_in_the_current_release(host: Host) -> None:
    release = Path(host.deploy_to, "releases", "R1")
    release.mkdir(parents=True)
    os.symlink("releases/R1", Path(host.deploy_to, "current"))
    code, said, output = host.run("write", file_of("x\n"), 'pwd > "$CONVEYOR_HOST.ran"')
    assert code == 0, output
    assert said["release"] == "R1"
    assert (release / "web-1.ran").read_text().strip().endswith("releases/R1")


def test_a_failing_on_change_fails_the_step_with_its_exit_code_after_the_file_changed(host: Host) -> None:
    code, said, output = host.run("write", file_of("x\n"), "exit 7")
    assert code == 7
    assert said["changed"] == "yes"
    assert last_step(output) == "on_change"


def test_on_change_does_not_run_when_nothing_changed(host: Host) -> None:
    host.run("write", file_of("x\n"))
    code, _, _ = host.run("write", file_of("x\n"), "exit 7")
    assert code == 0


def test_a_path_outside_shared_is_created_with_its_directory(host: Host, tmp_path: Path) -> None:
    elsewhere = str(tmp_path / "etc" / "www" / "flags.json")
    code, _, _ = host.run("write", file_of("x\n"), path=elsewhere)
    assert code == 0
    assert Path(elsewhere).read_text() == "x\n"


def test_each_change_is_journaled_beside_the_release_journal(host: Host) -> None:
    host.run("write", file_of("x\n"))
    host.run("revert", None)
    lines = Path(host.deploy_to, ".conveyor", "flags.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["write", "revert"]


def test_flags_ids_are_the_first_twelve_hex_digits() -> None:
    assert flags_id("ab" * 32) == "flags-abababababab"
    assert file_of("x").id == flags_id(hashlib.sha256(b"x").hexdigest())


def test_a_relative_path_on_host_is_under_deploy_to() -> None:
    assert FlagWork({}, "shared/flags.json", {}).path("/srv/www") == "/srv/www/shared/flags.json"
    assert FlagWork({}, "/etc/flags.json", {}).path("/srv/www") == "/etc/flags.json"


def test_a_deploys_switch_carries_the_flags_file_in_the_same_round_trip(host: Host) -> None:
    release = Path(host.deploy_to, "releases", "R1")
    release.mkdir(parents=True)
    doc = file_of('{"flags": {}}\n')
    env = {"CONVEYOR_FLAGS_PATH": "shared/flags.json", "CONVEYOR_FLAGS_CONTENT": doc.content,
           "CONVEYOR_FLAGS_SHA256": doc.sha256}
    line = commands.activate(host.deploy_to, "R1", "{}", "{}", 'env | grep -c CONVEYOR_FLAGS_ > flags-env || :', env)
    done = subprocess.run(["sh", "-c", line], cwd=host.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    assert done.returncode == 0, done.stdout
    assert host.read() == doc.content
    assert dict(markers(done.stdout.decode()))["changed"] == "yes"
    assert (release / "flags-env").read_text().strip() == "0"  # nothing of it reaches the restart


def test_a_switch_without_flags_writes_no_flags_file(host: Host) -> None:
    Path(host.deploy_to, "releases", "R1").mkdir(parents=True)
    done = subprocess.run(["sh", "-c", commands.activate(host.deploy_to, "R1", "{}", "{}", "", {})], cwd=host.cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert done.returncode == 0
    assert not Path(host.path).exists()
