"""Load `conveyor.yml`: YAML with line numbers, `${VAR}` substitution, every error at once."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from conveyor.config.models import Config
from conveyor.config.semantics import cross_check
from conveyor.errors import ConfigError, ConfigProblem
from conveyor.secrets import register_secret

Path_ = tuple[str | int, ...]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class LoadedConfig:
    """A validated config and where it came from."""

    config: Config
    path: Path
    lines: dict[Path_, int] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        """The config file's directory: relative paths in the config are relative to it."""
        return self.path.parent


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (a common copy-paste mistake)."""


def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int], problems: list[tuple[Path_, int, str]],
               env: dict[str, str]) -> Any:
    """Python data from a composed YAML node, recording the line of every path."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _LineLoader.construct_scalar(_LOADER, key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or not isinstance(key, str):
                problems.append((path, key_node.start_mark.line + 1, "keys must be plain strings"))
                continue
            if key == "<<":
                problems.append((path, key_node.start_mark.line + 1, "YAML merge keys (<<) are not supported"))
                continue
            child = (*path, key)
            if key in out:
                problems.append((child, key_node.start_mark.line + 1, f"duplicate key {key!r}"))
            lines[child] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, child, lines, problems, env)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines, problems, env) for i, item in enumerate(node.value)]
    value = _LOADER.construct_object(node, deep=True)
    if isinstance(value, str) and "$" in value:
        value = _substitute(value, path, node.start_mark.line + 1, problems, env)
    return value


def _substitute(text: str, path: Path_, line: int, problems: list[tuple[Path_, int, str]],
                env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            problems.append((path, line, f"environment variable {name} is not set"))
            return ""
        register_secret(env[name])
        return env[name]

    return _VAR.sub(replace, text)


_LOADER = _LineLoader("")


def _format_loc(loc: Path_) -> str:
    return ".".join(str(part) for part in loc)


def _line_for(loc: Path_, lines: dict[Path_, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _clean_loc(loc: tuple[Any, ...]) -> Path_:
    """Drop pydantic's internal union/function markers from an error location."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and (part.startswith("function-") or part in {"HttpCheck", "CommandCheck"}):
            continue
        out.append(part)
    return tuple(out)


def _message(error: Any) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    elif msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, "):]
    if kind in {"string_type", "int_type", "int_parsing", "bool_type", "list_type", "dict_type", "model_type",
                "float_type", "literal_error", "model_attributes_type"}:
        got = error.get("input")
        if kind in {"model_type", "model_attributes_type", "dict_type"}:
            msg = "expected a mapping"
        elif kind == "list_type":
            msg = "expected a list"
        if got is not None and kind != "literal_error":
            msg += f", got {type(got).__name__} {got!r}" if not isinstance(got, dict | list) else ""
    return msg


def parse_config(text: str, filename: str, env: dict[str, str] | None = None) -> tuple[Config, dict[Path_, int]]:
    """Validate config text; raise ConfigError listing every problem with its line."""
    env = dict(os.environ) if env is None else env
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = f", column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([ConfigProblem(filename, line, "", f"YAML syntax error{column}: {problem}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(filename, None, "", f"YAML error: {exc}")]) from exc
    if node is None:
        raise ConfigError([ConfigProblem(filename, None, "", "the file is empty; `conveyor init` writes a starter")])
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError([ConfigProblem(filename, node.start_mark.line + 1, "",
                                         "expected a mapping of settings (app:, roles:, environments:, ...)")])
    lines: dict[Path_, int] = {}
    raw_problems: list[tuple[Path_, int, str]] = []
    data = _construct(node, (), lines, raw_problems, env)
    problems = [ConfigProblem(filename, line, _format_loc(loc), msg) for loc, line, msg in raw_problems]
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _clean_loc(error["loc"])
            problems.append(ConfigProblem(filename, _line_for(loc, lines), _format_loc(loc), _message(error)))
        raise ConfigError(_dedupe(problems)) from None
    for loc, msg in cross_check(config):
        problems.append(ConfigProblem(filename, _line_for(loc, lines), _format_loc(loc), msg))
    if problems:
        raise ConfigError(_dedupe(problems))
    return config, lines


def _dedupe(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    seen: set[ConfigProblem] = set()
    out = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            out.append(problem)
    return sorted(out, key=lambda p: (p.line or 0, p.path))


def config_path(explicit: str | Path | None) -> Path:
    """The config file to use: the argument, then $CONVEYOR_CONFIG, then ./conveyor.yml."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("CONVEYOR_CONFIG") or "conveyor.yml")


def load_config(explicit: str | Path | None = None) -> LoadedConfig:
    """Read and validate the config file; every user error becomes a ConfigError."""
    path = config_path(explicit)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(shown, None, "", "no such file; `conveyor init` writes a starter")]) from None
    except IsADirectoryError:
        raise ConfigError([ConfigProblem(shown, None, "", "is a directory, not a config file")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(shown, None, "", "is not UTF-8 text")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(shown, None, "", f"cannot be read: {exc.strerror}")]) from None
    config, lines = parse_config(text, shown)
    return LoadedConfig(config=config, path=path.resolve(), lines=lines)
