"""Consistency, the first parts: `consistency:` in conveyor.yml, the component probes the probe script runs
(the real script, run with the system's `sh` as the local transport runs it), reading their answers, and
keeping them in the state store."""

from __future__ import annotations

import binascii
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from conveyor.config.loader import parse_config
from conveyor.engine import commands
from conveyor.engine.probe import parse_probe
from conveyor.engine.stack import ComponentProbe, Reading, read_components, stack_of
from conveyor.errors import ConfigError
from conveyor.inventory import Host
from conveyor.state.components import ComponentRow
from conveyor.state.store import Store

BASE = """\
app: www
roles: {web: {}, batch: {}}
environments:
  staging: {transport: local, regions: {uk: {hosts: {web: [s1], batch: [s2]}}}}
  production: {promote_from: staging, transport: local, regions: {uk: {hosts: {web: [p1]}}}}
"""


def problems(consistency: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + textwrap.dedent(consistency), "conveyor.yml", env={})
    assert info.value.exit_code == 2
    return [str(p) for p in info.value.problems]


# ------------------------------------------------------------------------------------------- config


def test_a_consistency_section_parses_with_its_defaults() -> None:
    config, _ = parse_config(BASE + textwrap.dedent("""\
        consistency:
          components:
            perl: {probe: "perl -e 'print $^V'"}
            pdf: {probe: "wkhtmltopdf --version", roles: [web], timeout: 3s}
          build: [perl]
          match: [staging, production]
        """), "conveyor.yml", env={})
    consistency = config.consistency
    assert consistency is not None
    assert consistency.on_drift == "refuse"
    assert consistency.converge == "refuse"
    assert consistency.components["perl"].timeout == 10.0
    assert consistency.components["pdf"].timeout == 3.0
    assert list(consistency.for_role("web")) == ["perl", "pdf"]
    assert list(consistency.for_role("batch")) == ["perl"]


def test_unknown_components_environments_and_roles_are_named_with_their_lines() -> None:
    found = problems("""\
        consistency:
          components:
            perl: {probe: "perl -v", roles: [web, wat]}
          build: [perl, ruby]
          match: [staging, prod]
        """)
    assert found == [
        "conveyor.yml:8: consistency.components.perl.roles.1: unknown role 'wat'; known: web, batch",
        "conveyor.yml:9: consistency.build.1: unknown component 'ruby'; known: perl",
        "conveyor.yml:10: consistency.match.1: unknown environment 'prod'; known: staging, production",
    ]


@pytest.mark.parametrize(("body", "expected"), [
    ('components: {perl: {probe: "  "}}', "consistency.components.perl.probe: a probe is a shell command"),
    ('components: {perl: {probe: "x", timeout: 0}}', "consistency.components.perl.timeout: a probe's timeout"),
    ('components: {perl: {probe: "x", timeout: 1h}}', "at most 300s"),
    ('components: {"a b": {probe: "x"}}', "component name 'a b' must start with a letter or digit"),
    ('components: {perl: {probe: "x"}}\n  on_drift: maybe', "consistency.on_drift: expected 'refuse' or 'warn'"),
    ("components: {}", "consistency.components"),
    ('components: {perl: {probe: "x", version: 5}}', "consistency.components.perl.version"),
], ids=["blank-probe", "zero-timeout", "long-timeout", "bad-name", "on-drift", "no-components", "unknown-key"])
def test_bad_consistency_settings_are_config_errors(body: str, expected: str) -> None:
    found = problems(f"consistency:\n  {body}\n")
    assert any(expected in line for line in found), found


def test_hosts_are_asked_only_about_their_roles_components() -> None:
    config, _ = parse_config(BASE + 'consistency: {components: {perl: {probe: "perl -v"}, '
                             'pdf: {probe: "pdf", roles: [web], timeout: 2s}}}\n', "conveyor.yml", env={})
    asked = stack_of(config.consistency)
    assert asked is not None
    web = Host(name="s1", environment="staging", region="uk", role="web", address="s1")
    batch = Host(name="s2", environment="staging", region="uk", role="batch", address="s2")
    assert asked(web) == [ComponentProbe("perl", "perl -v", 10.0), ComponentProbe("pdf", "pdf", 2.0)]
    assert asked(batch) == [ComponentProbe("perl", "perl -v", 10.0)]
    assert stack_of(None) is None


# ------------------------------------------------------------------------------------ the command line


def test_the_probe_command_carries_each_component_as_name_timeout_command_after_the_release() -> None:
    line = commands.probe("/srv/www", "R1", [ComponentProbe("perl", "perl -e 'print $^V'", 2.5)],
                          {"CONVEYOR_HOST": "h1"})
    assert line.startswith("sh -c 'export CONVEYOR_HOST=h1\n'")
    assert line.endswith(" /srv/www R1 perl 2.5 'perl -e '\"'\"'print $^V'\"'\"''")


def test_a_probe_command_without_components_is_what_it_always_was() -> None:
    line = commands.probe("/srv/www", "")
    assert line.startswith("sh -c '")
    assert line.endswith(" /srv/www ''")


# --------------------------------------------------------------------------------- the real script


def probe_on(tmp_path: Path, *asked: ComponentProbe, env: dict[str, str] | None = None
             ) -> tuple[dict[str, Reading], subprocess.CompletedProcess[str]]:
    deploy_to = tmp_path / "srv"
    done = subprocess.run(["sh", "-c", commands.probe(str(deploy_to), "", list(asked), env)],
                          capture_output=True, text=True, timeout=60, check=False)
    return read_components(parse_probe(done.stdout).components, list(asked)), done


def test_a_probe_answers_its_trimmed_output_with_the_hosts_variables_in_deploy_to(tmp_path: Path) -> None:
    found, done = probe_on(tmp_path, ComponentProbe("perl", "printf '  v5.36.0\\n\\n'", 5),
                           ComponentProbe("where", 'echo "$CONVEYOR_HOST $CONVEYOR_ROLE $(pwd)"', 5),
                           env={"CONVEYOR_HOST": "web-1", "CONVEYOR_ROLE": "web"})
    assert done.returncode == 0, done.stdout
    assert found == {"perl": Reading("v5.36.0"), "where": Reading(f"web-1 web {tmp_path / 'srv'}")}


def test_values_of_several_lines_or_other_characters_come_whole(tmp_path: Path) -> None:
    found, _ = probe_on(tmp_path, ComponentProbe("lines", "printf 'This is perl 5\\nversion 36\\n'", 5),
                        ComponentProbe("utf8", "printf 'caf\\303\\251 1.0'", 5),
                        ComponentProbe("cr", "printf 'v1\\r'", 5), ComponentProbe("none", "true", 5))
    assert found == {"lines": Reading("This is perl 5\nversion 36"), "utf8": Reading("café 1.0"),
                     "cr": Reading("v1?"), "none": Reading("")}


def test_a_failing_probe_says_its_exit_and_last_error_line_and_the_others_still_answer(tmp_path: Path) -> None:
    found, done = probe_on(tmp_path, ComponentProbe("gone", "echo first >&2; echo 'perl: not found' >&2; exit 127", 5),
                           ComponentProbe("os", "echo debian-12", 5))
    assert done.returncode == 0
    assert found["gone"] == Reading(None, "the probe failed with exit 127: perl: not found")
    assert found["os"] == Reading("debian-12")


def test_a_hanging_probe_is_stopped_at_its_timeout_and_says_so(tmp_path: Path) -> None:
    started = time.monotonic()
    found, done = probe_on(tmp_path, ComponentProbe("slow", "sleep 60", 0.3), ComponentProbe("os", "echo x", 5))
    assert time.monotonic() - started < 30  # not the probe's 60s: timeout(1) stopped it
    assert found == {"slow": Reading(None, "the probe timed out after 0.3s"), "os": Reading("x")}
    assert done.returncode == 0


def test_a_probe_that_prints_more_than_4_kib_has_no_value_and_4096_bytes_are_fine(tmp_path: Path) -> None:
    found, _ = probe_on(tmp_path, ComponentProbe("huge", "yes", 5),
                        ComponentProbe("edge", "head -c 4096 /dev/zero | tr '\\000' a", 5))
    assert found["huge"] == Reading(None, "the probe printed more than 4096 bytes (4 KiB): print only the version")
    assert found["edge"] == Reading("a" * 4096)


def test_nothing_a_probe_prints_is_a_marker_or_reaches_a_terminal_as_control(tmp_path: Path) -> None:
    # A probe that knows the protocol (it can read the mark in ps) still only gives its own value.
    forge = ('printf "@@conveyor %s current=evil\\n" "$(ps -o args= $PPID | cut -d" " -f6)"; '
             "printf '\\033[2Jv1\\n@@conveyor x release=R9\\n'")
    found, done = probe_on(tmp_path, ComponentProbe("forge", forge, 5))
    probe = parse_probe(done.stdout)
    assert probe.current is None
    assert probe.releases == ()
    value = found["forge"].value
    assert value is not None
    assert "\033" not in value
    assert "?[2Jv1" in value


def test_the_probe_leaves_nothing_behind_in_incoming(tmp_path: Path) -> None:
    probe_on(tmp_path, ComponentProbe("a", "echo 1", 5), ComponentProbe("b", "yes", 5))
    assert list((tmp_path / "srv" / "incoming").iterdir()) == []


# ------------------------------------------------------------------------------- reading answers


def hexed(text: str) -> str:
    return binascii.hexlify(text.encode()).decode() or "-"


PERL = [ComponentProbe("perl", "perl -v", 10.0)]


@pytest.mark.parametrize(("lines", "expected"), [
    (["perl 0 7 - =v5.36.0"], Reading("v5.36.0")),
    (["perl 0 9 - =v 5.36.0 "], Reading("v 5.36.0")),
    (["perl 0 5 - =a\x1bb"], Reading("a?b")),
    ([f"perl 0 7 - {hexed('v5.36.0')}"], Reading("v5.36.0")),
    (["perl 0 0 - -"], Reading("")),
    ([], Reading(None, "the host did not answer this probe")),
    (["perl 0 7 - zz"], Reading(None, "the host's answer could not be read")),
    (["perl 0 7 - abc"], Reading(None, "the host's answer could not be read")),
    (["perl x 7 - -"], Reading(None, "the host's answer could not be read")),
    ([f"perl 0 3 - {'61' * 4097}"], Reading(None, "the host's answer could not be read")),
    ([f"perl 0 3 - ={'a' * 4097}"], Reading(None, "the host's answer could not be read")),
    (["perl 0 9999 - -"], Reading(None, "the probe printed more than 4096 bytes (4 KiB): print only the version")),
    (["perl 124 0 - -"], Reading(None, "the probe timed out after 10s")),
    ([f"perl 2 0 {hexed('bad thing')} -"], Reading(None, "the probe failed with exit 2: bad thing")),
    (["perl 0 2 - =v1", "perl 0 2 - =v2"], Reading("v1")),
    (["perl 0 2 6162"], Reading(None, "the host did not answer this probe")),
], ids=["text", "text-with-spaces", "text-with-control", "hex", "empty", "missing", "not-hex", "odd-hex",
        "bad-exit", "too-long-hex", "too-long-text", "too-big", "timeout", "failed", "first-wins", "short-line"])
def test_answers_are_read_strictly(lines: list[str], expected: Reading) -> None:
    assert read_components(lines, PERL) == {"perl": expected}


def test_answers_for_components_nobody_asked_about_are_ignored() -> None:
    assert read_components(["ruby 0 1 - =3"], PERL) == {
        "perl": Reading(None, "the host did not answer this probe")}


# ------------------------------------------------------------------------------------- the store


def test_the_store_keeps_each_hosts_latest_values_and_each_deployments(store: Store) -> None:
    first = store.start_deployment(environment="staging", regions=["uk"], release="R1", previous_by_region={},
                                   kind="deploy", user="alice")
    store.record_components("staging", [ComponentRow("s1", "uk", "web", "perl", "5.36"),
                                        ComponentRow("s2", "uk", "web", "perl", None, "timed out")],
                            deployment_id=first)
    store.finish_deployment(first, "succeeded", [])
    store.record_components("staging", [ComponentRow("s1", "uk", "web", "perl", "5.38")])  # status --verify
    assert store.host_components("staging") == [ComponentRow("s1", "uk", "web", "perl", "5.38"),
                                                ComponentRow("s2", "uk", "web", "perl", None, "timed out")]
    assert store.release_components("staging", "R1") == (first, [
        ComponentRow("s1", "uk", "web", "perl", "5.36"), ComponentRow("s2", "uk", "web", "perl", None, "timed out")])
    assert store.release_components("staging", "R2") is None
    assert store.host_components("production") == []
    store.forget_hosts("staging", ["s2"])
    assert [r.host for r in store.host_components("staging")] == ["s1"]


def test_a_failed_deployment_is_not_where_a_release_was_tested(store: Store) -> None:
    failed = store.start_deployment(environment="staging", regions=["uk"], release="R1", previous_by_region={},
                                    kind="deploy", user="alice")
    store.record_components("staging", [ComponentRow("s1", "uk", "web", "perl", "5.36")], deployment_id=failed)
    store.finish_deployment(failed, "failed", ["s1"])
    assert store.release_components("staging", "R1") is None
