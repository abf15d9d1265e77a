"""Inventory documents: the JSON an inventory command prints, read into validated host entries.

Two shapes are read:

- Conveyor's own: `{"web": ["web-1", {"name": "web-2", "address": "10.0.0.2", "port": 22, "user": "deploy",
  "labels": {"rack": "a"}}], "batch": [...]}`, role → hosts, exactly like `hosts:` in the config.
  A role that the config does not define is an error.
- `ansible-inventory --list`: groups named after roles (`{"web": {"hosts": [...], "children": [...]}}`) and
  `_meta.hostvars` for `ansible_host`, `ansible_port` and `ansible_user`. Groups that are not roles (`all`,
  `ungrouped`, `db`...) are ignored, as inventories are often shared; but hosts with no group named after a
  role at all are an error (a typo in the group names would otherwise deploy to nothing).

Every host entry is validated as the config's own are (name, address, user, port), so a hostile name never
reaches a shell, a path or ssh.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from conveyor.config.models import HostSpec
from conveyor.inventory.base import InventoryProblem
from conveyor.values import describe

EXAMPLE = '{"web": ["web-1", {"name": "web-2", "address": "10.0.0.2"}]}'
FIELDS = ("name", "address", "port", "user", "labels")
MAX_SHOWN = 10  # problems listed in one message; the rest are counted


def parse_inventory(text: str, roles: Sequence[str]) -> list[tuple[str, HostSpec]]:
    """(role, host entry) for every host of an inventory document, in the order it lists them."""
    if not text.strip():
        raise InventoryProblem(f"printed nothing; expected JSON like {EXAMPLE}")
    try:
        document = json.loads(text)
    except ValueError as exc:
        where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise InventoryProblem(f"printed text that is not JSON ({reason}{where}); it begins "
                               f"{text.strip()[:60]!r}") from None
    if not isinstance(document, dict):
        raise InventoryProblem(f"expected a JSON object of role → hosts like {EXAMPLE}, got {_kind(document)}")
    if is_ansible(document):
        return _ansible(document, roles)
    return _native(document, roles)


def is_ansible(document: dict[str, Any]) -> bool:
    """Whether a document is `ansible-inventory --list` output rather than role → list of hosts."""
    return "_meta" in document or any(
        isinstance(group, dict) and ("hosts" in group or "children" in group) for group in document.values()
    )


def _kind(value: Any) -> str:
    """How a JSON value is named in a message (JSON says object where YAML says mapping)."""
    if isinstance(value, dict):
        return "an object"
    return "a list" if isinstance(value, list) else describe(value)


def _raise(problems: list[str]) -> None:
    if problems:
        shown = problems[:MAX_SHOWN]
        more = f"\n(and {len(problems) - MAX_SHOWN} more)" if len(problems) > MAX_SHOWN else ""
        raise InventoryProblem("printed hosts that cannot be used:\n" + "\n".join(shown) + more)


def _entry(role: str, index: int, item: Any, problems: list[str]) -> HostSpec | None:
    """One host entry, validated like the config's `hosts:`; problems are added, not raised."""
    where = f"{role}.{index}"
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        problems.append(f"{where}: expected a host name or an object like {{\"name\": \"web-1\", "
                        f"\"address\": \"10.0.0.1\"}}, got {_kind(item)}")
        return None
    unknown = [key for key in item if key not in FIELDS]
    if unknown:
        problems.append(f"{where}.{unknown[0]}: unknown field (a host has {', '.join(FIELDS)})")
        return None
    try:
        return HostSpec.model_validate(item)
    except ValidationError as exc:
        for error in exc.errors():
            loc = ".".join(str(part) for part in (where, *error["loc"]))
            problems.append(f"{loc}: {_message(error)}")
        return None


def _message(error: Any) -> str:
    kind, msg = error["type"], str(error["msg"])
    if kind == "missing":
        return "required field is missing"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"expected a whole number, got {describe(error.get('input'))}"
    bounds = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most")}
    if kind in bounds:
        key, words = bounds[kind]
        return f"must be {words} {(error.get('ctx') or {}).get(key)}, got {error.get('input')!r}"
    if kind in {"string_type", "dict_type"}:
        return f"expected {'text' if kind == 'string_type' else 'an object'}, got {_kind(error.get('input'))}"
    return msg.removeprefix("Value error, ")


def _native(document: dict[str, Any], roles: Sequence[str]) -> list[tuple[str, HostSpec]]:
    problems: list[str] = []
    out: list[tuple[str, HostSpec]] = []
    for role, items in document.items():
        if role not in roles:
            problems.append(f"{role}: unknown role {role!r}; known: {', '.join(roles)}")
            continue
        if not isinstance(items, list):
            problems.append(f"{role}: expected a list of hosts like {EXAMPLE}, got {_kind(items)}")
            continue
        for index, item in enumerate(items):
            spec = _entry(role, index, item, problems)
            if spec is not None:
                out.append((role, spec))
    _raise(problems)
    return out


def _ansible(document: dict[str, Any], roles: Sequence[str]) -> list[tuple[str, HostSpec]]:
    meta = document.get("_meta", {})
    hostvars = meta.get("hostvars", {}) if isinstance(meta, dict) else None
    if not isinstance(hostvars, dict):
        raise InventoryProblem(f"_meta.hostvars: expected an object of host → variables, got {_kind(hostvars)}")
    groups = {name: group for name, group in document.items() if name != "_meta"}
    problems: list[str] = []
    for name, group in groups.items():
        if not isinstance(group, dict):
            problems.append(f"{name}: expected a group object like {{\"hosts\": [...]}}, got {_kind(group)}")
            continue
        for key in ("hosts", "children"):
            members = group.get(key, [])
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                problems.append(f"{name}.{key}: expected a list of names, got {_kind(members)}")
    _raise(problems)
    out: list[tuple[str, HostSpec]] = []
    for role in roles:
        if role not in groups:
            continue
        for index, name in enumerate(_members(role, groups)):
            spec = _entry(role, index, _ansible_host(name, hostvars.get(name)), problems)
            if spec is not None:
                out.append((role, spec))
    _raise(problems)
    if not any(role in groups for role in roles) and any(_direct(group) for group in groups.values()):
        raise InventoryProblem(f"no group is named after a role ({', '.join(roles)}); groups: "
                               f"{', '.join(groups)}")
    return out


def _direct(group: Any) -> list[str]:
    return list(group.get("hosts", [])) if isinstance(group, dict) else []


def _members(name: str, groups: dict[str, Any]) -> list[str]:
    """The hosts of a group and of its children's groups, each once, in the order they are listed."""
    out: dict[str, None] = {}
    pending, seen = [name], set()
    while pending:
        group = pending.pop(0)
        if group in seen:
            continue  # ansible forbids cycles; a hand-written document may still have one
        seen.add(group)
        out.update(dict.fromkeys(_direct(groups.get(group))))
        pending += list(groups.get(group, {}).get("children", [])) if isinstance(groups.get(group), dict) else []
    return list(out)


def _ansible_host(name: str, variables: Any) -> dict[str, Any]:
    """A host entry from ansible's connection variables (the `ansible_ssh_*` spellings are older aliases)."""
    entry: dict[str, Any] = {"name": name}
    if not isinstance(variables, dict):
        return entry
    for field, keys in (("address", ("ansible_host", "ansible_ssh_host")),
                        ("port", ("ansible_port", "ansible_ssh_port")),
                        ("user", ("ansible_user", "ansible_ssh_user"))):
        for key in keys:
            if variables.get(key) is not None:
                entry[field] = variables[key]
                break
    return entry
