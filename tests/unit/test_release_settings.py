"""`git:` and `metrics:` in conveyor.yml: their defaults, what they accept, and every mistake as FILE:LINE."""

from __future__ import annotations

import textwrap

import pytest

from conveyor.config.loader import parse_config
from conveyor.config.models import Config
from conveyor.errors import ConfigError

BASE = """\
app: www
roles: {web: {}}
environments:
  staging: {regions: {uk: {hosts: {web: [web-1]}}}}
"""


def parse(extra: str) -> Config:
    config, _ = parse_config(BASE + textwrap.dedent(extra), "conveyor.yml", env={})
    return config


def problems(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + textwrap.dedent(extra), "conveyor.yml", env={})
    assert info.value.exit_code == 2
    return [str(p) for p in info.value.problems]


def test_by_default_nothing_is_tagged_pushed_or_published() -> None:
    config = parse("")
    assert (config.git.tags, config.git.push, config.git.timeout) == (False, None, 60.0)
    assert (config.metrics.pushgateway, config.metrics.textfile, config.metrics.job) == (None, None, "conveyor")
    assert config.metrics.timeout == 5.0
    assert config.metrics.enabled is False


def test_tags_pushed_to_a_remote_and_metrics_to_both_targets() -> None:
    config = parse("""\
        git: {tags: true, push: origin}
        metrics:
          pushgateway: http://127.0.0.1:9091/
          textfile: /var/lib/node_exporter/textfile/conveyor.prom
          job: deploys
          timeout: 2s
        """)
    assert (config.git.tags, config.git.push) == (True, "origin")
    assert config.metrics.pushgateway == "http://127.0.0.1:9091"
    assert config.metrics.textfile == "/var/lib/node_exporter/textfile/conveyor.prom"
    assert (config.metrics.job, config.metrics.timeout, config.metrics.enabled) == ("deploys", 2.0, True)


def test_push_false_pushes_nothing() -> None:
    assert parse("git: {tags: true, push: false}\n").git.push is None


@pytest.mark.parametrize(("extra", "expected"), [
    ("git: {tags: maybe}\n", ["conveyor.yml:5: git.tags: expected true or false, got text 'maybe'"]),
    ("git: {tags: true, push: true}\n",
     ["conveyor.yml:5: git.push: expected false or the name of a git remote like origin, got boolean True"]),
    ("git: {tags: true, push: --upload-pack=evil}\n",
     ["conveyor.yml:5: git.push: expected false or the name of a git remote like origin, "
      "got text '--upload-pack=evil'"]),
    ("git:\n  push: origin\n", ["conveyor.yml:5: git: push: origin sends release tags, so it needs tags: true"]),
    ("git: {tag: true}\n", ["conveyor.yml:5: git.tag: unknown field; did you mean `tags`?"]),
    ("git: {tags: true, push: origin, timeout: 0s}\n",
     ["conveyor.yml:5: git.timeout: a timeout must be more than zero and at most 10m, got 0s"]),
    ("metrics:\n  pushgateway: 127.0.0.1:9091\n",
     ["conveyor.yml:6: metrics.pushgateway: expected the Pushgateway's http:// or https:// URL, like "
      "http://127.0.0.1:9091, got '127.0.0.1:9091'"]),
    ("metrics:\n  textfile: /var/lib/node_exporter/textfile/conveyor.txt\n",
     ["conveyor.yml:6: metrics.textfile: expected a file name ending in .prom (node_exporter reads only those), "
      "got '/var/lib/node_exporter/textfile/conveyor.txt'"]),
    ("metrics:\n  job: conveyor/prod\n",
     ["conveyor.yml:6: metrics.job: job name 'conveyor/prod' must start with a letter or digit and use only "
      "letters, digits, '.', '_', '-'"]),
    ("metrics:\n  pushgateway: http://pgw:9091\n  timeout: 0s\n",
     ["conveyor.yml:7: metrics.timeout: a timeout must be more than zero and at most 1m, got 0s"]),
    ("metrics: {pushgateway: http://pgw:9091, every: 10s}\n", ["conveyor.yml:5: metrics.every: unknown field"]),
], ids=["tags-not-bool", "push-true", "push-option", "push-without-tags", "git-unknown-key", "git-timeout-zero",
        "pushgateway-no-scheme",
        "textfile-not-prom", "job-with-slash", "timeout-zero", "metrics-unknown-key"])
def test_each_mistake_names_the_line_and_field(extra: str, expected: list[str]) -> None:
    assert problems(extra) == expected


def test_the_json_schema_describes_both_sections() -> None:
    properties = Config.model_json_schema()["$defs"]
    assert set(properties["GitSettings"]["properties"]) == {"tags", "push", "timeout"}
    assert set(properties["MetricsSettings"]["properties"]) == {"pushgateway", "textfile", "job", "timeout"}
