"""Load `conveyor.yml`: YAML with line numbers, `${VAR}` substitution, every error at once."""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from conveyor.config.models import Config
from conveyor.config.semantics import cross_check
from conveyor.errors import ConfigError, ConfigProblem
from conveyor.secrets import register_secret
from conveyor.values import describe

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


# libyaml (when PyYAML was built with it) composes a large inventory about 8 times faster than PyYAML's own
# parser, with the same nodes and lines; a document it refuses is composed again by PyYAML's parser, whose
# messages are the ones users see.
_FAST_LOADER: type[yaml.CSafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def compose(text: str) -> yaml.Node | None:
    """The YAML document's node tree (None for an empty one); raises yaml.YAMLError as PyYAML's parser does."""
    if _FAST_LOADER is not None:
        try:
            return yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=_LineLoader)


# A real conveyor.yml has hundreds of values, a large one tens of thousands. Aliases (`*name`) re-use a
# node without copying it, so a few lines can nest into billions of values ("billion laughs"): we stop
# expanding long before that and report it instead of hanging.
MAX_NODES = 200_000


class _TooLarge(Exception):
    """The document expands (through aliases) into more values than any config needs."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int], problems: list[tuple[Path_, int, str]],
               env: dict[str, str], budget: list[int]) -> Any:
    """Python data from a composed YAML node, recording the line of every path."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge(node.start_mark.line + 1)
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
                problems.append((child, key_node.start_mark.line + 1,
                                 f"duplicate key {key!r} (first at line {lines[child]})"))
            else:
                lines[child] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, child, lines, problems, env, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines, problems, env, budget) for i, item in enumerate(node.value)]
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


_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "greater_than": ("gt", "must be more than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "less_than": ("lt", "must be less than {}"),
}
_EXPECTED = {
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected text",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}
_NON_EMPTY = {"roles": "define at least one role", "environments": "define at least one environment",
              "regions": "define at least one region"}


def _message(error: Any, loc: Path_) -> str:
    """A plain-words message for one pydantic error: what was expected, and what the file has."""
    kind = error["type"]
    msg = str(error["msg"])
    ctx = error.get("ctx") or {}
    got = error.get("input")
    if kind == "extra_forbidden":
        return "unknown field" + _did_you_mean(loc)
    if kind == "missing":
        return "required field is missing"
    if kind in _BOUNDS:
        key, text = _BOUNDS[kind]
        return f"{text.format(ctx.get(key))}, got {got!r}"
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {describe(got)}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected', 'one of the listed values')}, got {describe(got)}"
    if kind == "too_short":
        return _NON_EMPTY.get(str(loc[-1]) if loc else "", "must not be empty")
    if kind == "string_too_short":
        return "must not be empty"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    if msg.startswith("Input should be "):
        return f"expected {msg[len('Input should be '):]}, got {describe(got)}"
    return msg


def _did_you_mean(loc: Path_) -> str:
    """`; did you mean `keep_releases`?` for an unknown key close to a field known at that place, else ''."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    known = _fields_at(Config, loc[:-1])
    close = difflib.get_close_matches(loc[-1], sorted(known), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _fields_at(annotation: Any, loc: Path_) -> set[str]:
    """The field names (YAML keys) a mapping at `loc` may have, walking the models from `annotation`."""
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return set()
    return {name for model in _models(annotation) for name in _keys(model)}


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can be (through Optional, unions and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation one step below `annotation` at key or index `part`."""
    for model in _models(annotation):
        for name, info in model.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _step(typing.get_args(annotation)[0], part)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _step(arg, part)
            if found is not None:
                return found
        return None
    args = typing.get_args(annotation)
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    if origin in (list, tuple, Sequence) and args:
        return args[0]
    return None


def _yaml_problem(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The line and message for a YAML syntax error, with where the unfinished construct began."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    where = f" at column {mark.column + 1}" if mark else ""
    message = f"YAML syntax error{where}: {exc.problem or exc.context or 'invalid YAML'}"
    context = exc.context_mark
    if exc.problem and exc.context and context is not None:
        started = f"line {context.line + 1}, column {context.column + 1}"
        message += f" ({exc.context} that started at {started})" if context.line + 1 != line else \
            f" ({exc.context} at column {context.column + 1})"
    return line, message


def parse_config(text: str, filename: str, env: dict[str, str] | None = None) -> tuple[Config, dict[Path_, int]]:
    """Validate config text; raise ConfigError listing every problem with its line."""
    env = dict(os.environ) if env is None else env
    try:
        node = compose(text)
    except yaml.MarkedYAMLError as exc:
        line, message = _yaml_problem(exc)
        raise ConfigError([ConfigProblem(filename, line, "", message)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(filename, 1, "", f"YAML error: {exc}")]) from None
    if node is None:
        raise ConfigError([ConfigProblem(filename, 1, "", "the file is empty; `conveyor init` writes a starter")])
    if not isinstance(node, yaml.MappingNode):
        got = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
        raise ConfigError([ConfigProblem(filename, node.start_mark.line + 1, "",
                                         f"expected a mapping of settings (app:, roles:, environments:, ...), "
                                         f"got {got}")])
    lines: dict[Path_, int] = {}
    raw_problems: list[tuple[Path_, int, str]] = []
    try:
        data = _construct(node, (), lines, raw_problems, env, [MAX_NODES])
    except _TooLarge as exc:
        raise ConfigError([ConfigProblem(filename, exc.line, "", f"the document expands to more than {MAX_NODES} "
                                         "values (aliases nested too deep?)")]) from None
    problems = [ConfigProblem(filename, line, _format_loc(loc), msg) for loc, line, msg in raw_problems]
    # A value already reported (an unset ${VAR}) is not reported again for what it turned into.
    reported = {loc for loc, _, _ in raw_problems}
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _clean_loc(error["loc"])
            if any(loc[:len(done)] == done for done in reported):
                continue
            problems.append(ConfigProblem(filename, _line_for(loc, lines), _format_loc(loc), _message(error, loc)))
    # References between sections are checked on the data as written, so that they are reported together
    # with the type errors above rather than only once those are fixed.
    for loc, msg in cross_check(data):
        problems.append(ConfigProblem(filename, _line_for(loc, lines), _format_loc(loc), msg))
    if problems or config is None:
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
