"""The `conveyor` command: global options, error handling, and the command groups."""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from dataclasses import asdict
from typing import Any, NoReturn

import typer

from conveyor.errors import ConfigError, ConveyorError

app = typer.Typer(
    name="conveyor",
    help="Configuration-driven continuous deployment: atomic switches, rolling batches, regions and waves.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed

        try:
            number = installed("conveyor-deploy")
        except PackageNotFoundError:  # run from a source tree that was never installed
            number = "unknown (not installed)"
        print(f"conveyor {number}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: str | None = typer.Option(None, "-c", "--config", envvar="CONVEYOR_CONFIG",
                                      help="Config file (default ./conveyor.yml).", metavar="FILE"),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    """Conveyor ships releases of an application to fleets of servers, safely, many times a day."""
    ctx.obj = {"config": config, "json": False}


def _register() -> None:
    from conveyor.cli import configuring, consistency, database, demo, deploying, inspecting, locking

    for module in (configuring, deploying, inspecting, consistency, locking, database, demo):
        module.register(app)
    from conveyor.cli import flagging, pipelines, reporting, serving

    pipelines.register(app)
    flagging.register(app)
    reporting.register(app)
    serving.register(app)


_register()


def run() -> NoReturn:
    """The `conveyor` command: `main`, then out of the process without tearing the interpreter down.

    Tearing down a process that loaded SQLAlchemy, pydantic and asyncssh (clearing ~2,000 modules, a last
    garbage collection) takes 0.1-0.15 s after everything is done and said: a rollback to 100 hosts spends
    5% of its time there. So once `main` has finished, the exit handlers run as at any exit (logging's
    flush, weakref finalizers, temporary files), the output is flushed, and the process ends with its code.
    If a thread that is not a daemon is still running, the interpreter's own exit waits for it as ever."""
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)  # type: ignore[arg-type]  # whatever SystemExit carried, as it carried it
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what the interpreter does with sys.exit("a message")
        code = 1
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 141
    os._exit(code or 0)


def main(argv: list[str] | None = None) -> None:
    """Run the app; turn every user error into a message and its exit code (tests call it in-process)."""
    from conveyor.secrets import MaskingStream, register_url

    # One masking path for all text: whatever any module prints passes through the mask.
    if not isinstance(sys.stdout, MaskingStream):
        sys.stdout = MaskingStream(sys.stdout)
    if not isinstance(sys.stderr, MaskingStream):
        sys.stderr = MaskingStream(sys.stderr)
    for name in ("CONVEYOR_STATE_URL", "CONVEYOR_DATABASE_URL"):
        if os.environ.get(name):
            register_url(os.environ[name])
    try:
        _main(argv)
    except BrokenPipeError:
        # The reader went away (`conveyor history | head`): nothing more can be printed, and that is no error
        # of ours to report. Point stdout at /dev/null so the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)


def _main(argv: list[str] | None) -> None:
    wants_json = "--json" in (argv if argv is not None else sys.argv[1:])
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except ConfigError as exc:
        _fail(str(exc), exc.exit_code, wants_json, problems=[asdict(p) for p in exc.problems])
    except ConveyorError as exc:
        _fail(str(exc), exc.exit_code, wants_json, getattr(exc, "result", None))
    except KeyboardInterrupt:
        _fail("interrupted", 130, wants_json)
    except Exception as exc:
        # Typer's command-line errors (its own or click's, by version): usage errors, aborts, exits.
        _command_line_error(exc, wants_json)
        raise
    sys.exit(0)


def _command_line_error(exc: Exception, wants_json: bool) -> None:
    """Turn click-style exceptions into their message and exit code; return for anything else."""
    name = type(exc).__name__
    code = getattr(exc, "exit_code", None)
    if name == "Abort":
        _fail("aborted", 1, wants_json)
    if not isinstance(code, int):
        return
    show = getattr(exc, "show", None)
    if show is None:  # an Exit carrying a code
        sys.exit(code)
    if wants_json:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _fail(message, code, True)
    show()
    sys.exit(code)


def _fail(message: str, code: int, wants_json: bool, result: Any = None,
          problems: list[dict[str, Any]] | None = None) -> None:
    from conveyor.secrets import mask, mask_json

    message = mask(message)
    if wants_json:
        doc: dict[str, Any] = {"error": message, "exit_code": code}
        if problems is not None:  # each config problem on its own: {file, line, path, message}
            doc["problems"] = [{k: mask(v) if isinstance(v, str) else v for k, v in p.items()} for p in problems]
        if result is not None and hasattr(result, "to_json"):
            doc["result"] = result.to_json()
        print(json.dumps(mask_json(json.loads(json.dumps(doc, default=str))), indent=2))
    for line in message.splitlines() or [""]:
        print(f"conveyor: {line}" if code != 2 or not _is_config_line(line) else line, file=sys.stderr)
    sys.exit(code)


def _is_config_line(line: str) -> bool:
    # Config problems are printed as `FILE:LINE: path: message`, ready for editors to jump to.
    head = line.split(": ", 1)[0]
    return ":" in head or head.endswith((".yml", ".yaml"))
