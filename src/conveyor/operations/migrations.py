"""Schema migrations in a deployment: which run where and when, judged before anything runs, applied before
a region's code switches, and remembered so that a rollback the schema no longer supports is refused.

- **expand** migrations of the release being deployed run in each region before its first host switches
  (on one host of `migrations.run_on`, from the new release, or on this machine);
- **contract** migrations run only once every region of the environment runs a release that carries them
  (so no running code needs the old schema), at the start of each region of a later deployment;
- a migration judged `breaking` is refused in the expand phase; one judged `needs-window` runs only while
  the environment's `migration_window` is open (or with `--break-glass --reason`, audited): the migrations
  gate (gates/migrations.py) decides that from the plan made here;
- a rollback to a release that lacks an applied contract or breaking migration is refused
  (`--force --reason` overrides it, audited).
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.artifact.compression import open_tar, read_errors
from conveyor.engine import commands
from conveyor.engine.probe import tail
from conveyor.errors import ArtifactError, ConveyorError, MigrationRefused, UsageError
from conveyor.migrations.catalog import Migration, migrations_of
from conveyor.transport.base import Completed
from conveyor.transport.local import LocalConnection

if TYPE_CHECKING:
    from conveyor.artifact.release import Release
    from conveyor.engine.rollout import MigrationRun
    from conveyor.operations.workspace import Workspace

CLASSES = ("safe", "needs-window", "breaking")


@dataclass(frozen=True)
class Judged:
    """A migration with the verdict on its statements."""

    migration: Migration
    cls: str                                   # safe | needs-window | breaking: the worst of its statements
    findings: tuple[dict[str, Any], ...] = ()  # {line, rule, class, message, hint}

    @property
    def name(self) -> str:
        """The migration's name."""
        return self.migration.name

    def to_json(self) -> dict[str, Any]:
        """As `plan --json` and `db status --json` show it."""
        return {"name": self.name, "phase": self.migration.phase, "class": self.cls,
                "findings": list(self.findings)}


@dataclass
class RegionMigrations:
    """What a deployment does to one region's schema."""

    region: str
    contract: list[Judged] = field(default_factory=list)  # run first: every region runs code that carries them
    expand: list[Judged] = field(default_factory=list)    # the release's own, not applied yet
    waiting: list[Judged] = field(default_factory=list)   # contract, until every region runs code carrying them

    @property
    def to_run(self) -> list[Judged]:
        """In the order they run."""
        return [*self.contract, *self.expand]

    def to_json(self) -> dict[str, Any]:
        """As `plan --json` shows it."""
        return {"contract": [j.to_json() for j in self.contract], "expand": [j.to_json() for j in self.expand],
                "waiting": [j.to_json() for j in self.waiting]}


def judge_all(ws: Workspace, migrations: list[Migration], pending: set[str]) -> dict[str, Judged]:
    """The verdict on each of a release's migrations, judged in the order they run, each knowing the schema
    the ones before it made (a table created by an earlier migration of the history is known, for one).
    squawk (a process per file) looks only at the `pending` ones: the others only build up the schema."""
    from conveyor.migrations.lint import Schema, judge_sql

    settings = ws.config.migrations
    assert settings is not None
    schema = Schema()
    out: dict[str, Judged] = {}
    for migration in migrations:
        verdict = judge_sql(migration.text, settings.dialect, settings.version, migration.phase,
                            path=migration.name, schema=schema, squawk=migration.name in pending,
                            transaction=settings.transaction)
        findings = tuple({"line": finding.line, "rule": finding.rule, "class": finding.cls,
                          "message": finding.message, "hint": finding.hint} for finding in verdict.findings)
        out[migration.name] = Judged(migration, verdict.cls, findings)
    return out


def carried(ws: Workspace, release_id: str | None) -> list[Migration]:
    """The migrations a release carries ([] for none, or a release the store no longer has)."""
    settings = ws.config.migrations
    if settings is None or release_id is None:
        return []
    return _carried(ws, release_id, settings.dir)


def _carried(ws: Workspace, release_id: str, directory: str) -> list[Migration]:
    cached: dict[tuple[str, str], list[Migration]] = ws.__dict__.setdefault("_migrations_carried", {})
    key = (release_id, directory)
    if key not in cached:
        # What the state store recorded when the release was built or deployed; the tarball (which a remote
        # store may have to download) only for releases recorded before migrations were configured.
        recorded = _recorded(ws, release_id)
        if recorded is None:
            try:
                recorded = migrations_of(ws.artifacts.get(release_id), directory)
            except ArtifactError:
                recorded = []
        cached[key] = recorded
    return cached[key]


def _recorded(ws: Workspace, release_id: str) -> list[Migration] | None:
    """The migrations the state store recorded for a release (names and phases: what callers of `carried`
    need), or None when it recorded none."""
    manifest = ws.store.release_manifest(release_id) or {}
    if not isinstance(manifest.get("migrations"), list):
        return None
    out = []
    for item in manifest["migrations"]:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item.get("phase") in ("expand",
                                                                                                  "contract"):
            out.append(Migration(item["name"], item["phase"], str(item.get("sha256", "")), ""))
    return out


def plan_migrations(ws: Workspace, env: str, regions: list[str], target: Release) -> dict[str, RegionMigrations]:
    """Per region: the contract migrations now allowed, the target's expand migrations not yet applied, and
    the contract ones that must wait. From what Conveyor recorded as applied (the database is asked again
    when they run)."""
    settings = ws.config.migrations
    if settings is None:
        return {}
    carried_now = migrations_of(target, settings.dir)
    applied = ws.store.applied_migrations(env)
    done_in = {region: {row["name"] for row in applied.get(region, [])} for region in regions}
    judged = judge_all(ws, carried_now, {m.name for m in carried_now
                                         if any(m.name not in done for done in done_in.values())})
    pointers = ws.store.pointers(env)
    everywhere: set[str] | None = None
    for region in ws.config.environments[env].regions:
        names = {m.name for m in carried(ws, pointers.get(region, {}).get("release"))}
        everywhere = names if everywhere is None else everywhere & names
    plans: dict[str, RegionMigrations] = {}
    for region in regions:
        done = done_in[region]
        plan = RegionMigrations(region)
        for name, verdict in judged.items():
            if name in done:
                continue
            if verdict.migration.phase == "expand":
                plan.expand.append(verdict)
            elif name in (everywhere or set()):
                plan.contract.append(verdict)
            else:
                plan.waiting.append(verdict)
        plans[region] = plan
    return plans


def check_rollback(ws: Workspace, env: str, targets: dict[str, str | None], *, force: bool,
                   reason: str | None) -> None:
    """Refuse to go back to a release that lacks a contract or breaking migration applied in its region."""
    if ws.config.migrations is None:
        return
    applied = ws.store.applied_migrations(env)
    problems = []
    for region, target in targets.items():
        kept = {m.name for m in carried(ws, target)}
        for row in applied.get(region, []):
            if (row["phase"] == "contract" or row["class"] == "breaking") and row["name"] not in kept:
                problems.append(f"{region}: {row['name']} ({row['phase']}, {row['class']}) was applied with "
                                f"{row['release']}, and {target or 'no release'} predates it")
    if not problems:
        return
    if force:
        ws.store.add_event("force_rollback", ws.user, environment=env, reason=reason, problems=problems)
        return
    raise MigrationRefused("the schema no longer supports the release this would go back to: "
                           + "; ".join(problems) + " (--force --reason TEXT overrides it)")


def migrator(ws: Workspace, env: str, release: Release, plans: dict[str, RegionMigrations],
             deployment_id: int | None) -> Any:
    """The rollout's `migrate` step: ask the database what is applied, then apply what the region needs,
    in order, recording each one; the first failure stops the region before any host switches."""
    settings = ws.config.migrations
    assert settings is not None

    async def migrate(region: str, run: MigrationRun) -> str | None:
        plan = plans.get(region)
        if plan is None or not plan.to_run:
            return None
        base = {"CONVEYOR_APP": ws.config.app, "CONVEYOR_ENV": env, "CONVEYOR_REGION": region,
                "CONVEYOR_RELEASE": release.id}
        status = await run(settings.status, base, settings.timeout)
        if status.exit_code != 0:
            return f"migrations status failed (exit {status.exit_code}): {tail(status.output, 5)}"
        applied = applied_names(status.output, [j.migration for j in plan.to_run])
        for j in plan.to_run:
            if j.name not in applied:
                env_vars = {**base, "CONVEYOR_MIGRATION": j.name, "CONVEYOR_PHASE": j.migration.phase,
                            "CONVEYOR_MIGRATION_PATH": f"{settings.dir}/{j.name}"}
                done = await run(settings.apply, env_vars, settings.timeout)
                if done.exit_code != 0:
                    return (f"migration {j.name} ({j.migration.phase}) failed (exit {done.exit_code}): "
                            f"{tail(done.output, 5)}")
            ws.store.record_migration(env, region, name=j.name, phase=j.migration.phase, cls=j.cls,
                                      sha256=j.migration.sha256, release=release.id, deployment_id=deployment_id)
        return None

    return migrate


def applied_names(output: str, known: list[Migration]) -> set[str]:
    """The migrations a `status` command says are applied: lines naming one (by its name, its file name, or
    its file name without `.sql`); anything else it prints is ignored."""
    words = {line.strip() for line in output.splitlines() if line.strip()}
    found = set()
    for migration in known:
        base = migration.name.rsplit("/", 1)[-1]
        if {migration.name, base, base.removesuffix(".sql")} & words:
            found.add(migration.name)
    return found


def here(ws: Workspace, release: Release) -> MigrationRun:
    """Run migration commands on this machine, in a copy of the release's migrations directory."""
    settings = ws.config.migrations
    assert settings is not None

    @cache
    def extracted() -> Path:
        root = Path(tempfile.mkdtemp(prefix=f"conveyor-migrations-{release.id}-"))
        prefix = settings.dir.strip("/") + "/"
        try:
            with open_tar(release.path) as archive:
                for member in archive:
                    name = member.name.removeprefix("./")
                    if (name == settings.dir or name.startswith(prefix)) and (member.isfile() or member.isdir()):
                        archive.extract(member, root, filter="data")
        except read_errors() as exc:
            raise ArtifactError(f"cannot unpack the migrations of {release.id}: {exc}") from exc
        return root

    async def run(command: str, env: dict[str, str], timeout: float) -> Completed:
        root = await asyncio.to_thread(extracted)
        return await LocalConnection(root).run(commands.check(str(root), command, 0, 0, env), timeout=timeout)

    return run


def schema_status(ws: Workspace, env: str, release: Release) -> dict[str, Any]:
    """Per region: the migrations its database says are applied, and those `release` would run, judged.

    The status command runs where the migrations run: on one host of `run_on` (in the release it runs), or
    here (in a copy of `release`'s migrations directory)."""
    settings = ws.config.migrations
    if settings is None:
        raise UsageError("no migrations: section in the config")
    regions = list(ws.config.environments[env].regions)
    plans = plan_migrations(ws, env, regions, release)
    known = migrations_of(release, settings.dir)
    recorded = ws.store.applied_migrations(env)
    hosts = ws.hosts(env) if settings.run_on != "local" else {}

    async def ask(region: str) -> Completed:
        base = {"CONVEYOR_APP": ws.config.app, "CONVEYOR_ENV": env, "CONVEYOR_REGION": region,
                "CONVEYOR_RELEASE": release.id}
        if settings.run_on == "local":
            return await here(ws, release)(settings.status, base, settings.timeout)
        host = next((h for h in hosts.get(region, []) if h.role == settings.run_on), None)
        if host is None:
            return Completed(exit_code=2, output=f"no {settings.run_on} host in {region}")
        transport = ws.transport(env)
        try:
            connection = await transport.connect(host)
            deploy_to = transport.deploy_path(host, ws.config.target_dir)
            try:
                return await connection.run(commands.check(f"{deploy_to}/current", settings.status, 0, 0, base),
                                            timeout=settings.timeout)
            finally:
                await connection.close()
        except ConveyorError as exc:
            return Completed(exit_code=255, output=exc.message)
        finally:
            await transport.aclose()

    async def ask_all() -> list[Completed]:
        return list(await asyncio.gather(*(ask(region) for region in regions)))

    answers = asyncio.run(ask_all())
    out: dict[str, Any] = {}
    for region, done in zip(regions, answers, strict=True):
        applied = sorted(applied_names(done.output, known)) if done.exit_code == 0 else None
        plan = plans[region]
        out[region] = {
            "applied": applied,
            "error": None if done.exit_code == 0 else f"status failed (exit {done.exit_code}): {tail(done.output, 3)}",
            "recorded": [{k: row[k] for k in ("name", "phase", "class", "release", "applied_at")}
                         for row in recorded.get(region, [])],
            "pending": [j.to_json() for j in plan.to_run if applied is None or j.name not in applied],
            "waiting": [j.to_json() for j in plan.waiting],
        }
    return {"environment": env, "release": release.id, "regions": out}
