#!/usr/bin/env python3
"""Fan-out benchmark: Conveyor against plain OpenSSH (the floor), rsync, pyinfra and ansible-core.

    python bench/fanout.py --hosts 10 50 --runs 3 --scenarios new small rollback \\
        --tools conveyor floor rsync pyinfra ansible
    python bench/fanout.py --quick --output /tmp/smoke.json         # N=3, 1 run, conveyor + floor, < 60 s
    python bench/fanout.py --render results.json                    # docs/PERFORMANCE.md from a results file

For each N a fleet of N real sshd hosts on 127.0.0.1 (tests/sshfleet) is started, with their /srv on an
ext4 image. For each run, each tool (in an order rotated per run) gets a freshly seeded fleet (two old
releases, `current` on the newer) and does, measured:

    new       deploy release R, every file new to the hosts (prunes the oldest release: keep 2)
    small     deploy R2 = R with 10 of 2005 files changed (prunes again)
    rollback  back to R

After every step every host is checked from the controller side (its /srv): `current` -> releases/<id>,
exactly the expected releases on disk, 2005 files of the right sizes, a sample of sha256 sums (the changed
files among them), and the restart marker naming the release. Needs root (the fleet harness does).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(BENCH))

from artifact import FILES, TOTAL_BYTES, changed_paths, ensure_release, load_manifest  # noqa: E402
from conveyor_timeline import summarize as summarize_timeline  # noqa: E402
from measure import (  # noqa: E402
    background_cpu,
    become_subreaper,
    known_children,
    loadavg,
    reap_orphans,
    run_measured,
)

from sshfleet import Fleet, missing_requirements  # noqa: E402
from tools import (  # noqa: E402
    CONVEYORS,
    DEPLOY_TO,
    KEEP,
    RESTART_MARKER,
    TOOL_ORDER,
    Ansible,
    Conveyor,
    ConveyorGzip,
    ConveyorOpenssh,
    ConveyorStack,
    Floor,
    FloorDefault,
    Pyinfra,
    Release,
    Rsync,
    Site,
    Step,
    Tool,
    ToolUnavailable,
    tools_venv,
    write_fast_ssh_config,
)

SCENARIOS = ("new", "small", "rollback")
SEEDS = {"old1": "20200101T000000Z-0000a001", "old2": "20200101T000001Z-0000a002"}
MB_PER_HOST = 120  # peak per host: 3 unpacked releases (~25 MiB on ext4 each) + an uploaded tarball (~14 MiB)
MB_EXTRA = 400  # templates and slack
SAMPLE_FILES = 10  # unchanged files whose sha256 is checked on every host (plus the changed ones)


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ releases


def conveyor_executable(given: str | None) -> str:
    if given:
        return given
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("conveyor", path=search)
    if found is None:
        sys.exit("the `conveyor` console script is not installed (pip install -e .)")
    return found


def byte_compile(conveyor: str) -> str:
    """Compile the measured Conveyor's modules to bytecode, as installing a wheel does: a source tree run with
    PYTHONDONTWRITEBYTECODE (or from a read-only snapshot) would otherwise compile every module on every
    command, a cost no installed tool pays (pyinfra and ansible are installed from wheels). Returns the
    package directory."""
    first = Path(conveyor).read_text(errors="replace").splitlines()[0] if Path(conveyor).is_file() else ""
    python = first[2:].strip() if first.startswith("#!") and "python" in first else sys.executable
    where = subprocess.run([python, "-c", "import conveyor, os; print(os.path.dirname(conveyor.__file__))"],
                           capture_output=True, text=True, check=False, timeout=60)
    if where.returncode != 0:
        sys.exit(f"cannot find the conveyor package:\n{where.stderr}")
    package = where.stdout.strip()
    subprocess.run([python, "-m", "compileall", "-q", package], capture_output=True, check=False, timeout=300)
    return package


def build_releases(cache: Path, conveyor: str) -> dict[str, Release]:
    """The four releases: old1 and old2 (only ever seeded on hosts), new and small (built by `conveyor build`
    into a store in the cache; their tarballs are what every tool ships)."""
    art = cache / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    dirs = {
        "old1": ensure_release(art, "old1", "old1"),
        "old2": ensure_release(art, "old2", "old2"),
        "new": ensure_release(art, "new", "new"),
        "small": ensure_release(art, "small", "small", changed_from="new"),
    }
    store = cache / "conveyor-store"
    builds_file = cache / "builds.json"
    builds: dict[str, str] = json.loads(builds_file.read_text()) if builds_file.is_file() else {}
    releases = {name: Release(SEEDS[name], name, dirs[name], None, load_manifest(dirs[name]))
                for name in ("old1", "old2")}
    for name in ("new", "small"):
        stamp = (art / f"{name}.stamp").read_text()
        key = hashlib.sha256(f"{name}:{stamp}".encode()).hexdigest()
        rid = builds.get(key)
        if rid is None or not (store / f"{rid}.tar.gz").is_file():
            cfg = cache / f"build-{name}.yml"
            cfg.write_text(json.dumps({
                "app": "bench", "artifact": {"path": str(dirs[name]), "store": str(store), "compression": "gzip"},
                "roles": {"web": {}},
                "environments": {"build": {"transport": "local", "regions": {"x": {"hosts": {"web": ["x"]}}}}},
            }))
            done = subprocess.run([conveyor, "-c", str(cfg), "build", "--json"], capture_output=True, text=True,
                                  check=False, timeout=600, cwd=cache,
                                  env={**os.environ, "CONVEYOR_STATE_URL": f"sqlite:///{cache / 'build.db'}"})
            if done.returncode != 0:
                sys.exit(f"conveyor build of the {name} release failed:\n{done.stdout}\n{done.stderr}")
            rid = json.loads(done.stdout)["id"]
            builds[key] = rid
            builds_file.write_text(json.dumps(builds, indent=1))
        releases[name] = Release(rid, name, dirs[name], store / f"{rid}.tar.gz", load_manifest(dirs[name]))
    ids = [releases[n].id for n in ("old1", "old2", "new", "small")]
    if ids != sorted(ids):
        sys.exit(f"release ids do not sort in build order: {ids}")
    transcode_store(store, cache / "conveyor-store-zstd", "zstd", [releases["new"].id, releases["small"].id])
    return releases


def transcode_store(store: Path, dest: Path, compression: str, ids: list[str]) -> None:
    """The same releases (same ids, the same tar stream inside) in a store that keeps them compressed another
    way: what `artifact.compression` would have built, without a second release id to verify against."""
    from conveyor.artifact.compression import SUFFIXES, compressed_writer

    dest.mkdir(parents=True, exist_ok=True)
    for rid in ids:
        if (dest / f"{rid}.json").is_file():
            continue
        manifest = json.loads((store / f"{rid}.json").read_text())
        out = dest / f"{rid}{SUFFIXES[compression]}"  # type: ignore[index]
        with gzip.open(store / f"{rid}.tar.gz", "rb") as tar, out.open("wb") as raw, \
                compressed_writer(raw, compression) as writer:  # type: ignore[arg-type]
            shutil.copyfileobj(tar, writer, 1 << 20)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        manifest.update(sha256=digest, size=out.stat().st_size, compression=compression)
        (dest / f"{rid}.json").write_text(json.dumps(manifest, indent=2) + "\n")


def plan_steps(scenarios: list[str], releases: dict[str, Release]) -> list[tuple[Step, bool]]:
    """(step, measured): `new` always runs (it is the ground the others stand on), measured when asked."""
    steps = [(Step("new", "deploy", releases["new"], releases["old2"]), "new" in scenarios)]
    last = steps[0][0]
    if "small" in scenarios:
        last = Step("small", "deploy", releases["small"], releases["new"])
        steps.append((last, True))
    if "rollback" in scenarios:
        steps.append((Step("rollback", "rollback", last.previous, last.target), True))
    return steps


# ------------------------------------------------------------------------------------------- hosts


def image_size_mb(count: int) -> int:
    return count * MB_PER_HOST + MB_EXTRA


def sync() -> None:
    """Flush dirty pages (the image, then the file under it) so no step pays for an earlier one's writeback."""
    os.sync()
    os.sync()


def _sh(script: str) -> None:
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{script[:200]}: {done.stderr.strip()}")


def seed_fleet(fleet: Fleet, templates: Path, releases: dict[str, Release]) -> None:
    """Every host: a fresh deploy_to with old1 and old2 unpacked, `current` -> old2, the marker naming old2."""
    old1, old2 = releases["old1"].id, releases["old2"].id

    def one(name: str) -> None:
        d = fleet.host(name).srv / DEPLOY_TO.removeprefix("/srv/")
        _sh(f"rm -rf '{d}' && mkdir -p '{d}/releases' '{d}/incoming' && "
            f"cp -a '{templates / old1}' '{d}/releases/{old1}' && cp -a '{templates / old2}' '{d}/releases/{old2}' && "
            f"ln -s 'releases/{old2}' '{d}/current' && printf '%s\\n' '{old2}' > '{d}/{RESTART_MARKER}'")

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, [h.name for h in fleet.hosts]))
    sync()


def sample_paths(release: Release) -> list[str]:
    paths = sorted(release.manifest)
    changed = [p for p, m in release.manifest.items() if m.get("changed")]
    step = max(1, len(paths) // SAMPLE_FILES)
    return sorted(set(paths[::step][:SAMPLE_FILES]) | set(changed) | set(changed_paths("new")))


def verify_host(srv: Path, target: Release, expected: set[str]) -> list[str]:
    d = srv / DEPLOY_TO.removeprefix("/srv/")
    problems = []
    link = d / "current"
    if not link.is_symlink():
        return ["current is not a symlink"]
    if os.readlink(link) != f"releases/{target.id}":
        problems.append(f"current -> {os.readlink(link)}, expected releases/{target.id}")
    on_disk = {p.name for p in (d / "releases").iterdir()} if (d / "releases").is_dir() else set()
    if on_disk != expected:
        problems.append(f"releases on disk {sorted(on_disk)}, expected {sorted(expected)}")
    folder = d / "releases" / target.id
    if not folder.is_dir():
        return [*problems, f"releases/{target.id} is missing"]
    found: dict[str, int] = {}
    others = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            st = path.lstat()
            if path.is_symlink() or not path.is_file():
                others += 1
                continue
            found[str(path.relative_to(folder))] = st.st_size
    if len(found) != FILES or others:
        problems.append(f"{len(found)} files (+{others} other entries), expected {FILES}")
    wrong_size = [p for p, m in target.manifest.items() if found.get(p) != m["size"]]
    if wrong_size:
        problems.append(f"{len(wrong_size)} files missing or of the wrong size, e.g. {wrong_size[:3]}")
    for rel in sample_paths(target):
        path = folder / rel
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != target.manifest[rel]["sha256"]:
            problems.append(f"{rel}: wrong content")
    marker = d / RESTART_MARKER
    said = marker.read_text().strip() if marker.is_file() else None
    if said != target.id:
        problems.append(f"restart marker says {said!r}, expected {target.id}")
    return problems


def verify_fleet(fleet: Fleet, target: Release, expected: set[str]) -> dict[str, list[str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda h: (h.name, verify_host(h.srv, target, expected)), fleet.hosts)
        return {name: problems for name, problems in results if problems}


# -------------------------------------------------------------------------------------------- facts


def kex_openssh(config: Path, host: str) -> dict[str, str]:
    done = subprocess.run(["ssh", "-v", "-F", str(config), host, "true"], capture_output=True, text=True,
                          check=False, timeout=30)
    found = {}
    for line in done.stderr.splitlines():
        if "kex: algorithm:" in line:
            found["kex"] = line.split("kex: algorithm:")[1].strip()
        elif "kex: client->server cipher:" in line:
            found["cipher"] = line.split("cipher:")[1].split()[0]
    return found


_ASYNCSSH_PROBE = """
import asyncio, json, sys
import asyncssh
import asyncssh.connection as connection
from conveyor.transport.ssh import FAST_KEX, FAST_CIPHERS
chosen = []
real_get_kex = connection.get_kex
def get_kex(conn, alg):
    chosen.append(alg)
    return real_get_kex(conn, alg)
connection.get_kex = get_kex
async def main(port, key, known):
    async with asyncssh.connect("127.0.0.1", port=port, username="root", client_keys=[key], known_hosts=known,
                                kex_algs=list(FAST_KEX), encryption_algs=list(FAST_CIPHERS)) as conn:
        kex = chosen[0] if chosen else b"?"
        enc = getattr(conn, "_enc_alg_cs", b"?")
        print(json.dumps({"kex": kex.decode(), "cipher": enc.decode(), "asyncssh": asyncssh.__version__}))
asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
"""

_PARAMIKO_PROBE = """
import json, logging, sys, io
import paramiko
stream = io.StringIO()
logging.basicConfig(stream=stream, level=logging.DEBUG)
client = paramiko.SSHClient()
client.load_host_keys(sys.argv[3])
client.set_missing_host_key_policy(paramiko.RejectPolicy())
client.connect("127.0.0.1", port=int(sys.argv[1]), username="root", key_filename=sys.argv[2],
               allow_agent=False, look_for_keys=False)
found = {"paramiko": paramiko.__version__}
for line in stream.getvalue().splitlines():
    if "Kex:" in line:
        found["kex"] = line.split("Kex:")[1].strip()
    if "Cipher:" in line:
        found["cipher"] = line.split("Cipher:")[1].strip()
client.close()
print(json.dumps(found))
"""


def kex_python(python: str, code: str, fleet: Fleet, pythonpath: Path | None = None) -> dict[str, str]:
    host = fleet.hosts[0]
    env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    try:
        done = subprocess.run([python, "-c", code, str(host.port), str(fleet.client_key), str(fleet.known_hosts)],
                              capture_output=True, text=True, check=False, timeout=60, env=env)
        parsed: dict[str, str] = json.loads(done.stdout)
        return parsed
    except (ValueError, OSError, subprocess.SubprocessError) as exc:
        return {"error": f"{exc}"}


def snapshot_source(cache: Path, ref: str) -> tuple[Path, str]:
    """`git archive REF src` unpacked under the cache: a Conveyor that does not change while it is measured."""
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                          capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        sys.exit(f"--conveyor-ref {ref}: not a commit: {done.stderr.strip()}")
    sha = done.stdout.strip()
    dest = cache / "src" / sha
    if not (dest / "src" / "conveyor" / "__init__.py").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha, "src"], capture_output=True,
                                 check=True, timeout=120)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=120)
    return dest / "src", sha


def source_state() -> dict[str, Any]:
    """Which Conveyor was measured: the commit, and the files under src/ that differ from it."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_changes": changed}


def machine_facts() -> dict[str, Any]:
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:")), "0")
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip()
    return {
        "nproc": os.cpu_count(), "cpu_model": cpu_model, "mem_gib": round(int(mem) / 1024 / 1024, 1),
        "kernel": platform.release(), "python": platform.python_version(), "openssh": ssh,
        "loadavg_at_start": loadavg(),
    }


# ------------------------------------------------------------------------------------------- running


def make_tools(names: list[str], site: Site, conveyor: str, cache: Path,
               profile: Path | None = None, pythonpath: Path | None = None) -> tuple[list[Tool], dict[str, str]]:
    tools: list[Tool] = []
    unavailable: dict[str, str] = {}
    venv: Path | None = None
    venv_problem: str | None = None
    if {"pyinfra", "ansible"} & set(names):
        try:
            venv = tools_venv(cache, cache / "tools-venv-install.log")
        except ToolUnavailable as exc:
            venv_problem = str(exc)
    for name in names:
        tool: Tool
        if name in CONVEYORS:
            # The default (auto) stores zstd: the same releases, transcoded (transcode_store); gzip ships the
            # tarball every other tool ships.
            tool = (Conveyor(site, conveyor, cache / "conveyor-store-zstd") if name == "conveyor"
                    else ConveyorOpenssh(site, conveyor, cache / "conveyor-store-zstd")
                    if name == "conveyor-openssh"
                    else ConveyorStack(site, conveyor, cache / "conveyor-store-zstd") if name == "conveyor-stack"
                    else ConveyorGzip(site, conveyor, cache / "conveyor-store"))
            tool.profile_dir = profile
            tool.pythonpath = pythonpath
        elif name == "floor":
            tool = Floor(site)
        elif name == "floor-default":
            tool = FloorDefault(site)
        elif name == "rsync":
            tool = Rsync(site)
        elif name == "pyinfra":
            tool = Pyinfra(site, venv, venv_problem)
        elif name == "ansible":
            tool = Ansible(site, venv, venv_problem)
        else:
            raise SystemExit(f"unknown tool {name!r}; known: {', '.join(TOOL_ORDER)}")
        try:
            tool.check()
        except ToolUnavailable as exc:
            unavailable[name] = str(exc)
            continue
        tools.append(tool)
    return tools, unavailable


def run_tool(tool: Tool, fleet: Fleet, releases: dict[str, Release], steps: list[tuple[Step, bool]], run: int,
             known: set[int], templates: Path, timeout: float, count: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    began = time.monotonic()
    seed_fleet(fleet, templates, releases)
    seeded = time.monotonic() - began
    tool.begin_run(run)
    on_disk = {releases["old1"].id, releases["old2"].id}
    failed = None
    for step, measured in steps:
        record: dict[str, Any] = {"hosts": count, "run": run, "tool": tool.name, "scenario": step.scenario,
                                  "measured": measured, "release": step.target.id}
        if failed:
            record.update(verified=False, error=f"skipped: {failed}")
            if measured:
                records.append(record)
            continue
        if step.kind == "deploy":
            on_disk = set(sorted(on_disk | {step.target.id})[-KEEP:])
        sync()
        command = tool.command(step, run)
        out_dir = tool.dir / f"out-run{run}-{step.scenario}"
        m = run_measured(command.argv, env=command.env, cwd=command.cwd, timeout=timeout, known=known,
                         output_dir=out_dir)
        tool.after(step)
        reap_orphans(known, timeout=5)
        record.update(m.summary())
        if isinstance(tool, Conveyor) and tool.timeline and tool.timeline_path(step, run).is_file():
            record["timeline"] = summarize_timeline(json.loads(tool.timeline_path(step, run).read_text()))
        problem = None
        if m.timed_out:
            problem = f"timed out after {timeout:g}s"
        elif m.exit_code != 0:
            problem = f"exit {m.exit_code}: {(m.stdout[-800:] + m.stderr[-1500:]).strip()}"
        else:
            problem = tool.check_output(m.stdout, m.stderr, step)
        bad = verify_fleet(fleet, step.target, on_disk)
        record["verified"] = problem is None and not bad
        if problem:
            record["error"] = problem
        if bad:
            record["hosts_wrong"] = len(bad)
            record["problems"] = {h: p[:3] for h, p in list(bad.items())[:5]}
        if measured:
            records.append(record)
        status = "ok" if record["verified"] else "FAILED"
        log(f"  N={count} run {run + 1} {tool.name:14s} {step.scenario:8s} {m.wall_s:7.2f}s wall "
            f"{m.controller_cpu_s:6.2f}s ctl-cpu {m.machine_cpu_s:7.2f}s machine-cpu  {status}"
            + ("" if measured else " (preparation, not measured)")
            + (f"  {record.get('error', '')[:300]} {record.get('problems', '')}" if not record["verified"] else ""))
        if not record["verified"]:
            failed = f"{tool.name} failed at {step.scenario} in this run"
    log(f"  (seeding took {seeded:.1f}s)")
    return records


def run_fleet(count: int, args: argparse.Namespace, releases: dict[str, Release], work: Path, cache: Path,
              conveyor: str, results: dict[str, Any]) -> None:
    steps = plan_steps(args.scenarios, releases)
    root = work / f"fleet-{count}"
    log(f"N={count}: starting the fleet (ext4 image of {image_size_mb(count)} MB)")
    fleet = Fleet(root, count, fast_crypto=False, image_size_mb=image_size_mb(count),
                  ready_timeout=max(30.0, count * 0.5))
    fleet.start()
    try:
        log(f"N={count}: fleet ready in {fleet.timings.get('ready', 0):.1f}s")
        site_dir = work / f"site-{count}"
        site_dir.mkdir(parents=True, exist_ok=True)
        fast = site_dir / "ssh_config.fast"
        write_fast_ssh_config(fleet.ssh_config, fast)
        site = Site(work=site_dir, names=[h.name for h in fleet.hosts], ports={h.name: h.port for h in fleet.hosts},
                    client_key=fleet.client_key, known_hosts=fleet.known_hosts,
                    ssh_config_default=fleet.ssh_config, ssh_config_fast=fast, cache=cache)
        templates = fleet.mountpoint / "templates"
        templates.mkdir(parents=True, exist_ok=True)
        for name in ("old1", "old2"):
            template = templates / releases[name].id
            _sh(f"rm -rf '{template}' && cp -a '{releases[name].dir}' '{template}'")
        tools, unavailable = make_tools(args.tools, site, conveyor, cache, args.profile, args.pythonpath)
        for name, why in unavailable.items():
            log(f"N={count}: {name} is unavailable: {why.splitlines()[0]}")
            results["tools"].setdefault(name, {})["unavailable"] = why
        for tool in tools:
            info = results["tools"].setdefault(tool.name, {})
            info["description"] = tool.description
            if "version" not in info:
                with contextlib.suppress(Exception):
                    info["version"] = tool.version()
        if "crypto" not in results["machine"]:
            crypto = {"floor (ssh_config with KexAlgorithms/Ciphers)": kex_openssh(fast, site.names[0]),
                      "floor-default (OpenSSH defaults)": kex_openssh(fleet.ssh_config, site.names[0]),
                      "conveyor (asyncssh)": kex_python(sys.executable, _ASYNCSSH_PROBE, fleet, args.pythonpath)}
            pyinfra = next((t for t in tools if isinstance(t, Pyinfra)), None)
            if pyinfra is not None:
                crypto["pyinfra (paramiko)"] = kex_python(pyinfra.exe("python"), _PARAMIKO_PROBE, fleet)
            results["machine"]["crypto"] = crypto
        known = known_children()
        conveyor_tool = next((t for t in tools if isinstance(t, Conveyor)), None)
        if conveyor_tool is not None and "conveyor_startup" not in results["machine"]:
            results["machine"]["conveyor_startup"] = startup_cost(conveyor_tool, known)
        if "host_costs" not in results["machine"] and not args.quick:
            results["machine"]["host_costs"] = host_costs(fleet.mountpoint / "scratch", templates, releases, known)
        background = results["machine"].setdefault("background_cpus", {}).setdefault(str(count), [])
        for run in range(args.runs):
            shift = run % max(1, len(tools))
            order = tools[shift:] + tools[:shift]
            background.append(round(background_cpu(2.0), 2))
            log(f"N={count}: run {run + 1}/{args.runs}: {', '.join(t.name for t in order)} "
                f"(other work on the machine just before: {background[-1]:.2f} CPUs)")
            for tool in order:
                timeout = args.timeout or max(120.0, 6.0 * count)
                try:
                    results["records"] += run_tool(tool, fleet, releases, steps, run, known, templates, timeout,
                                                   count)
                except Exception as exc:
                    import traceback

                    log(f"N={count}: {tool.name} crashed: {exc!r}\n{traceback.format_exc()}")
                    results["records"].append({"hosts": count, "run": run, "tool": tool.name, "scenario": "*",
                                               "verified": False, "error": f"crashed: {exc!r}"})
                write_results(results, args.output)
        if conveyor_tool is not None and args.timeline:
            log(f"N={count}: one more Conveyor pass with a timeline (not in the medians)")
            conveyor_tool.timeline = True
            try:
                for record in run_tool(conveyor_tool, fleet, releases, steps, args.runs, known, templates,
                                       args.timeout or max(120.0, 6.0 * count), count):
                    if "timeline" in record:
                        results["timelines"].setdefault(str(count), {})[record["scenario"]] = {
                            "wall_s": record.get("wall_s"), "controller_cpu_s": record.get("controller_cpu_s"),
                            "verified": record.get("verified"), **record["timeline"]}
            finally:
                conveyor_tool.timeline = False
            write_results(results, args.output)
    finally:
        fleet.stop()


def host_costs(scratch: Path, templates: Path, releases: dict[str, Release], known: set[int]) -> dict[str, Any]:
    """CPU seconds one host spends on each piece of the job (median of 3, on the fleet's ext4 image): what a
    tool's choices (compression, a temporary file, a checksum pass, shipping only what changed) cost per host."""
    release = releases["new"]
    assert release.tarball is not None
    scratch.mkdir(parents=True, exist_ok=True)
    plain = scratch / "release.tar"
    _sh(f"gzip -dc < '{release.tarball}' > '{plain}'")
    sizes = {"gzip -9 (Conveyor's tarball)": release.tarball.stat().st_size, "uncompressed tar": plain.stat().st_size}
    pieces = {
        "gunzip the tarball": f"gzip -dc < '{release.tarball}' > /dev/null",
        "sha256sum the tarball": f"sha256sum '{release.tarball}' > /dev/null",
        "write the tarball to a file": f"cat '{release.tarball}' > '{scratch}/copy.tgz' && rm -f '{scratch}/copy.tgz'",
        "tar -x (uncompressed) a release": f"mkdir '{scratch}/x' && tar -xf '{plain}' -C '{scratch}/x'",
        "rm -rf a release (prune)": f"rm -rf '{scratch}/x'",
        "cp -al a release (hard-link the unchanged files)": f"cp -al '{templates / releases['old2'].id}' "
                                                           f"'{scratch}/l'",
    }
    if shutil.which("zstd"):
        zst = scratch / "release.tar.zst"
        _sh(f"zstd -q -3 -T1 -f '{plain}' -o '{zst}'")
        sizes["zstd -3"] = zst.stat().st_size
        pieces["unzstd the tarball (zstd -3)"] = f"zstd -dc < '{zst}' > /dev/null"
    costs: dict[str, float] = {}
    for name, script in pieces.items():
        spent = []
        for _ in range(3):
            if name.startswith("rm -rf"):
                _sh(f"rm -rf '{scratch}/x' && mkdir '{scratch}/x' && tar -xf '{plain}' -C '{scratch}/x' && sync")
            m = run_measured(["sh", "-c", script], timeout=120, known=known)
            if m.exit_code != 0:
                raise RuntimeError(f"{name}: {script}: exit {m.exit_code}: {m.stderr.strip()[-300:]}")
            spent.append(m.controller_cpu_s)
            _sh(f"rm -rf '{scratch}/x' '{scratch}/l' && sync")
        costs[name] = round(statistics.median(spent), 3)
    shutil.rmtree(scratch, ignore_errors=True)
    return {"cpu_s": costs, "bytes": sizes, "checked": True}


def startup_cost(tool: Conveyor, known: set[int]) -> dict[str, float]:
    """What `conveyor validate` costs (interpreter start, imports, loading the config): the fixed part of
    every Conveyor command, median of 3."""
    runs = []
    tool.begin_run(0)  # a state store of its own, so `validate` sees the same environment as a deploy
    for _ in range(3):
        m = run_measured([tool.executable, "-c", str(tool.config), "validate"], env=tool.env(),
                         cwd=tool.dir, timeout=60, known=known)
        runs.append(m)
    return {"wall_s": round(statistics.median(r.wall_s for r in runs), 3),
            "cpu_s": round(statistics.median(r.controller_cpu_s for r in runs), 3)}


# ------------------------------------------------------------------------------------------ results


def summarize(results: dict[str, Any]) -> None:
    """Medians per (N, scenario, tool) over verified runs, and Conveyor/other ratios pair by pair per run."""
    records = [r for r in results["records"] if r.get("scenario") != "*"]
    summary: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    metrics = ("wall_s", "controller_cpu_s", "machine_cpu_s", "loopback_bytes", "peak_pss_mib", "peak_rss_mib")
    keys = sorted({(r["hosts"], r["scenario"]) for r in records}, key=lambda k: (k[0], SCENARIOS.index(k[1])))
    for count, scenario in keys:
        group = [r for r in records if r["hosts"] == count and r["scenario"] == scenario]
        by_tool: dict[str, Any] = {}
        for tool in sorted({r["tool"] for r in group}, key=_tool_rank):
            rows = [r for r in group if r["tool"] == tool]
            ok = [r for r in rows if r.get("verified")]
            entry: dict[str, Any] = {"runs": len(rows), "verified_runs": len(ok),
                                     "verified": bool(rows) and len(ok) == len(rows)}
            for metric in metrics:
                values = [r[metric] for r in ok if metric in r]
                if values:
                    entry[metric] = statistics.median(values)
            errors = [r.get("error") for r in rows if not r.get("verified")]
            if errors:
                entry["errors"] = errors[:3]
            by_tool[tool] = entry
        summary.setdefault(str(count), {})[scenario] = by_tool
        pairs: dict[str, Any] = {}
        for me, other in [(m, o) for m in CONVEYORS for o in ("floor", "floor-default", "rsync", "pyinfra", "ansible")]:
            per_run = []
            for run in sorted({r["run"] for r in group}):
                mine = next((r for r in group if r["tool"] == me and r["run"] == run and r.get("verified")), None)
                theirs = next((r for r in group if r["tool"] == other and r["run"] == run and r.get("verified")),
                              None)
                if mine and theirs and theirs["wall_s"] > 0:
                    per_run.append({
                        "run": run,
                        "wall": mine["wall_s"] / theirs["wall_s"],
                        "controller_cpu": (mine["controller_cpu_s"] / theirs["controller_cpu_s"]
                                           if theirs["controller_cpu_s"] > 0 else None),
                        "machine_cpu": (mine["machine_cpu_s"] / theirs["machine_cpu_s"]
                                        if theirs["machine_cpu_s"] > 0 else None),
                    })
            if per_run:
                pairs[f"{me}/{other}"] = {
                    "runs": len(per_run),
                    "wall": statistics.median(p["wall"] for p in per_run),
                    "controller_cpu": _median([p["controller_cpu"] for p in per_run]),
                    "machine_cpu": _median([p["machine_cpu"] for p in per_run]),
                    "per_run_wall": [round(p["wall"], 3) for p in per_run],
                }
        ratios.setdefault(str(count), {})[scenario] = pairs
    results["summary"] = summary
    results["ratios"] = ratios


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def _tool_rank(name: str) -> int:
    return TOOL_ORDER.index(name) if name in TOOL_ORDER else len(TOOL_ORDER)


def write_results(results: dict[str, Any], path: Path) -> None:
    summarize(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="+", default=[10, 50], help="fleet sizes (default 10 50)")
    parser.add_argument("--runs", type=int, default=3, help="runs per fleet size (medians are reported)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--tools", nargs="+",
                        default=["conveyor", "floor", "floor-default", "rsync", "pyinfra", "ansible"],
                        help=f"tools, of: {', '.join(TOOL_ORDER)}")
    parser.add_argument("--quick", action="store_true", help="smoke test: N=3, 1 run, conveyor and floor")
    parser.add_argument("--output", type=Path, default=None,
                        help="results JSON (default bench/results/fanout.json; with --quick, a file in the temp dir)")
    parser.add_argument("--report", type=Path, default=None,
                        help="Markdown report to write (default docs/PERFORMANCE.md; none with --quick)")
    parser.add_argument("--no-report", action="store_true", help="do not write the Markdown report")
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON", help="only render the report from a file")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "conveyor-bench",
                        help="artifacts, Conveyor's artifact store, the pyinfra/ansible venv")
    parser.add_argument("--work-dir", type=Path, default=None, help="fleets and tool files (default: a temp dir)")
    parser.add_argument("--keep-work", action="store_true", help="keep the work directory (logs, configs)")
    parser.add_argument("--conveyor", default=None, help="the conveyor executable (default: the installed one)")
    parser.add_argument("--conveyor-ref", default=None, metavar="REF",
                        help="measure Conveyor as of this git commit (a snapshot of src/ under the cache, put on "
                             "PYTHONPATH), not the work tree, which may change during a long run")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per step (default max(120, 6*N))")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="run Conveyor under cProfile, writing DIR/conveyor-N-SCENARIO-runI.prof "
                             "(its timings are then not comparable)")
    parser.add_argument("--no-timeline", dest="timeline", action="store_false",
                        help="skip the extra Conveyor pass (per N) that records where its time goes")
    parser.add_argument("--note", default="", help="a note stored with the results (e.g. the machine's load)")
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.runs, args.tools, args.timeline = [3], 1, ["conveyor", "floor"], False
    if args.output is None:
        args.output = (Path(tempfile.gettempdir()) / "conveyor-bench-quick.json" if args.quick
                       else BENCH / "results" / "fanout.json")
    for name in args.tools:
        if name not in TOOL_ORDER:
            parser.error(f"unknown tool {name!r}; known: {', '.join(TOOL_ORDER)}")
    if args.report is None and not args.quick and not args.no_report:
        args.report = REPO / "docs" / "PERFORMANCE.md"
    if args.no_report:
        args.report = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from report import render

    if args.render:
        results = json.loads(args.render.read_text())
        target = args.report or REPO / "docs" / "PERFORMANCE.md"
        target.write_text(render(results))
        log(f"wrote {target}")
        return 0
    missing = missing_requirements()
    if missing:
        log("cannot start an sshd fleet; missing: " + "; ".join(missing))
        return 2
    started = time.monotonic()
    become_subreaper()
    cache = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    conveyor = conveyor_executable(args.conveyor)
    args.pythonpath = None
    if args.conveyor_ref:
        args.pythonpath, sha = snapshot_source(cache, args.conveyor_ref)
        os.environ["PYTHONPATH"] = str(args.pythonpath)  # conveyor build and every conveyor run use it
        log(f"measuring Conveyor as of {sha[:10]} ({args.pythonpath})")
    log(f"byte-compiled {byte_compile(conveyor)}")
    log("preparing the releases")
    releases = build_releases(cache, conveyor)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": (f"python bench/fanout.py --hosts {' '.join(map(str, args.hosts))} --runs {args.runs} "
                    f"--scenarios {' '.join(args.scenarios)} --tools {' '.join(args.tools)}"
                    + (" --quick" if args.quick else "")),
        "note": args.note, "quick": args.quick, "profiled": bool(args.profile), "timeline": args.timeline,
        "machine": machine_facts(),
        "job": {"files": FILES, "bytes": TOTAL_BYTES, "tarball_bytes": {n: r.tarball.stat().st_size
                                                                        for n, r in releases.items() if r.tarball},
                "releases": {n: r.id for n, r in releases.items()}, "keep_releases": KEEP, "deploy_to": DEPLOY_TO,
                "scenarios": args.scenarios, "hosts": args.hosts, "runs": args.runs},
        "tools": {}, "records": [], "timelines": {},
        "source_at_start": ({"commit": sha[:10], "snapshot": True} if args.conveyor_ref else source_state()),
    }
    log(f"releases: {results['job']['releases']}; work dir {work}")
    try:
        for count in args.hosts:
            run_fleet(count, args, releases, work, cache, conveyor, results)
    finally:
        results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["seconds"] = round(time.monotonic() - started, 1)
        results["machine"]["loadavg_at_end"] = loadavg()
        if not args.conveyor_ref:
            results["source_at_end"] = source_state()
        write_results(results, args.output)
        if not args.keep_work and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {args.output} in {results['seconds']}s")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(render(results))
        log(f"wrote {args.report}")
    ok = all(r.get("verified") for r in results["records"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
