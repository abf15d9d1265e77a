"""ci gitlab, ci github and ci check: pipeline files generated from conveyor.yml, and their drift check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from conveyor.cli.options import ConfigOption, JsonOption, print_json, stderr, stdout
from conveyor.errors import UsageError

if TYPE_CHECKING:
    from conveyor.ci.pipeline import Pipeline

Kind = Literal["gitlab", "github"]
OutputOption = typer.Option(None, "-o", "--output", metavar="FILE",
                            help="Write the file here (creating its directory) instead of printing it.")


def _config_file(ctx: typer.Context, config: str | None) -> Path:
    from conveyor.config.loader import config_path

    root = ctx.find_root().obj or {}
    return config_path(config or root.get("config"))


def _command_names(ctx: typer.Context) -> list[str]:
    """Every command of this conveyor, subcommands as `group command` ("db status")."""
    names: list[str] = []

    def walk(command: object, prefix: str) -> None:
        for name, sub in (getattr(command, "commands", None) or {}).items():
            full = f"{prefix} {name}".strip()
            names.append(full)
            walk(sub, full)

    walk(ctx.find_root().command, "")
    return sorted(names)


def _pipeline(ctx: typer.Context, config: str | None) -> tuple[Pipeline, Path]:
    from conveyor import __version__
    from conveyor.ci.pipeline import build_pipeline, read_config

    path = _config_file(ctx, config)
    loaded, variables = read_config(path)
    # Jobs run from the repository's root, where this command is normally run too.
    name = path.name if path.is_absolute() else path.as_posix()
    pipeline = build_pipeline(loaded, config_name=name, variables=variables, version=__version__,
                              commands=_command_names(ctx))
    return pipeline, path


def _generate(kind: Kind, pipeline: Pipeline, output: str | None) -> str:
    from conveyor.ci import github, gitlab

    if kind == "gitlab":
        return gitlab.generate(pipeline, output=output or gitlab.DEFAULT_OUTPUT)
    return github.generate(pipeline, output=output or github.DEFAULT_OUTPUT)


def _emit(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    target = Path(output)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    stderr().print(f"wrote {output}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the `ci` group to the app."""
    ci = typer.Typer(name="ci", no_args_is_help=True, help="Pipelines: GitLab CI and GitHub Actions files "
                     "generated from conveyor.yml (semi-CD: one click per region or everywhere; full CD where "
                     "auto: true), and the check that they have not drifted.")

    @ci.command("gitlab")
    def gitlab(ctx: typer.Context, output: str | None = OutputOption, config: str | None = ConfigOption) -> None:
        """Print (or write) a .gitlab-ci.yml: build, deploy along the promotion path, per region or everywhere."""
        pipeline, _path = _pipeline(ctx, config)
        _emit(_generate("gitlab", pipeline, output), output)

    @ci.command("github")
    def github(ctx: typer.Context, output: str | None = OutputOption, config: str | None = ConfigOption) -> None:
        """Print (or write) a GitHub Actions workflow (.github/workflows/conveyor.yml) doing the same."""
        pipeline, _path = _pipeline(ctx, config)
        _emit(_generate("github", pipeline, output), output)

    @ci.command("check")
    def check(
        ctx: typer.Context,
        gitlab_file: str | None = typer.Option(None, "--gitlab", metavar="FILE", help="The GitLab CI file to check."),
        github_file: str | None = typer.Option(None, "--github", metavar="FILE", help="The workflow to check."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Compare committed pipeline files with what conveyor.yml gives now (exit 1 and what differs if not).

        A job that would change hosts without --yes (refused with no terminal to confirm on) is named too.
        Default: .gitlab-ci.yml and .github/workflows/conveyor.yml beside the config, whichever exist. Exit 2
        if a file is missing or not YAML.
        """
        from conveyor.ci import github, gitlab
        from conveyor.ci.check import check_file

        pipeline, path = _pipeline(ctx, config)
        targets: list[tuple[Kind, str]] = []
        if gitlab_file:
            targets.append(("gitlab", gitlab_file))
        if github_file:
            targets.append(("github", github_file))
        if not targets:
            beside = path.parent
            defaults: tuple[tuple[Kind, str], ...] = (("gitlab", gitlab.DEFAULT_OUTPUT),
                                                      ("github", github.DEFAULT_OUTPUT))
            for kind, name in defaults:
                if (beside / name).is_file():
                    targets.append((kind, str(beside / name)))
            if not targets:
                raise UsageError(f"no pipeline file beside {path}: neither {beside / gitlab.DEFAULT_OUTPUT} nor "
                                 f"{beside / github.DEFAULT_OUTPUT} exists (give --gitlab FILE or --github FILE)")
        results = [check_file(Path(shown), shown, kind, _generate(kind, pipeline, shown)) for kind, shown in targets]
        if as_json:
            print_json({"equal": all(r.equal for r in results), "files": [r.to_json() for r in results]})
        else:
            out = stdout()
            for result in results:
                if result.equal:
                    out.print(f"{result.file}: matches {pipeline.config_name}", markup=False)
                    continue
                count = len(result.differences)
                out.print(f"{result.file} differs from what `conveyor ci {result.kind}` generates from "
                          f"{pipeline.config_name} ({count} difference{'' if count == 1 else 's'}):", markup=False)
                for difference in result.differences:
                    out.print(f"  {difference.describe()}", markup=False)
                for unconfirmed in result.unconfirmed:
                    out.print(f"  {unconfirmed.describe()}", markup=False)
                out.print(f"regenerate it: conveyor ci {result.kind} -o {result.file}", markup=False)
        if not all(r.equal for r in results):
            raise typer.Exit(1)

    app.add_typer(ci, name="ci")


__all__ = ["register"]
