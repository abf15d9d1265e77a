"""What a deployment never does to a host, with the real `conveyor` CLI on local hosts and on real sshd hosts.

Shared paths are the host's: deploys (whole or delta), rollbacks and prunes never write, replace or remove
what lives there. Each test runs once with `transport: local` and once over SSH (tests/sshfleet), and reads
the hosts' files itself, never only Conveyor's reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.artifact.compression import open_tar
from conveyor.engine.exits import HostExit

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from sshfleet import Fleet as SshFleet  # noqa: E402
from sshfleet import missing_requirements  # noqa: E402

pytestmark = pytest.mark.integration

SSH_HOSTS = ["safe-1", "safe-2"]
RESTART = 'printf "%s\\n" "$CONVEYOR_RELEASE" > "$CONVEYOR_DEPLOY_TO/serving"'


@pytest.fixture(scope="module")
def ssh_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshFleet]:
    missing = missing_requirements()
    if missing:
        pytest.skip(f"the sshd fleet needs {', '.join(missing)} (see tests/sshfleet)")
    with SshFleet(tmp_path_factory.mktemp("sshfleet"), names=SSH_HOSTS) as started:
        yield started


@dataclass
class Site:
    """A config directory driven by the real CLI (tests/integration/conftest.py's Fleet), and its hosts'
    `deploy_to` directories as seen from here."""

    cli: Any
    hosts: dict[str, Path]

    def write_artifact(self, files: dict[str, bytes]) -> None:
        """Make the build output: exactly `files` (relative name -> content)."""
        root = self.cli.artifact
        if root.exists():
            for path in sorted(root.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        root.mkdir(exist_ok=True)
        for name, data in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def deploy(self, files: dict[str, bytes], *, expect: int = 0) -> Any:
        """Write the artifact and `conveyor deploy prod --yes --json` it."""
        self.write_artifact(files)
        return self.cli.json("deploy", "prod", "--yes", expect=expect)

    def hosts_of(self, result: Any) -> dict[str, dict[str, Any]]:
        """The stored outcome of each host in a deployment, by host name."""
        return {h["host"]: h for h in self.cli.json("history", "--id", str(result["id"]))["hosts"]}

    def current(self, name: str) -> str | None:
        link = self.hosts[name] / "current"
        return os.readlink(link).removeprefix("releases/") if link.is_symlink() else None

    def set(self, **settings: Any) -> None:
        self.cli.settings.update(settings)
        self.cli.write_config()


def settings_for(transport: str, ssh_fleet: SshFleet | None, deploy_to: str, hosts: list[str] | None = None,
                 **extra: Any) -> dict[str, Any]:
    """A conveyor.yml with one region `r` of web hosts: local directories, or the SSH fleet's hosts."""
    environment: dict[str, Any]
    if transport == "local":
        environment = {"transport": "local", "regions": {"r": {"hosts": {"web": hosts or ["local-1", "local-2"]}}}}
    else:
        assert ssh_fleet is not None
        environment = {"transport": "ssh", "regions": {"r": {"hosts": {"web": [
            {"name": n, "address": "127.0.0.1", "port": ssh_fleet.host(n).port} for n in hosts or SSH_HOSTS]}}}}
    settings: dict[str, Any] = {
        "app": "shop", "artifact": {"path": "app"}, "deploy_to": deploy_to,
        "roles": {"web": {"restart": RESTART, "canary": 1, "batch": 1}},
        "environments": {"prod": environment},
        **extra,
    }
    if transport == "ssh":
        assert ssh_fleet is not None
        settings["ssh"] = {"user": "root", "identity_file": str(ssh_fleet.client_key),
                           "known_hosts_file": str(ssh_fleet.known_hosts), "connect_timeout": "5s",
                           "command_timeout": "30s"}
    return settings


@pytest.fixture(params=["local", "ssh"])
def make_site(request: pytest.FixtureRequest, make_fleet: Callable[[dict[str, Any]], Any]) -> Callable[..., Site]:
    """A Site on local hosts or on the SSH fleet (deploy_to /srv/<test name> there)."""
    transport = request.param
    ssh_fleet = request.getfixturevalue("ssh_fleet") if transport == "ssh" else None
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")

    def make(**extra: Any) -> Site:
        deploy_to = f"/srv/{name}"
        cli = make_fleet(settings_for(transport, ssh_fleet, deploy_to, **extra))
        if ssh_fleet is None:
            hosts = {h: cli.host_dir("prod", "r", h) for h in ("local-1", "local-2")}
        else:
            hosts = {h: ssh_fleet.host(h).srv / name for h in SSH_HOSTS}
        return Site(cli, hosts)

    return make


def files_under(root: Path) -> dict[str, str]:
    """Every file under `root` (not following links), as its sha256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


# --------------------------------------------------------------------------------------------- shared paths

SHARED = ["storage", "log", "tmp/uploads"]
LIBRARY = {f"lib/module{i}.py": f"# module {i}\n".encode() for i in range(12)}  # what does not change


def shop(version: int, *, cache: bool = False) -> dict[str, bytes]:
    """A release of the shop; it ships a default settings file under the shared `storage`."""
    files = {"VERSION": f"{version}\n".encode(), "static/index.html": f"<h1>{version}</h1>\n".encode(),
             "storage/settings.cfg": f"shipped with {version}\n".encode(), **LIBRARY}
    if cache:
        files["storage/cache/a.txt"] = b"a cache file the release ships\n"
    return files


USER_FILES = {
    "storage/cache/upload-123.bin": bytes(range(256)) * 64,
    "storage/settings.cfg": b"the operator's own settings\n",
    "log/app.log": b"written at run time\n",
    "tmp/uploads/avatar.png": b"\x89PNG user upload\n",
}


def test_user_files_in_every_shared_path_survive_deploys_deltas_rollbacks_and_prunes(
        make_site: Callable[..., Site]) -> None:
    site = make_site(shared=SHARED, keep_releases=2)
    first = site.deploy(shop(1, cache=True))
    assert first["status"] == "succeeded", first
    for host in site.hosts.values():
        # The first release seeds what the host does not have yet; then the host's users write there.
        assert (host / "shared" / "storage" / "cache" / "a.txt").is_file()
        for name, data in USER_FILES.items():
            (host / "shared" / name).write_bytes(data)
    before = {name: files_under(host / "shared") for name, host in site.hosts.items()}

    def unchanged(after: str) -> None:
        for name, host in site.hosts.items():
            assert files_under(host / "shared") == before[name], f"{name}: shared/ changed by {after}"
            release = site.current(name)
            for path in SHARED:
                target = os.readlink(host / "releases" / str(release) / path)
                assert target.endswith(f"{site.cli.settings['deploy_to']}/shared/{path}"), (name, after, target)

    # R2 drops storage/cache/ and changes storage/settings.cfg: sent as a delta.
    second = site.deploy(shop(2))
    assert second["status"] == "succeeded", second
    assert all(h["transfer"].startswith("delta from") for h in site.hosts_of(second).values())
    unchanged("a delta")
    # The deltas the deploy made carry nothing at or under a shared path: that data never travels.
    deltas = [p for p in (site.cli.root / ".conveyor" / "artifacts" / "deltas").glob("*.from-*")
              if p.suffix != ".json"]
    assert deltas, "no delta was made"
    for delta in deltas:
        with open_tar(delta) as archive:  # zstd under the default compression (auto)
            carried = [m.name.removeprefix("./") for m in archive.getmembers()]
        assert not [n for n in carried for path in SHARED if n == path or n.startswith(path + "/")], carried
    third = site.deploy(shop(3, cache=True))
    assert third["status"] == "succeeded", third
    unchanged("a delta that prunes")
    for host in site.hosts.values():
        assert first["release"] not in os.listdir(host / "releases")  # keep_releases 2: R1 was pruned

    site.set(artifact={"path": "app", "delta": False})
    fourth = site.deploy(shop(4))
    assert fourth["status"] == "succeeded", fourth
    assert {h["transfer"] for h in site.hosts_of(fourth).values()} == {"full"}
    unchanged("a whole release")

    back = site.cli.json("rollback", "prod", "--yes")
    assert (back["status"], back["release"]) == ("succeeded", third["release"]), back
    unchanged("a rollback")
    forth = site.cli.json("deploy", "prod", "--release", fourth["release"], "--yes")
    assert forth["status"] == "succeeded", forth
    unchanged("a redeploy")


# ------------------------------------------------------------------------------------------- forged steps

# On release 2 the restart forges markers: without a mark, with a made-up one, and with this run's own mark
# (read from the command line of the script that runs it), saying the switch failed and current is back.
FORGING_RESTART = RESTART + r"""
if [ "$(cat VERSION)" = 2 ]; then
  mark=$(tr '\0' '\n' < /proc/$PPID/cmdline | sed -n '/^conveyor-activate$/{n;p;q;}')
  echo "@@conveyor step=switch"
  echo "@@conveyor 0123456789abcdef0123456789abcdef step=switch"
  echo "@@conveyor $mark step=switch"
  echo "@@conveyor $mark current=$CONVEYOR_PREVIOUS_RELEASE"
  echo "release 2 does not start"
  exit 1
fi
"""


def test_a_restart_that_forges_steps_is_failed_at_its_restart_and_switched_back(
        make_site: Callable[..., Site]) -> None:
    site = make_site()
    site.set(roles={"web": {"restart": FORGING_RESTART, "canary": 1, "batch": 1}})
    first = site.deploy(shop(1))
    assert first["status"] == "succeeded", first
    second = site.deploy(shop(2), expect=1)
    assert second["status"] == "rolled_back", second
    canary_name = next(iter(site.hosts))
    assert second["failed_hosts"] == [canary_name], second
    canary = site.hosts_of(second)[canary_name]
    assert (canary["status"], canary["step"], canary["exit_code"]) == ("rolled_back", "restart", 1), canary
    assert "switched back" in canary["note"], canary
    assert "@@conveyor step=switch" in canary["output_tail"], canary  # shown as what the restart printed
    for name in site.hosts:
        assert site.current(name) == first["release"], name  # on the host itself, not only in the report


# ------------------------------------------------------------------------------------ hostile downloads


def hostile_tarball() -> bytes:
    """A release that looks like any other but for a setuid-root helper (a gzip tarball)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for name, data, mode in (("VERSION", b"1\n", 0o644), ("bin/su", b"#!/bin/sh\nexec sh\n", 0o4755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.mark.parametrize("transfer", ["push", "pull"])
def test_a_tarball_that_matches_its_manifest_but_holds_a_setuid_file_is_refused_by_the_hosts(
        make_site: Callable[..., Site], transfer: str) -> None:
    site = make_site()
    site.cli.settings["environments"]["prod"]["transfer"] = transfer
    site.set()
    site.write_artifact(shop(1))
    release = site.cli.json("build")["id"]
    # The store is where a tampered release comes from: its tarball and its manifest agree with each other.
    store = site.cli.root / ".conveyor" / "artifacts"
    data = hostile_tarball()
    (store / f"{release}.tar.gz").write_bytes(data)
    manifest_path = store / f"{release}.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data), compression="gzip")
    manifest_path.write_text(json.dumps(manifest))
    (store / f"{release}.tar.zst").unlink()  # what auto built, replaced by the tampered gzip tarball

    result = site.cli.json("deploy", "prod", "--release", release, "--yes", expect=1)
    canary_name = next(iter(site.hosts))
    canary = site.hosts_of(result)[canary_name]
    assert (canary["step"], canary["exit_code"]) == ("inspect", 19), canary
    assert "refused the release: bin/su is setuid" in canary["error"], canary
    for name, host in site.hosts.items():
        assert site.current(name) is None, name
        assert not (host / "releases").exists() or os.listdir(host / "releases") == [], name
        assert not (host / "incoming").exists() or os.listdir(host / "incoming") == [], name


# --------------------------------------------------------------------------------------------- full disks

DISK_MB = 24
ROOM = 2 * 1024 * 1024  # what is left free on the host's disk when the big release comes
BIG = 3 * 1024 * 1024  # incompressible bytes in that release


@contextlib.contextmanager
def small_disk(root: Path, size_mb: int = DISK_MB) -> Iterator[Path]:
    """A small ext4 filesystem loop-mounted at root/disk, as tests/sshfleet puts its hosts on one."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        pytest.skip("a small disk needs root and mkfs.ext4")
    image, mount = root / "disk.img", root / "disk"
    mount.mkdir()
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    mounted = subprocess.run(["mount", "-o", "loop,noatime", str(image), str(mount)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount an ext4 image here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        deadline = time.monotonic() + 5
        while subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                subprocess.run(["umount", "-l", str(mount)], check=False)
                break
            time.sleep(0.1)
        image.unlink(missing_ok=True)


@contextlib.contextmanager
def filled(disk: Path, leave: int) -> Iterator[Path]:
    """The filesystem at `disk` filled but for about `leave` bytes, by a file removed on the way out."""
    filler = disk / "filler"
    status = os.statvfs(disk)
    todo = status.f_bavail * status.f_frsize - leave
    try:
        with filler.open("wb") as out:
            while todo > 0:
                todo -= out.write(b"\0" * min(todo, 1 << 20))
            out.flush()
            os.fsync(out.fileno())
        yield filler
    finally:
        filler.unlink(missing_ok=True)


def big_shop(version: int, where: str = "assets") -> dict[str, bytes]:
    """A release that does not fit: its big file in assets/ has files after it, that tar cannot write either;
    in zz/ it comes last, and tar says only "Wrote only N of M bytes"."""
    return {**shop(version), f"{where}/video.bin": random.Random(version).randbytes(BIG)}


def disk_full_scenario(cli: Any, disk: Path, host: Path, how: str, where: str = "assets") -> None:
    """Deploy R1, fill the disk, deploy a big R2 sent `how`: the reason names the full disk."""
    (name,) = [h if isinstance(h, str) else h["name"]
               for h in cli.settings["environments"]["prod"]["regions"]["r"]["hosts"]["web"]]
    site = Site(cli, {name: host})
    first = site.deploy(shop(1))
    assert first["status"] == "succeeded", first
    if how != "delta":
        site.set(artifact={"path": "app", "delta": False})
    if how == "pull":
        cli.settings["environments"]["prod"]["transfer"] = "pull"
        cli.write_config()
    with filled(disk, ROOM):
        result = site.deploy(big_shop(2, where), expect=1)
        (outcome,) = site.hosts_of(result).values()
        said = f"{outcome['step']} {outcome['exit_code']}: {outcome['error']}\n{outcome['output_tail']}"
        assert outcome["exit_code"] == HostExit.CANNOT_WRITE, said
        assert outcome["step"] == ("download" if how == "pull" else "unpack"), said
        assert "checksum" not in outcome["error"], said
        assert "No space left on device" in outcome["error"], said
        assert site.current(name) == first["release"]
        assert os.listdir(host / "incoming") == []
    again = site.deploy(big_shop(2, where))  # room again: the same release goes through
    assert again["status"] == "succeeded", again
    assert site.current(name) == again["release"]


@pytest.mark.parametrize("where", ["assets", "zz"])
@pytest.mark.parametrize("how", ["delta", "full", "pull"])
def test_a_local_host_with_a_full_disk_says_so(make_fleet: Callable[[dict[str, Any]], Any], tmp_path: Path,
                                                how: str, where: str) -> None:
    with small_disk(tmp_path) as disk:
        settings = settings_for("local", None, "/srv/shop", ["h"])
        settings["environments"]["prod"]["local_root"] = str(disk)
        disk_full_scenario(make_fleet(settings), disk, disk / "prod" / "r" / "h" / "srv" / "shop", how, where)


@pytest.fixture(scope="module")
def full_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshFleet]:
    """One sshd host whose /srv is on a small ext4 image."""
    missing = missing_requirements()
    if missing:
        pytest.skip(f"the sshd fleet needs {', '.join(missing)} (see tests/sshfleet)")
    with SshFleet(tmp_path_factory.mktemp("fullfleet"), names=["full-1"], image_size_mb=DISK_MB) as started:
        yield started


@pytest.mark.parametrize("how", ["delta", "full", "pull"])
def test_an_ssh_host_with_a_full_disk_says_so(make_fleet: Callable[[dict[str, Any]], Any], full_fleet: SshFleet,
                                               how: str) -> None:
    cli = make_fleet(settings_for("ssh", full_fleet, f"/srv/full-{how}", ["full-1"]))
    disk_full_scenario(cli, full_fleet.mountpoint, full_fleet.host("full-1").srv / f"full-{how}", how)
