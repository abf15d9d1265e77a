"""db: schema migrations. `db lint` judges SQL files before they run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from conveyor.cli.options import ConfigOption, JsonOption, print_json, stdout, workspace
from conveyor.errors import UsageError

db = typer.Typer(name="db", help="Schema migrations: judge them before they run.", no_args_is_help=True,
                 context_settings={"help_option_names": ["-h", "--help"]})


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.add_typer(db, name="db")


@db.command("lint")
def lint(
    ctx: typer.Context,
    files: list[str] | None = typer.Argument(None, help="SQL files or directories of them (default: the "
                                             "config's migrations.dir).", metavar="FILES"),
    dialect: str | None = typer.Option(None, "--dialect", help="mysql, mariadb or postgresql (default: the "
                                       "config's migrations.dialect, else the --database server's, else mysql)."),
    version: str | None = typer.Option(None, "--version", help="The server's version, like 8.0.35 or 10.11 "
                                       "(default: the config's migrations.version, else the --database server's)."),
    phase: str | None = typer.Option(None, "--phase", help="Judge every file as expand or contract (default: "
                                     "as each file is marked)."),
    transaction: str | None = typer.Option(None, "--transaction", help="per-file (your tool runs each file in one "
                                           "transaction) or none (default: the config's migrations.transaction, "
                                           "else per-file for postgresql, none for mysql and mariadb)."),
    database: str | None = typer.Option(None, "--database", envvar="CONVEYOR_DATABASE_URL", metavar="URL",
                                        help="Also read the live schema (read-only) from this database: "
                                        "postgresql://, mysql:// or mariadb:// user:password@host:port/db "
                                        "(PostgreSQL: ?schema=NAME; MySQL, MariaDB: ?unix_socket=PATH)."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Judge migrations: safe, needs-window (only inside the migration window) or breaking (contract only).

    With --database, a column the files did not create is judged by what the live database says it is.

    Exit 0: nothing blocks. 1: something would (breaking in expand, or needs-window). 2: usage error.
    """
    from conveyor.migrations.lint import (
        check_dialect,
        check_phase,
        check_transaction,
        document,
        judge_file,
        sql_files,
    )
    from conveyor.migrations.sqlschema import Schema

    # The config is read for what the command line leaves out: FILES, or the dialect.
    settings = _migrations_settings(ctx, config, required=not files) if not files or dialect is None else None
    requested = dialect or (settings.dialect if settings else None)
    if requested:
        requested = check_dialect(requested)
    version = version if version is not None else (settings.version if settings else None)
    forced = check_phase(phase) if phase else None
    targets: list[tuple[Path, str]] = []
    if files:
        sources = [(Path(arg), arg) for arg in files]
    else:
        assert settings is not None  # required without FILES: _migrations_settings raised otherwise
        sources = [(_migrations_dir(ctx, config, settings), settings.dir)]
    for path, arg in sources:
        if path.is_dir():
            targets += [(p, (Path(arg) / p.relative_to(path)).as_posix()) for p in sql_files(path)]
        elif path.is_file():
            targets.append((path, arg))
        else:
            raise UsageError(f"{arg}: no such file or directory")
    live = None
    if database:
        from conveyor.migrations.live import read_database

        # The live schema first, then the files in order; the server's dialect and version fill in what
        # neither the command line nor the config says.
        live = read_database(database, requested)
    chosen = check_dialect(requested or (live.dialect if live else "mysql"))
    if version is None and live is not None and live.dialect == chosen:
        version = live.version
    schema = live.schema if live is not None else Schema()
    wrapping = transaction if transaction is not None else (settings.transaction if settings else None)
    wrapping = check_transaction(wrapping, chosen)
    verdicts = [judge_file(path, chosen, version, forced, name=name, schema=schema, transaction=wrapping)
                for path, name in targets]
    blocking = [(v, f) for v in verdicts for f in v.blocking()]
    if as_json:
        doc = document(verdicts)
        if live is not None:
            doc["database"] = live.to_json()
        print_json(doc)
    else:
        if live is not None:
            tables = len(live.schema.tables)
            server = f"{live.dialect} {live.version}" if live.version else live.dialect
            print(f"{live.url}: live schema of {live.location} read: {tables} table{'' if tables == 1 else 's'} "
                  f"({server})")
        _render(verdicts, blocking)
    if blocking:
        raise typer.Exit(1)


def _render(verdicts: list[Any], blocking: list[tuple[Any, Any]]) -> None:
    """One line per finding, `FILE:LINE: class rule: message (hint)`, then what it means."""
    noted: set[str] = set()
    for verdict in verdicts:
        for note in verdict.notes:
            if note.rule in noted:
                continue  # squawk-missing once, not once per file
            noted.add(note.rule)
            print(f"{verdict.path}:{note.line}: note {note.rule}: {note.message}"
                  + (f" ({note.hint})" if note.hint else ""))
        for finding in verdict.findings:
            allowed = " [allowed: contract migration]" if finding.cls == "breaking" and finding.allowed else ""
            print(f"{verdict.path}:{finding.line}: {finding.cls} {finding.rule}: {finding.message}"
                  + (f" ({finding.hint})" if finding.hint else "") + allowed)
    statements = sum(len(v.statements) for v in verdicts)
    files = f"{len(verdicts)} file{'' if len(verdicts) == 1 else 's'}, {statements} statement" \
            f"{'' if statements == 1 else 's'}"
    if not blocking:
        print(f"{files}: nothing blocks")
        return
    breaking = sum(1 for _, f in blocking if f.cls == "breaking")
    window = sum(1 for _, f in blocking if f.cls == "needs-window")
    parts = []
    if breaking:
        parts.append(f"{breaking} breaking in expand migrations (refused until they move to a contract migration)")
    if window:
        parts.append(f"{window} need{'s' if window == 1 else ''} the migration window (they run only inside "
                     "migration_window)")
    print(f"{files}: blocked: {'; '.join(parts)}")


def _migrations_settings(ctx: typer.Context, config: str | None, *, required: bool) -> Any:
    """The config's `migrations:` section; None when there is no config (and none is required)."""
    from conveyor.config.loader import config_path, load_config

    explicit = config or (ctx.find_root().obj or {}).get("config")
    if not required and not explicit and not config_path(None).is_file():
        return None
    loaded = load_config(explicit)
    settings = loaded.config.migrations
    if settings is None and required:
        raise UsageError("no FILES given, and the config has no migrations: section (dir, dialect) to lint")
    return settings


def _migrations_dir(ctx: typer.Context, config: str | None, settings: Any) -> Path:
    """migrations.dir, relative to the config's directory."""
    from conveyor.config.loader import config_path

    explicit = config or (ctx.find_root().obj or {}).get("config")
    directory: str = settings.dir
    return config_path(explicit).resolve().parent / directory


def _not_configured(environment: str) -> dict[str, Any]:
    """`db status --json` for a config without migrations: the configured document's keys, empty, and
    `configured: false` to tell it apart."""
    return {"environment": environment, "configured": False, "release": None, "regions": {},
            "message": "no migrations configured"}


@db.command("status")
def status(
    ctx: typer.Context,
    environment: str = typer.Argument(..., help="The environment whose databases to ask."),
    release: str | None = typer.Option(None, "--release", help="Judge what this release would run "
                                       "(default: the newest built)."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Per region: the migrations its database says are applied, and those the release would run, judged.

    A config without `migrations:` has nothing to ask: it says so and exits 0, so a script or a pipeline may
    ask it of any app.
    """
    from conveyor.operations.deploy import resolve_release
    from conveyor.operations.migrations import schema_status

    ws = workspace(ctx, config)
    try:
        ws.environment(environment)
        if ws.config.migrations is None:
            document = None
        else:
            document = schema_status(ws, environment, resolve_release(ws, release))
    finally:
        ws.close()
    if document is None:
        if as_json:
            print_json(_not_configured(environment))
        else:
            stdout().print(f"{environment}: no migrations configured (the config has no migrations: section)",
                           markup=False)
        return
    if as_json:
        print_json(document)
    else:
        out = stdout()
        out.print(f"{environment}: migrations for {document['release']}", markup=False)
        for region, entry in document["regions"].items():
            if entry["error"]:
                out.print(f"  {region}: {entry['error']}", markup=False)
                continue
            out.print(f"  {region}: {len(entry['applied'])} applied", markup=False)
            for item in entry["pending"]:
                out.print(f"    pending {item['name']} ({item['phase']}, {item['class']})", markup=False)
            for item in entry["waiting"]:
                out.print(f"    waiting {item['name']} (contract: until every region runs it)", markup=False)
    if any(entry["error"] for entry in document["regions"].values()):
        raise typer.Exit(1)
