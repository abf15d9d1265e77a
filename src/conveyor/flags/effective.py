"""The flags an environment's region sees: the file's definitions, then conveyor.yml's overrides, then the
overrides set by `conveyor flags set/rollout` (kept in the state store), a region's own override winning over
its environment's ('*'). Pure functions: the same inputs give the same document, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.config.flagging import ALL_REGIONS
from conveyor.flags.definitions import Flag, FlagSet

__all__ = ["FLAGD_SCHEMA", "FlagFacts", "Layer", "Overrides", "Resolved", "Setting", "changed_flags", "check_overrides",
           "digest", "document", "encode", "resolve", "set_override", "switched_on"]

FLAGD_SCHEMA = "https://flagd.dev/schema/v0/flags.json"
FILE = "file"


@dataclass(frozen=True)
class Setting:
    """What an override asks for: serve `variant`, to everyone or (with `percent`) to that share of
    evaluations, the others keeping what they had."""

    variant: str
    percent: int | None = None

    def to_json(self) -> str | dict[str, Any]:
        """As stored: the variant alone, or {"variant", "percent"}."""
        return self.variant if self.percent is None else {"variant": self.variant, "percent": self.percent}

    @classmethod
    def from_json(cls, value: Any) -> Setting:
        """The setting stored as `to_json` wrote it."""
        if isinstance(value, dict):
            return cls(str(value["variant"]), None if value.get("percent") is None else int(value["percent"]))
        return cls(str(value))


Overrides = Mapping[str, Mapping[str, Mapping[str, Setting]]]
"""environment → region (or '*') → flag → setting."""


@dataclass(frozen=True)
class Layer:
    """One source of overrides, named as the flags matrix shows it ("conveyor.yml", "flags set")."""

    name: str
    overrides: Overrides


@dataclass(frozen=True)
class Resolved:
    """A flag as one region sees it: the variant served, to what share, and where that comes from."""

    flag: str
    variant: str
    source: str = FILE             # "file", or "LAYER ENV/REGION" ('*' for the whole environment)
    percent: int | None = None     # None: every evaluation (the file's own targeting, if it is from the file)
    rest: str | None = None        # what the others get during a percentage rollout
    state: str = "ENABLED"

    def describe(self) -> str:
        """`on`, `on 25% (else off)`, `off (disabled)`."""
        if self.state == "DISABLED" and self.source == FILE:
            return f"{self.variant} (disabled)"
        if self.percent is not None:
            return f"{self.variant} {self.percent}% (else {self.rest})"
        return self.variant

    def to_json(self) -> dict[str, Any]:
        """As `flags --json` shows it."""
        return {"variant": self.variant, "percent": self.percent, "rest": self.rest, "source": self.source,
                "state": self.state}


def resolve(flags: FlagSet, env: str, region: str, layers: Iterable[Layer]) -> dict[str, Resolved]:
    """Every flag as `env`'s `region` sees it, the last layer's override winning, a region's over '*'."""
    resolved = {key: Resolved(key, flag.default_variant, state=flag.state) for key, flag in flags.flags.items()}
    for layer in layers:
        by_region = layer.overrides.get(env, {})
        for scope in (ALL_REGIONS, region):
            for key, setting in by_region.get(scope, {}).items():
                below = resolved.get(key)
                if below is None:
                    continue  # an unknown flag: check_overrides reports it
                resolved[key] = _apply(below, setting, f"{layer.name} {env}/{scope}")
    return resolved


def _apply(below: Resolved, setting: Setting, source: str) -> Resolved:
    if setting.percent is None or setting.percent >= 100:
        return Resolved(below.flag, setting.variant, source)
    rest = below.rest if below.percent is not None and below.rest is not None else below.variant
    if setting.percent <= 0 or rest == setting.variant:
        return Resolved(below.flag, rest, source)
    return Resolved(below.flag, setting.variant, source, setting.percent, rest)


def document(flags: FlagSet, resolved: Mapping[str, Resolved]) -> dict[str, Any]:
    """The flagd document a host of that region reads (Conveyor's own keys left out)."""
    out: dict[str, Any] = {}
    for key, flag in sorted(flags.flags.items()):
        body = flag.flagd()
        r = resolved[key]
        if r.source != FILE:
            body["state"] = "ENABLED"
            body.pop("targeting", None)
            if r.percent is None:
                body["defaultVariant"] = r.variant
            else:
                assert r.rest is not None
                body["defaultVariant"] = r.rest
                body["targeting"] = {"fractional": [[r.variant, r.percent], [r.rest, 100 - r.percent]]}
        out[key] = body
    doc: dict[str, Any] = {"$schema": FLAGD_SCHEMA, "flags": out}
    if flags.evaluators:
        doc["$evaluators"] = dict(flags.evaluators)
    if flags.metadata:
        doc["metadata"] = dict(flags.metadata)
    return doc


def encode(doc: Mapping[str, Any]) -> str:
    """The document as the file's text: sorted keys, so equal documents are equal bytes."""
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def digest(doc: Mapping[str, Any]) -> str:
    """A short name for a document's content: `flags-` and 12 hex digits of its sha256."""
    return "flags-" + hashlib.sha256(encode(doc).encode("utf-8")).hexdigest()[:12]


def changed_flags(before: Mapping[str, Resolved], after: Mapping[str, Resolved]) -> list[str]:
    """The flags whose served variants differ (sources alone do not count)."""
    def served(r: Resolved | None) -> tuple[Any, ...] | None:
        return None if r is None else (r.variant, r.percent, r.rest, r.state if r.source == FILE else "ENABLED")

    return sorted(k for k in {*before, *after} if served(before.get(k)) != served(after.get(k)))


def switched_on(flags: FlagSet, before: Mapping[str, Resolved], after: Mapping[str, Resolved]) -> list[Flag]:
    """The flags a change leaves serving an "on" variant to anyone, among those it changes."""
    out = []
    for key in changed_flags(before, after):
        flag, r = flags.flags.get(key), after.get(key)
        if flag is not None and r is not None and (flag.is_on(r.variant) or (r.rest is not None
                                                                              and flag.is_on(r.rest))):
            out.append(flag)
    return out


def check_overrides(flags: FlagSet, overrides: Overrides) -> Iterator[tuple[tuple[str, ...], str]]:
    """Overrides naming a flag or a variant the file does not define: (env, region, flag) and the problem."""
    for env, by_region in overrides.items():
        for region, settings in by_region.items():
            for key, setting in settings.items():
                flag = flags.flags.get(key)
                if flag is None:
                    yield (env, region, key), f"no flag {key!r} in {flags.file} (flags: {', '.join(flags.flags)})"
                elif setting.variant not in flag.variants:
                    yield (env, region, key), (f"{key} has no variant {setting.variant!r} (variants: "
                                               f"{', '.join(flag.variants)})")


def set_override(overrides: Overrides, env: str, region: str, flag: str, setting: Setting | None) -> dict[
        str, dict[str, dict[str, Setting]]]:
    """A copy of `overrides` with one setting changed (None: removed), empty scopes dropped."""
    out = {e: {r: dict(s) for r, s in by_region.items()} for e, by_region in overrides.items()}
    scope = out.setdefault(env, {}).setdefault(region, {})
    if setting is None:
        scope.pop(flag, None)
    else:
        scope[flag] = setting
    if not scope:
        del out[env][region]
    if not out[env]:
        del out[env]
    return out


@dataclass(frozen=True)
class FlagFacts:
    """What the gates need to know about flags: for a flag change, what it switches on where and the facts
    its requirements are judged on; for a deploy, which contract migrations a flag that is off still needs."""

    switched_on: Mapping[str, tuple[Flag, ...]] = field(default_factory=dict)  # region → flags turned on
    windowed: bool = True                          # False: every flag changed says `window: false`
    applied: Mapping[str, frozenset[str]] = field(default_factory=dict)  # region → migrations applied there
    releases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # region → releases its hosts run
    off: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # flag → "ENV/REGION" serving it off
    contracts: Mapping[str, str] = field(default_factory=dict)  # contract migration → the flag that needs it gone
