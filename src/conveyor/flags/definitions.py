"""Flag definitions: a file in flagd's flag-definition format (JSON, or YAML converted), validated against
Conveyor's schema (schema.json, by the jsonschema package) and then for what a schema cannot say (the default
variant and the variants a rollout names exist). Every problem is reported at once, `FILE:LINE: path: message`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from conveyor.errors import ConfigError, ConfigProblem

__all__ = ["Flag", "FlagSet", "load_flags", "parse_flags", "schema"]

Loc = tuple[str | int, ...]
# Conveyor's own keys on a flag: they decide how a change goes out and are never written to a host.
OWN_KEYS = ("requires", "requires_release", "contract", "window")


@dataclass(frozen=True)
class Flag:
    """One flag as the file defines it."""

    key: str
    state: str                                  # ENABLED | DISABLED
    variants: Mapping[str, Any]
    default_variant: str
    targeting: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    requires_migration: str | None = None       # switched on only where this migration is applied
    requires_release: str | None = None         # ... and where every host runs this release or a later one
    contract: str | None = None                 # the contract migration refused while this flag is off anywhere
    windowed: bool = True                       # False: may change while the deploy window is closed (audited)

    @property
    def off_variant(self) -> str:
        """The variant that means "off": a boolean flag's false one, else the file's default variant."""
        for name, value in self.variants.items():
            if value is False:
                return name
        return self.default_variant

    def is_on(self, variant: str) -> bool:
        """Whether serving `variant` counts as switching this flag on."""
        return variant != self.off_variant

    def flagd(self) -> dict[str, Any]:
        """The definition as flagd reads it (Conveyor's own keys left out)."""
        out: dict[str, Any] = {"state": self.state, "variants": dict(self.variants),
                               "defaultVariant": self.default_variant}
        if self.targeting:
            out["targeting"] = dict(self.targeting)
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True)
class FlagSet:
    """Every flag of a definitions file, with its shared evaluators and metadata."""

    file: str
    flags: Mapping[str, Flag]
    evaluators: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema flag files are validated against (conveyor/flags/schema.json)."""
    text = (resources.files("conveyor.flags") / "schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def load_flags(path: Path, shown: str | None = None) -> FlagSet:
    """Read and validate a definitions file; ConfigError (exit 2) with every problem and its line."""
    name = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(name, None, "", "no such flag file (flags.file in conveyor.yml)")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(name, None, "", "is not UTF-8 text")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(name, None, "", f"cannot be read: {exc.strerror}")]) from None
    return parse_flags(text, name)


def parse_flags(text: str, filename: str) -> FlagSet:
    """Validate definitions text (JSON when the name ends in .json, YAML otherwise)."""
    data, lines = _read(text, filename)
    problems = [ConfigProblem(filename, _line(loc, lines), _dotted(loc), message)
                for loc, message in _schema_problems(data)]
    if not problems:
        problems = [ConfigProblem(filename, _line(loc, lines), _dotted(loc), message)
                    for loc, message in _meaning_problems(data)]
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.line or 0, p.path)))
    flags = {key: _flag(key, body) for key, body in data["flags"].items()}
    return FlagSet(filename, flags, dict(data.get("$evaluators") or {}), dict(data.get("metadata") or {}))


def _flag(key: str, body: dict[str, Any]) -> Flag:
    requires = body.get("requires") or {}
    release = body.get("requires_release")
    return Flag(key=key, state=body["state"], variants=dict(body["variants"]), default_variant=body["defaultVariant"],
                targeting=body.get("targeting") or None, metadata=dict(body.get("metadata") or {}),
                requires_migration=requires.get("migration"),
                requires_release=release.removeprefix(">=").strip() if release else None,
                contract=body.get("contract"), windowed=body.get("window", True))


def _read(text: str, filename: str) -> tuple[Any, dict[Loc, int]]:
    """The document and the line of every path in it."""
    lines: dict[Loc, int] = {}
    node: yaml.Node | None = None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        if not filename.endswith(".json"):
            line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
            raise ConfigError([ConfigProblem(filename, line, "", f"YAML error: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(filename, 1, "", f"YAML error: {exc}")]) from None
    problems: list[ConfigProblem] = []
    if filename.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError([ConfigProblem(filename, exc.lineno, "", f"JSON error: {exc.msg}")]) from None
        if node is not None:
            _walk(node, (), lines, problems, filename)
        return data, lines
    if node is None:
        raise ConfigError([ConfigProblem(filename, 1, "", "the file is empty: expected {flags: {...}}")])
    data = _walk(node, (), lines, problems, filename)
    if problems:
        raise ConfigError(problems)
    return data, lines


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[ConfigProblem], filename: str) -> Any:
    """Plain data from a YAML node, noting each path's line; keys must be strings (YAML reads on/off/yes/no
    unquoted as booleans, a classic trap in variant names)."""
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader("").construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                problems.append(ConfigProblem(filename, key_node.start_mark.line + 1, _dotted(loc),
                                              f"key {key_node.value!r} is read as {type(key).__name__}, not text: "
                                              "quote it (YAML reads on/off/yes/no as booleans)"))
                continue
            if key in out:
                problems.append(ConfigProblem(filename, key_node.start_mark.line + 1, _dotted((*loc, key)),
                                              f"duplicate key {key!r}"))
            lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _walk(value_node, (*loc, key), lines, problems, filename)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*loc, i), lines, problems, filename) for i, item in enumerate(node.value)]
    return yaml.SafeLoader("").construct_object(node)


def _schema_problems(data: Any) -> Iterator[tuple[Loc, str]]:
    validator = jsonschema.Draft202012Validator(schema())
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        loc: Loc = tuple(error.absolute_path)
        if error.validator == "anyOf" and loc and loc[-1] == "variants":
            yield loc, "variants must all be booleans, all text, all numbers or all objects"
        elif error.validator == "pattern" and loc and loc[-1] == "requires_release":
            yield loc, f"expected \">= RELEASE_ID\" (like \">= 20260101T120000Z-abc1234\"), got {error.instance!r}"
        elif error.validator == "pattern":  # the other patterns are on names (flags, variants)
            yield loc, f"{error.instance!r} is not a usable name (letters, digits, '.', '_', '-')"
        elif error.validator == "enum":
            yield loc, f"expected one of {', '.join(map(str, error.validator_value))}, got {error.instance!r}"
        else:
            yield loc, error.message


def _meaning_problems(data: dict[str, Any]) -> Iterator[tuple[Loc, str]]:
    evaluators = data.get("$evaluators") or {}
    for key, body in data["flags"].items():
        variants = body["variants"]
        if body["defaultVariant"] not in variants:
            yield ("flags", key, "defaultVariant"), (f"{body['defaultVariant']!r} is not one of its variants "
                                                     f"({', '.join(variants)})")
        for loc, name in _targeted(body.get("targeting"), ("flags", key, "targeting")):
            if name not in variants:
                yield loc, f"variant {name!r} is not one of {key}'s variants ({', '.join(variants)})"
        for loc, ref in _refs(body.get("targeting"), ("flags", key, "targeting")):
            if ref not in evaluators:
                yield loc, f"no evaluator {ref!r} under $evaluators"


def _targeted(rule: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """The variants a fractional rule names (["variant", weight] buckets), anywhere in a targeting rule."""
    if isinstance(rule, dict):
        for op, args in rule.items():
            if op == "fractional" and isinstance(args, list):
                for i, bucket in enumerate(args):
                    if isinstance(bucket, list) and bucket and isinstance(bucket[0], str):
                        yield (*loc, op, i, 0), bucket[0]
            else:
                yield from _targeted(args, (*loc, op))
    elif isinstance(rule, list):
        for i, item in enumerate(rule):
            yield from _targeted(item, (*loc, i))


def _refs(rule: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(rule, dict):
        for op, args in rule.items():
            if op == "$ref" and isinstance(args, str):
                yield (*loc, op), args
            else:
                yield from _refs(args, (*loc, op))
    elif isinstance(rule, list):
        for i, item in enumerate(rule):
            yield from _refs(item, (*loc, i))


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def _line(loc: Loc, lines: dict[Loc, int]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())
