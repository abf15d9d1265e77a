"""The demo's run: build and deploy two releases through staging and production, roll a region back.

The command line (cli/demo.py) gives it a console and the subscribers that show the deployments.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from conveyor.demo import fleet
from conveyor.engine.events import Subscriber
from conveyor.errors import DeploymentFailed, PromotionRefused, UsageError
from conveyor.operations.workspace import Workspace


def run_demo(directory: Path, console: Console, show: Sequence[Subscriber]) -> None:
    """The whole demo, told on `console`, each deployment's events given to `show`; raises DeploymentFailed
    or another ConveyorError if a step goes wrong."""
    from conveyor.operations.deploy import Request, deploy, rollback
    from conveyor.operations.release import build
    from conveyor.operations.status import history, status
    from conveyor.state.store import default_url

    if directory.exists() and any(directory.iterdir()) and not (directory / fleet.MARKER).exists():
        raise UsageError(f"{directory} exists and was not made by `conveyor demo`; choose another --dir")
    if directory.exists():
        shutil.rmtree(directory)
    fleet.write(directory, "1.0.0")
    # The demo's own store, beside its config: never the one CONVEYOR_STATE_URL names.
    ws = Workspace.load(directory / "conveyor.yml", state_url=default_url(directory.resolve()))

    def step(text: str) -> None:
        console.print(Rule(text, style="cyan"))

    def ok(result_status: str, what: str) -> None:
        if result_status != "succeeded":
            raise UsageError(f"demo step failed: {what} ended {result_status}")

    try:
        step("1. build release 1 (version 1.0.0)")
        first, _ = build(ws)
        console.print(f"built {first.id}: {first.files} files, {first.size} bytes, sha256 {first.sha256[:16]}…")

        step("2. deploy release 1 to staging, then promote it to production (waves: za, then uk + us)")
        ok(deploy(ws, Request("staging", release=first.id), subscribers=show).status, "staging deploy")
        ok(deploy(ws, Request("production", release=first.id), subscribers=show).status, "production deploy")

        step("3. build release 2 (version 1.1.0) and try production first: promotion refuses it")
        fleet.set_version(directory, "1.1.0")
        second, _ = build(ws)
        console.print(f"built {second.id}")
        try:
            deploy(ws, Request("production", release=second.id), subscribers=show)
        except PromotionRefused as exc:
            console.print(f"held (exit {exc.exit_code}): {exc}", style="yellow", markup=False)
        else:
            # The demo shows the promotion gate at work; a release that reaches production untested is a bug.
            raise DeploymentFailed(f"promotion let {second.id} into production before staging ran it")

        step("4. release 2 through staging, then production in waves")
        ok(deploy(ws, Request("staging", release=second.id), subscribers=show).status, "staging deploy")
        ok(deploy(ws, Request("production", release=second.id), subscribers=show).status, "production deploy")

        step("5. roll production uk back to release 1 (still on the hosts: nothing is sent)")
        ok(rollback(ws, Request("production", regions=["uk"]), subscribers=show).status, "rollback")

        step("6. status, read from every host")
        for env, doc in status(ws, verify=True)["environments"].items():
            for region, entry in doc["regions"].items():
                mark = "consistent" if entry["consistent"] else "MIXED"
                console.print(f"  {env:<11} {region:<4} {entry['release'] or '-':<28} "
                              f"{len(entry['hosts'])} hosts  {mark}")

        step("7. history")
        for d in history(ws, limit=10)["deployments"]:
            console.print(f"  #{d['id']:<3} {d['environment']:<11} {','.join(d['regions']):<9} {d['kind']:<8} "
                          f"{d['release'] or '-':<28} {d['status']}")
        console.print(f"\nThe fleet is in {directory}/.conveyor/hosts; try "
                      f"`conveyor -c {directory}/conveyor.yml status --verify`.")
        console.print(f"See this history in a browser: `{serve_command(directory)}`, then open "
                      "http://127.0.0.1:8077/", markup=False)
    finally:
        ws.close()


def serve_command(directory: Path) -> str:
    """The command that serves the demo's dashboard (its config says `web.public`, so no sign-in is needed)."""
    return f"conveyor -c {shlex.quote(str(directory / 'conveyor.yml'))} serve"
