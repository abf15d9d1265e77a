"""The artifact package's imports: no cycle between its modules, and the store interface knows no store.

Every import counts, at the top of a module, inside a function or under TYPE_CHECKING, so a cycle cannot hide
behind a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import conveyor.artifact

PACKAGE = "conveyor.artifact"
ROOT = Path(conveyor.artifact.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join((PACKAGE, *parts[:-1])) if parts[-1] == "__init__" else ".".join((PACKAGE, *parts))


def imported(path: Path, modules: set[str]) -> set[str]:
    """The modules of the package that `path` imports (`from package import name` counts as the module
    `name` when there is one, else as the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return found & modules


def graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in ROOT.rglob("*.py")}
    modules = set(paths)
    return {name: imported(path, modules) - {name} for name, path in paths.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle found by a depth-first walk, as the modules along it."""
    found: list[list[str]] = []
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> None:
        if name in path:
            found.append([*path[path.index(name):], name])
            return
        if name in done:
            return
        for target in sorted(edges[name]):
            walk(target, [*path, name])
        done.add(name)

    for name in sorted(edges):
        walk(name, [])
    return found


def test_the_graph_sees_the_store_modules_and_their_imports() -> None:
    edges = graph()
    assert "conveyor.artifact.s3.store" in edges
    assert {"conveyor.artifact.store", "conveyor.artifact.s3.client"} <= edges["conveyor.artifact.s3.store"]


def test_a_cycle_is_found_when_there_is_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_artifact_modules_import_one_another_without_a_cycle() -> None:
    edges = graph()
    edges.pop(PACKAGE)  # the package's __init__ re-exports its modules; none of them imports it
    assert [name for name, targets in edges.items() if PACKAGE in targets] == []
    assert cycles(edges) == []


def test_the_store_interface_and_the_pointer_document_know_no_store() -> None:
    edges = graph()
    stores = {"conveyor.artifact.store", "conveyor.artifact.s3", "conveyor.artifact.s3.store"}
    assert edges["conveyor.artifact.base"] & stores == set()
    assert edges["conveyor.artifact.pointers"] & stores == set()
