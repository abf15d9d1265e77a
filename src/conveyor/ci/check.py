"""Has a committed pipeline file drifted from the config? Compare it, parsed, with what would be generated now.

Comments (the header) and formatting do not count: two files are the same when they hold the same data.
A difference is named by its path in the document (`deploy_production_ca.rules[1].when`), with both values.
A command that changes hosts without `--yes` is named too: a CI job has no terminal to confirm on, so
Conveyor refuses it (exit 2) and that job can never deploy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from conveyor.ci.pipeline import load_yaml
from conveyor.errors import UsageError

__all__ = ["HOST_CHANGING", "MISSING", "Difference", "FileCheck", "Unconfirmed", "check_file", "compare",
           "read_pipeline_file", "unconfirmed_commands"]

HOST_CHANGING = ("deploy", "rollback", "converge")  # the commands that ask for confirmation unless --yes
# `[NAME=VALUE ...] [PATH/]conveyor [-c FILE | --config FILE | --config=FILE] COMMAND` where a shell command
# starts (a line is split at ;, &&, || and | first).
_COMMAND = re.compile(r"(?:^|[(!]|\b(?:then|do|else|exec|if|time)\b)\s*(?:[A-Za-z_]\w*=\S*\s+)*(?:\S*/)?conveyor"
                      r"(?:\s+(?:-c\s*|--config[=\s])\s*(?:\"[^\"]*\"|'[^']*'|\S+))*"
                      rf"\s+(?P<command>{'|'.join(HOST_CHANGING)})(?=\s|$|;)")
_SEPARATORS = re.compile(r"\s*(?:;|&&|\|\||\|)\s*")
_CONFIRMED = re.compile(r"(?:^|\s)(?:--yes|-y)(?=\s|$|;)")
_SCRIPT_KEYS = frozenset({"script", "before_script", "after_script", "run"})


class _Missing:
    """The value on the side of a comparison that does not have the key."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Difference:
    """One place where the committed file and the generated one disagree."""

    path: str
    committed: Any    # MISSING when only the generated file has it
    generated: Any    # MISSING when only the committed file has it

    @property
    def change(self) -> Literal["missing", "extra", "changed"]:
        """missing from the file, extra in the file, or changed."""
        if self.committed is MISSING:
            return "missing"
        if self.generated is MISSING:
            return "extra"
        return "changed"

    def describe(self) -> str:
        """One line for a person."""
        if self.change == "missing":
            what = "" if isinstance(self.generated, dict) else f" (the config gives {_show(self.generated)})"
            return f"{self.path}: missing from the file{what}"
        if self.change == "extra":
            what = "" if isinstance(self.committed, dict) else f" ({_show(self.committed)})"
            return f"{self.path}: in the file{what} but not generated from the config"
        if _scalar_list(self.committed) and _scalar_list(self.generated):
            return f"{self.path}: {_list_change(self.committed, self.generated)}"
        return f"{self.path}: the file has {_show(self.committed)}, the config gives {_show(self.generated)}"

    def to_json(self) -> dict[str, Any]:
        """The difference as a JSON-ready mapping (a side that lacks the key is null)."""
        return {
            "path": self.path,
            "change": self.change,
            "file": None if self.committed is MISSING else self.committed,
            "generated": None if self.generated is MISSING else self.generated,
        }


@dataclass(frozen=True)
class Unconfirmed:
    """A command in a committed file that changes hosts without `--yes`: refused in CI (no terminal)."""

    path: str         # where the script is, like `deploy_production_ca.script[0]`
    command: str      # the shell line, as the file has it

    def describe(self) -> str:
        """One line for a person."""
        return (f"{self.path}: `{self.command}` changes hosts without --yes: with no terminal to confirm on, "
                "conveyor refuses it (exit 2), so this job can never deploy")

    def to_json(self) -> dict[str, str]:
        """The finding as a JSON-ready mapping."""
        return {"path": self.path, "command": self.command}


def _shell_lines(script: str) -> list[str]:
    """A script's lines, continuation lines (a trailing backslash) joined."""
    lines: list[str] = []
    pending = ""
    for line in script.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((pending + line).strip())
        pending = ""
    if pending:
        lines.append(pending.strip())
    return lines


def _unconfirmed(line: str) -> bool:
    """Whether one of a shell line's commands (split at ;, &&, ||, |) changes hosts without --yes."""
    return any(_COMMAND.search(part) and not _CONFIRMED.search(part) for part in _SEPARATORS.split(line))


def unconfirmed_commands(document: Any, path: str = "") -> list[Unconfirmed]:
    """Every script line of a pipeline document that runs `conveyor deploy|rollback|converge` without --yes."""
    found: list[Unconfirmed] = []
    if isinstance(document, dict):
        for key, value in document.items():
            where = f"{path}.{key}" if path else str(key)
            if key in _SCRIPT_KEYS:
                items = value if isinstance(value, list) else [value]
                for index, item in enumerate(items):
                    if not isinstance(item, str):
                        continue
                    spot = f"{where}[{index}]" if isinstance(value, list) else where
                    found += [Unconfirmed(spot, line) for line in _shell_lines(item) if _unconfirmed(line)]
            else:
                found += unconfirmed_commands(value, where)
    elif isinstance(document, list):
        for index, item in enumerate(document):
            found += unconfirmed_commands(item, f"{path}[{index}]")
    return found


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one file."""

    file: str
    kind: Literal["gitlab", "github"]
    differences: tuple[Difference, ...]
    unconfirmed: tuple[Unconfirmed, ...] = ()   # host-changing commands without --yes (part of the drift)

    @property
    def equal(self) -> bool:
        """Whether the file holds exactly what would be generated."""
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        """The verdict as a JSON-ready mapping."""
        return {"file": self.file, "kind": self.kind, "equal": self.equal,
                "differences": [d.to_json() for d in self.differences],
                "unconfirmed": [u.to_json() for u in self.unconfirmed]}


def _show(value: Any, limit: int = 100) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _list_change(committed: list[Any], generated: list[Any]) -> str:
    """How a list of plain values (needs, stages, options) changed: what is missing, what is extra."""
    missing = [item for item in generated if item not in committed]
    extra = [item for item in committed if item not in generated]
    if not missing and not extra:
        return f"in another order in the file; the config gives {_show(generated)}"
    parts = []
    if missing:
        parts.append(f"missing from the file: {', '.join(_show(item) for item in missing)}")
    if extra:
        parts.append(f"in the file only: {', '.join(_show(item) for item in extra)}")
    return "; ".join(parts)


def _scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(item, dict | list) for item in value)


def compare(committed: Any, generated: Any, path: str = "") -> list[Difference]:
    """Every difference between two parsed documents, in the generated document's order."""
    if isinstance(committed, dict) and isinstance(generated, dict):
        found: list[Difference] = []
        for key in [*generated, *(k for k in committed if k not in generated)]:
            where = f"{path}.{key}" if path else str(key)
            found += compare(committed.get(key, MISSING), generated.get(key, MISSING), where)
        return found
    # Lists of plain values (stages, needs) read best whole; lists of mappings (rules, steps) item by item.
    if isinstance(committed, list) and isinstance(generated, list) and not (
            _scalar_list(committed) and _scalar_list(generated)):
        found = []
        for index in range(max(len(committed), len(generated))):
            found += compare(committed[index] if index < len(committed) else MISSING,
                             generated[index] if index < len(generated) else MISSING, f"{path}[{index}]")
        return found
    if committed is MISSING and generated is MISSING:
        return []
    if type(committed) is not type(generated) or committed != generated:
        return [Difference(path, committed, generated)]
    return []


def read_pipeline_file(path: Path, shown: str) -> Any:
    """A committed pipeline file, parsed; UsageError (exit 2) when it is missing or not a YAML mapping."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{shown}: no such file (write it with `conveyor ci gitlab -o FILE` or "
                         "`conveyor ci github -o FILE`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{shown}: cannot be read: {exc}") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark is not None else shown
        problem = getattr(exc, "problem", None) or str(exc)
        raise UsageError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{shown}: expected a mapping of jobs and settings, got "
                         f"{'nothing' if data is None else type(data).__name__}")
    return data


def check_file(path: Path, shown: str, kind: Literal["gitlab", "github"], generated_text: str) -> FileCheck:
    """Compare the file at `path` with the text the generator gives now."""
    committed = read_pipeline_file(path, shown)
    return FileCheck(shown, kind, tuple(compare(committed, load_yaml(generated_text))),
                     tuple(unconfirmed_commands(committed)))
