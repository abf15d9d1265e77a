"""What a pipeline is made of, read from a config: environments in promotion order and their jobs' shape.

Both generators (gitlab.py, github.py) start from a `Pipeline`, so they agree on what is deployed
automatically, what waits for a person, and which environments get a job per region. Everything here is
pure and sorted: the same config gives the same pipeline, whatever order its mappings were written in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

if TYPE_CHECKING:
    from conveyor.config.models import Config

__all__ = [
    "DEFAULT_IMAGE",
    "PIP_PACKAGE",
    "PLACEHOLDERS",
    "Pipeline",
    "Stage",
    "YamlBlock",
    "build_pipeline",
    "load_yaml",
    "promotion_order",
    "read_config",
    "referenced_variables",
    "render_yaml",
    "slug",
]

DEFAULT_IMAGE = "python:3.11-slim"
PIP_PACKAGE = "conveyor-deploy"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# An unset ${VAR} of conveyor.yml reads as one of these while generating (a word, else a URL, whichever the
# config accepts): its value never shapes a pipeline.
PLACEHOLDERS = ("conveyor-ci-placeholder", "https://conveyor-ci.invalid/placeholder")


@dataclass(frozen=True)
class Stage:
    """One environment of the promotion path, as a pipeline deploys it."""

    name: str
    promote_from: str | None
    auto: bool                      # deployed on every push to the default branch (`auto: true`)
    per_region: bool                # production-like: a check job and a deploy job per region, and "everywhere"
    tier: Literal["production", "staging"]
    regions: tuple[str, ...]        # in wave order; sorted within a wave

    @property
    def slug(self) -> str:
        """The name as a job id may spell it (letters, digits, `_`, `-`)."""
        return slug(self.name)


@dataclass(frozen=True)
class Pipeline:
    """Everything a generator needs: no file, no clock, no network."""

    app: str
    config_name: str                # the config's file name, as jobs pass it to `conveyor -c`
    stages: tuple[Stage, ...]       # promotion order
    local_store: str | None         # the artifact store's directory when it is not S3: jobs hand it on
    install: str                    # the pip requirement jobs install
    variables: tuple[str, ...]      # the ${NAME}s conveyor.yml reads from the environment
    push_tags: bool                 # git.push: deploy jobs push release tags
    commands: frozenset[str]        # the commands this Conveyor has, like "deploy" or "db status"
    migrations: bool = False        # the config has a `migrations:` section

    def stage(self, name: str) -> Stage:
        """The stage of an environment."""
        return next(s for s in self.stages if s.name == name)

    @property
    def asks_databases(self) -> bool:
        """Whether jobs run `conveyor db status`: only for a config with migrations (without, it has nothing
        to ask), and only once this Conveyor has the command."""
        return self.migrations and "db status" in self.commands

    @property
    def awaits_db_status(self) -> bool:
        """The config has migrations but this Conveyor has no `db status` yet: jobs leave a hook for it."""
        return self.migrations and "db status" not in self.commands

    @property
    def regions(self) -> tuple[str, ...]:
        """Every region of every environment, sorted."""
        return tuple(sorted({r for s in self.stages for r in s.regions}))


def slug(name: str) -> str:
    """A config name (letters, digits, `.`, `_`, `-`) as an identifier: `.` becomes `_`."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def promotion_order(config: Config) -> list[str]:
    """Environments so that each comes after the one it promotes from; ties (and cycles) by name."""
    upstream = {name: env.promote_from for name, env in config.environments.items()}
    done: list[str] = []
    waiting = sorted(upstream)
    while waiting:
        ready = [n for n in waiting if upstream[n] is None or upstream[n] in done or upstream[n] not in upstream]
        if not ready:  # a promote_from cycle: the config's own checks report it; keep going by name
            ready = waiting[:1]
        done.append(ready[0])
        waiting.remove(ready[0])
    return done


def build_pipeline(config: Config, *, config_name: str = "conveyor.yml", variables: Iterable[str] = (),
                   version: str | None = None, commands: Iterable[str] = ()) -> Pipeline:
    """The pipeline of a config. `version` pins the conveyor-deploy that jobs install (None: the newest)."""
    promoted = {env.promote_from for env in config.environments.values() if env.promote_from}
    stages = []
    for name in promotion_order(config):
        env = config.environments[name]
        last = name not in promoted
        regions = tuple(r for wave in config.waves_of(name) for r in sorted(wave))
        stages.append(Stage(
            name=name, promote_from=env.promote_from, auto=env.auto,
            per_region=env.promote_from is not None or last,
            tier="production" if last else "staging",
            regions=regions,
        ))
    store = config.artifact.store
    extras = ["postgres"]  # a pipeline's jobs share one state store: PostgreSQL (CONVEYOR_STATE_URL)
    uses_aws = store.startswith("s3://") or any(
        region.inventory is not None and region.inventory.aws is not None
        for env in config.environments.values() for region in env.regions.values())
    if uses_aws:
        extras.append("aws")
    requirement = f"{PIP_PACKAGE}[{','.join(sorted(extras))}]" + (f"=={version}" if version else "")
    return Pipeline(
        app=config.app,
        config_name=config_name,
        stages=tuple(stages),
        # Only a store inside the checkout travels between jobs; an absolute one is the runner's own directory.
        local_store=None if store.startswith(("s3://", "/", "~")) else store.rstrip("/"),
        install=requirement,
        variables=tuple(sorted(set(variables))),
        push_tags=bool(config.git.push),
        commands=frozenset(commands),
        migrations=config.migrations is not None,
    )


# -- reading the config ---------------------------------------------------------------------------------


def referenced_variables(text: str) -> list[str]:
    """The ${NAME}s a config's values read from the environment (not its comments), sorted, each once."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return sorted(set(_VARIABLE.findall(text)))  # loading the config reports what is wrong
    names: set[str] = set()
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:  # an alias is the same node again
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            names.update(_VARIABLE.findall(str(node.value)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(value for _key, value in node.value)  # keys are never substituted
    return sorted(names)


def read_config(path: Path, environ: Mapping[str, str] | None = None) -> tuple[Config, list[str]]:
    """Load a config to generate a pipeline from: (config, the variables it references).

    Generating must work where the secrets are not set (a laptop, a merge request's pipeline), so an unset
    ${NAME} reads as a placeholder instead of being an error; its value never shapes the pipeline.
    """
    from conveyor.config.loader import parse_config
    from conveyor.errors import ConfigError, ConfigProblem

    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(shown, None, "", "no such file; `conveyor init` writes a starter")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(shown, None, "", "is not UTF-8 text")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(shown, None, "", f"cannot be read: {exc.strerror}")]) from None
    names = referenced_variables(text)
    known = dict(os.environ if environ is None else environ)
    unset = [name for name in names if name not in known]
    first: ConfigError | None = None
    for placeholder in PLACEHOLDERS:
        try:
            config, _lines = parse_config(text, shown, env={**dict.fromkeys(unset, placeholder), **known})
        except ConfigError as exc:
            if not unset:
                raise
            first = first or exc
            continue
        return config, names
    assert first is not None
    hint = ConfigProblem(shown, None, "", f"(to generate a pipeline, the unset {', '.join(unset)} read as a "
                         "placeholder; set them to values of the right kind here)")
    raise ConfigError([*first.problems, hint]) from None


# -- YAML -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class YamlBlock:
    """Top-level keys of a YAML document, with a comment above them."""

    content: dict[str, Any]
    comment: tuple[str, ...] = ()


class _Dumper(yaml.SafeDumper):
    """Block style with indented lists; short lists of plain words inline; scripts as literal blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    words = all(isinstance(item, str | int) and not isinstance(item, bool) and " " not in str(item)
                for item in value)
    inline = bool(value) and words and sum(len(str(item)) + 2 for item in value) <= 70
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=inline)


def _represent_none(dumper: yaml.SafeDumper, _value: None) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:null", "")  # `push:` rather than `push: null`


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(type(None), _represent_none)


def render_yaml(header: Iterable[str], blocks: Iterable[YamlBlock]) -> str:
    """A YAML document: the header as comments, then each block (its comment first), a blank line apart."""
    parts = ["\n".join(f"# {line}".rstrip() for line in header)]
    for block in blocks:
        text = yaml.dump(block.content, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000,
                         allow_unicode=True)
        comment = "".join(f"# {line}".rstrip() + "\n" for line in block.comment)
        parts.append(comment + text.rstrip("\n"))
    return "\n\n".join(parts) + "\n"


class _Loader(yaml.SafeLoader):
    """YAML as CI systems read it: `on`, `yes` and `no` stay words; custom tags (GitLab's `!reference`)
    are kept as data instead of being errors."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        value: Any = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    else:  # pragma: no cover - the three kinds of node are all there are
        value = None
    return {f"!{suffix}": value}


_Loader.add_multi_constructor("!", _tagged)


def load_yaml(text: str) -> Any:
    """Parse a pipeline file the way GitLab and GitHub do (YAML 1.2 booleans); yaml.YAMLError if it is not YAML."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
