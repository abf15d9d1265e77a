"""flags: the flags each environment and region sees, and changing them as a deployment of its own kind.

A change (`flags set`, `flags rollout`, `rollback --flags`) edits the overrides kept in the state store (the
layer above conveyor.yml's), works out each region's flagd document, and moves the regions whose document
changes through the same `Deployment` as a release (gates, lock, waves, canary first, bakes, switching back,
history, notifications), each host's file written in one round trip (engine/flagging.py). The overrides are
recorded once hosts have them: for every region if all succeeded, else for the regions that did.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conveyor.config.flagging import ALL_REGIONS, FlagSettings
from conveyor.engine.events import Subscriber
from conveyor.engine.flagging import FlagFile, FlagWork
from conveyor.engine.results import DeploymentResult, RegionStatus
from conveyor.errors import ConfigError, ConfigProblem, ConveyorError, UsageError
from conveyor.flags import (
    FlagFacts,
    FlagSet,
    Layer,
    Overrides,
    Resolved,
    Setting,
    changed_flags,
    check_overrides,
    document,
    encode,
    load_flags,
    resolve,
    set_override,
    switched_on,
)
from conveyor.inventory import Host
from conveyor.operations.deployment import Deployment, Job, single_target
from conveyor.operations.request import Confirm, Request, plan_for
from conveyor.operations.workspace import Workspace

__all__ = [
    "EVENT",
    "LIVE",
    "WRITTEN",
    "carried",
    "change",
    "diff",
    "flag_facts",
    "flag_set",
    "layers",
    "live_overrides",
    "matrix",
    "pending",
    "rollback_flags",
    "settings",
]

LIVE = "flags set"      # the layer `flags set/rollout` edit, as the matrix names its source
EVENT = "flags_set"     # the state store event that holds an environment's live overrides after a change
WRITTEN = "flags_written"  # ... and the one that holds the document each region's hosts were last given
MAX_DOCUMENT = 100_000  # bytes: a host command's argument must stay well under the kernel's 128 KiB


def settings(ws: Workspace) -> FlagSettings:
    """The config's `flags:` section; a usage error when there is none."""
    if ws.config.flags is None:
        raise UsageError("conveyor.yml has no flags: section (flags: {file: flags/flags.yaml}); see docs/flags.md")
    return ws.config.flags


def flag_set(ws: Workspace) -> FlagSet:
    """The flag definitions, validated, with conveyor.yml's overrides checked against them (exit 2 if not)."""
    config = settings(ws)
    flags = load_flags(ws.directory / config.file, config.file)
    shown = ws.loaded.path.name
    problems = [ConfigProblem(shown, ws.loaded.lines.get(("flags", "overrides", *loc)),
                              ".".join(("flags", "overrides", *loc)), message)
                for loc, message in check_overrides(flags, _yml(config))]
    if problems:
        raise ConfigError(problems)
    return flags


def live_overrides(ws: Workspace, env: str) -> dict[str, dict[str, dict[str, Setting]]]:
    """The overrides `flags set/rollout` left in `env` (environment → region → flag → setting)."""
    event = ws.store.last_event(EVENT, env)
    stored = (event or {}).get("data", {}).get("overrides") or {}
    return {env: {region: {flag: Setting.from_json(v) for flag, v in by_flag.items()}
                  for region, by_flag in stored.get(env, {}).items()}} if stored.get(env) else {}


def layers(ws: Workspace, flags: FlagSet, env: str, live: Overrides | None = None) -> list[Layer]:
    """conveyor.yml's overrides, then the live ones (those naming what the file no longer has are left out)."""
    live = live_overrides(ws, env) if live is None else live
    usable = {e: {r: {k: s for k, s in by_flag.items() if k in flags.flags and s.variant in flags.flags[k].variants}
                  for r, by_flag in by_region.items()} for e, by_region in live.items()}
    return [Layer("conveyor.yml", _yml(settings(ws))), Layer(LIVE, usable)]


def _yml(config: FlagSettings) -> Overrides:
    return {env: {region: {flag: Setting(variant) for flag, variant in by_flag.items()}
                  for region, by_flag in by_region.items()} for env, by_region in config.overrides.items()}


def matrix(ws: Workspace, environments: Sequence[str] | None = None) -> dict[str, Any]:
    """`flags --json`: every flag as each environment's regions see it, and where that comes from."""
    flags = flag_set(ws)
    envs = list(environments or ws.config.environments)
    for env in envs:
        ws.environment(env)
    out: dict[str, Any] = {"file": flags.file, "flags": sorted(flags.flags), "environments": {}}
    for env in envs:
        env_layers = layers(ws, flags, env)
        out["environments"][env] = {"regions": {
            region: {key: r.to_json() for key, r in sorted(resolve(flags, env, region, env_layers).items())}
            for region in ws.config.environments[env].regions}}
    return out


def diff(ws: Workspace, a: str, b: str) -> dict[str, Any]:
    """`flags diff A B`: each flag as A's and B's regions see it, and whether they agree."""
    flags = flag_set(ws)
    sides = {}
    for env in (a, b):
        ws.environment(env)
        env_layers = layers(ws, flags, env)
        sides[env] = {region: resolve(flags, env, region, env_layers)
                      for region in ws.config.environments[env].regions}
    rows = []
    for key in sorted(flags.flags):
        seen = {env: {region: view[key].describe() for region, view in sides[env].items()} for env in (a, b)}
        rows.append({"flag": key, a: seen[a], b: seen[b],
                     "same": len({*seen[a].values(), *seen[b].values()}) == 1})
    return {"environments": [a, b], "flags": rows}


def change(ws: Workspace, request: Request, flag: str, variant: str, *, percent: int | None = None,
           subscribers: Sequence[Subscriber], confirm: Confirm | None = None) -> DeploymentResult:
    """`flags set` (everyone) or `flags rollout` (`percent` of evaluations): edit the override for the
    request's region (or the whole environment) and roll it out."""
    env = request.environment
    ws.environment(env)
    if not (request.reason or "").strip():
        raise UsageError("a flag change needs --reason TEXT: it is recorded in history")
    flags = flag_set(ws)
    known = flags.flags.get(flag)
    if known is None:
        raise UsageError(f"no flag {flag!r} in {flags.file} (flags: {', '.join(flags.flags) or 'none'})")
    if variant not in known.variants:
        raise UsageError(f"{flag} has no variant {variant!r} (variants: {', '.join(known.variants)})")
    if percent is not None and not 0 <= percent <= 100:
        raise UsageError(f"--percent must be between 0 and 100, got {percent}")
    if len(request.regions) > 1:
        raise UsageError("a flag change names one --region (or none: the whole environment)")
    scope = request.regions[0] if request.regions else ALL_REGIONS
    if scope != ALL_REGIONS and scope not in ws.config.environments[env].regions:
        raise UsageError(f"no region {scope!r} in {env} (regions: {', '.join(ws.config.environments[env].regions)})")
    current = live_overrides(ws, env)
    wanted = set_override(current, env, scope, flag, Setting(variant, percent))
    if scope == ALL_REGIONS:  # the whole environment: a region's own earlier setting of this flag gives way
        for region in list(wanted.get(env, {})):
            if region != ALL_REGIONS and flag in wanted[env][region]:
                wanted = set_override(wanted, env, region, flag, None)
    what = f"{flag} → {variant}" + (f" for {percent}%" if percent is not None else "")
    return _roll(ws, request, flags, current, wanted, what, subscribers=subscribers, confirm=confirm)


def rollback_flags(ws: Workspace, request: Request, *, subscribers: Sequence[Subscriber],
                   confirm: Confirm | None = None) -> DeploymentResult:
    """`rollback ENV --flags`: put back the overrides from before the last flag change that reached hosts."""
    env = request.environment
    ws.environment(env)
    event = ws.store.last_event(EVENT, env)
    if event is None:
        raise UsageError(f"no flag change in {env} to revert")
    flags = flag_set(ws)
    before = {env: {region: {flag: Setting.from_json(v) for flag, v in by_flag.items()}
                    for region, by_flag in (event["data"].get("before") or {}).get(env, {}).items()}}
    request.reason = request.reason or f"revert the flag change of deployment #{event['deployment_id']}"
    request.regions = []
    return _roll(ws, request, flags, live_overrides(ws, env), {k: v for k, v in before.items() if v},
                 f"revert of #{event['deployment_id']}", subscribers=subscribers, confirm=confirm)


def _roll(ws: Workspace, request: Request, flags: FlagSet, current: Overrides, wanted: Overrides, what: str, *,
          subscribers: Sequence[Subscriber], confirm: Confirm | None) -> DeploymentResult:
    env = request.environment
    config = settings(ws)
    regions = list(ws.config.environments[env].regions)
    before = {r: resolve(flags, env, r, layers(ws, flags, env, current)) for r in regions}
    after = {r: resolve(flags, env, r, layers(ws, flags, env, wanted)) for r in regions}
    moving = [r for r in regions if changed_flags(before[r], after[r])]
    # Nothing changes on paper: write every region anyway (hosts that have it say so in their one round trip).
    request.regions = moving or regions
    plan = plan_for(ws, request)
    files = {r.region: _file(flags, after[r.region]) for r in plan.regions}
    targets: dict[str, str | None] = {region: file.id for region, file in files.items()}
    changed = {k for r in request.regions for k in changed_flags(before[r], after[r])}
    facts = FlagFacts(
        switched_on={r: tuple(switched_on(flags, before[r], after[r])) for r in request.regions},
        windowed=not changed or any(flags.flags[k].windowed for k in changed),
        applied={region: frozenset(m["name"] for m in done)
                 for region, done in ws.store.applied_migrations(env).items()},
        releases=_releases(ws, env, {h.name: h.region for h in plan.hosts}))
    work = FlagWork({f.id: f for f in files.values()}, config.path, config.on_change)
    job = Job("flags", single_target(targets), targets, {}, work=work, flags=facts)
    request.reason = f"{what}: {request.reason}" if request.reason else what
    result = Deployment(ws, request, plan, job, subscribers=subscribers, confirm=confirm).run()
    _record(ws, result, env, current, wanted, flags, after)
    return result


def _file(flags: FlagSet, resolved: Mapping[str, Resolved]) -> FlagFile:
    return _text(document(flags, resolved))


def _text(doc: Mapping[str, Any]) -> FlagFile:
    text = encode(doc)
    if len(text.encode("utf-8")) > MAX_DOCUMENT:
        raise UsageError(f"the flags document is over {MAX_DOCUMENT} bytes: split the flags or shorten targeting")
    return FlagFile(text, hashlib.sha256(text.encode("utf-8")).hexdigest())


def _releases(ws: Workspace, env: str, regions_of: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    running = ws.store.host_releases(env)
    out: dict[str, set[str]] = {}
    for host, region in regions_of.items():
        release = running.get(host)
        if release:
            out.setdefault(region, set()).add(release)
    return {region: tuple(sorted(releases)) for region, releases in out.items()}


def _record(ws: Workspace, result: DeploymentResult, env: str, current: Overrides, wanted: Overrides,
            flags: FlagSet, after: Mapping[str, Mapping[str, Resolved]]) -> None:
    """Keep the overrides the hosts now have: all of `wanted` when every region moved, else per region."""
    done = [o.region for o in result.regions if o.status == RegionStatus.SUCCEEDED]
    if not done:
        return
    recorded: Overrides = wanted
    if len(done) < len(result.regions):
        partial = {e: {r: dict(s) for r, s in by_region.items()} for e, by_region in current.items()}
        for region in done:
            for key in flags.flags:
                setting = _setting(wanted, env, region, key)
                if setting != _setting(current, env, region, key):
                    partial = set_override(partial, env, region, key, setting)
        recorded = partial
    ws.store.add_event(EVENT, ws.user, environment=env, deployment_id=result.id, regions=done,
                       overrides=_stored(recorded), before=_stored(current),
                       documents={o.region: o.target for o in result.regions if o.region in done})
    record_written(ws, result, {r: document(flags, after[r]) for r in done})


def record_written(ws: Workspace, result: DeploymentResult, documents: Mapping[str, Mapping[str, Any]], *,
                   carried: bool = False) -> None:
    """Remember the document each region now has (what `plan` compares a deploy's with): the regions that
    succeeded; for a deploy (`carried`), those whose every host switched (a host already running the release
    does not switch, and keeps its file)."""
    done = {o.region for o in result.regions if (o.status == RegionStatus.SUCCEEDED and not carried)
            or (carried and o.hosts and all(h.status == "succeeded" for h in o.hosts))}
    if not done:
        return
    known = dict(last_written(ws, result.environment))
    known.update({region: dict(doc) for region, doc in documents.items() if region in done})
    ws.store.add_event(WRITTEN, ws.user, environment=result.environment, deployment_id=result.id, documents=known)
    _point_flags(ws, result, {region: doc for region, doc in documents.items() if region in done})


def _point_flags(ws: Workspace, result: DeploymentResult, documents: Mapping[str, Mapping[str, Any]]) -> None:
    """Give each region's pointer file the flags file its hosts now have, for the instances that start later
    (`conveyor converge`); a failure is a warning: the hosts have their files, the state store knows."""
    from conveyor.artifact.pointers import PointerFiles

    pointers = PointerFiles(ws.artifacts, ws.config.app, ws.user)
    for region, doc in sorted(documents.items()):
        file = _text(doc)
        try:
            pointers.set_flags(result.environment, region, file.content, file.sha256)
        except ConveyorError as exc:
            print(f"conveyor: warning: {result.environment}/{region}: the pointer file does not carry the new flags "
                  f"(instances that start now get the ones before): {exc.message}", file=sys.stderr)
            ws.store.add_event("pointer_file_failed", ws.user, environment=result.environment,
                               deployment_id=result.id, region=region, error=exc.message)


def last_written(ws: Workspace, env: str) -> dict[str, dict[str, Any]]:
    """region → the flags document its hosts were last given by Conveyor (as far as the state store knows)."""
    event = ws.store.last_event(WRITTEN, env)
    return dict((event or {}).get("data", {}).get("documents") or {})


def current_documents(ws: Workspace, env: str, regions: Sequence[str]) -> dict[str, dict[str, Any]]:
    """region → the flags document its hosts should have now (the file, conveyor.yml's and the live overrides)."""
    flags = flag_set(ws)
    env_layers = layers(ws, flags, env)
    return {region: document(flags, resolve(flags, env, region, env_layers)) for region in regions}


def carried(ws: Workspace, env: str, regions: Sequence[str]) -> tuple[dict[str, dict[str, Any]], Callable[
        [Host], dict[str, str]]] | None:
    """What a deploy carries to each region: its flags document, written in the switch's round trip (None
    without a flags: section). A bad flag file stops the deploy here, before any host changes."""
    if ws.config.flags is None:
        return None
    docs = current_documents(ws, env, regions)
    files = {region: _text(doc) for region, doc in docs.items()}
    path = settings(ws).path

    def carry(host: Host) -> dict[str, str]:
        return files[host.region].carried(path)

    return docs, carry


def pending(ws: Workspace, env: str, regions: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """`plan`'s flags: per region, each flag whose definition a deploy would change on its hosts."""
    before = last_written(ws, env)
    out: dict[str, list[dict[str, Any]]] = {}
    for region, doc in current_documents(ws, env, regions).items():
        old = (before.get(region) or {}).get("flags") or {}
        new = doc["flags"]
        changes = [{"flag": key, "from": _served(old.get(key)), "to": _served(new.get(key))}
                   for key in sorted({*old, *new}) if old.get(key) != new.get(key)]
        if changes:
            out[region] = changes
    return out


def _served(body: Mapping[str, Any] | None) -> str | None:
    if body is None:
        return None
    fractional = (body.get("targeting") or {}).get("fractional")
    if isinstance(fractional, list) and fractional and isinstance(fractional[0], list):
        return f"{fractional[0][0]} {fractional[0][1]}% (else {body['defaultVariant']})"
    rule = " (targeted)" if body.get("targeting") else ""
    return f"{body['defaultVariant']}{rule}" + (" (disabled)" if body.get("state") == "DISABLED" else "")


def _setting(overrides: Overrides, env: str, region: str, flag: str) -> Setting | None:
    scopes = overrides.get(env, {})
    return scopes.get(region, {}).get(flag) or scopes.get(ALL_REGIONS, {}).get(flag)


def _stored(overrides: Overrides) -> dict[str, Any]:
    return {e: {r: {k: s.to_json() for k, s in by_flag.items()} for r, by_flag in by_region.items()}
            for e, by_region in overrides.items()}


def flag_facts(ws: Workspace) -> FlagFacts | None:
    """For a deploy: which flags still serve their off variant where, and the contract migrations they name."""
    if ws.config.flags is None:
        return None
    flags = flag_set(ws)
    contracts = {flag.contract: key for key, flag in flags.flags.items() if flag.contract}
    if not contracts:
        return None
    off: dict[str, list[str]] = {}
    for env, environment in ws.config.environments.items():
        env_layers = layers(ws, flags, env)
        for region in environment.regions:
            for key, r in resolve(flags, env, region, env_layers).items():
                flag = flags.flags[key]
                if key in contracts.values() and (not flag.is_on(r.variant) or r.percent is not None
                                                  or r.state == "DISABLED"):
                    off.setdefault(key, []).append(f"{env}/{region}")
    return FlagFacts(off={k: tuple(v) for k, v in off.items()}, contracts=contracts)
