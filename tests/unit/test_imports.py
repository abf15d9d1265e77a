"""`import conveyor` and the CLI's start-up stay cheap: heavy libraries load where they are used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = {"sqlalchemy", "asyncssh", "boto3", "tarfile", "httpx"}


def modules_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("statement", ["import conveyor", "import conveyor.cli.app"])
def test_importing_does_not_load_the_store_or_the_ssh_stack(statement: str) -> None:
    loaded = {name.split(".")[0] for name in modules_after(statement)}
    assert not (HEAVY & loaded), sorted(HEAVY & loaded)


def test_import_conveyor_loads_nothing_but_itself() -> None:
    loaded = modules_after("import conveyor")
    assert {name for name in loaded if name.startswith("conveyor")} == {"conveyor"}
