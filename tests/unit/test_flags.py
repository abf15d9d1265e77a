"""Flag definitions (flagd's format, validated by JSON Schema) and the flags each region sees."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from conveyor.config.flagging import FlagSettings
from conveyor.config.loader import parse_config
from conveyor.errors import ConfigError
from conveyor.flags import (
    FlagSet,
    Layer,
    Setting,
    changed_flags,
    check_overrides,
    digest,
    document,
    encode,
    load_flags,
    parse_flags,
    resolve,
    set_override,
    switched_on,
)
from conveyor.flags.definitions import schema

YAML = """\
flags:
  new-checkout:
    state: ENABLED
    variants: {"on": true, "off": false}
    defaultVariant: "off"
    requires: {migration: 0042_add_col}
    contract: 0050_drop_old
  banner:
    state: ENABLED
    variants: {plain: plain, festive: festive}
    defaultVariant: plain
    window: false
  old:
    state: DISABLED
    variants: {"on": true, "off": false}
    defaultVariant: "on"
"""


def flags() -> FlagSet:
    return parse_flags(YAML, "flags/flags.yaml")


def problems(text: str, name: str = "flags/flags.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_flags(text, name)
    return [str(p) for p in caught.value.problems]


# -- definitions ----------------------------------------------------------------------------------------------

def test_a_yaml_file_gives_each_flag_its_variants_default_and_conveyor_keys() -> None:
    f = flags().flags
    assert f["new-checkout"].variants == {"on": True, "off": False}
    assert f["new-checkout"].default_variant == "off"
    assert f["new-checkout"].requires_migration == "0042_add_col"
    assert f["new-checkout"].contract == "0050_drop_old"
    assert f["banner"].windowed is False
    assert f["new-checkout"].windowed is True
    assert f["old"].state == "DISABLED"


def test_a_json_file_in_flagds_own_format_is_accepted() -> None:
    text = json.dumps({"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": {
        "f": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
              "targeting": {"if": [{"==": [{"var": "email"}, "x@y"]}, "b"]}}}}, indent="\t")
    parsed = parse_flags(text, "flags.json")
    assert parsed.flags["f"].targeting == {"if": [{"==": [{"var": "email"}, "x@y"]}, "b"]}


def test_conveyors_own_keys_never_reach_the_flagd_definition() -> None:
    body = flags().flags["new-checkout"].flagd()
    assert set(body) == {"state", "variants", "defaultVariant"}


def test_a_missing_default_variant_is_reported_with_its_line() -> None:
    assert problems("flags:\n  f:\n    state: ENABLED\n    variants: {a: true}\n") == [
        "flags/flags.yaml:2: flags.f: 'defaultVariant' is a required property"]


def test_an_unknown_state_is_reported_with_the_states_allowed() -> None:
    out = problems("flags:\n  f:\n    state: RUNNING\n    variants: {a: true}\n    defaultVariant: a\n")
    assert out == ["flags/flags.yaml:3: flags.f.state: expected one of ENABLED, DISABLED, got 'RUNNING'"]


def test_mixed_variant_types_are_refused() -> None:
    out = problems("flags:\n  f:\n    state: ENABLED\n    variants: {a: true, b: text}\n    defaultVariant: a\n")
    assert out == ["flags/flags.yaml:4: flags.f.variants: variants must all be booleans, all text, all numbers "
                   "or all objects"]


def test_a_default_variant_that_is_not_a_variant_is_refused() -> None:
    out = problems("flags:\n  f:\n    state: ENABLED\n    variants: {a: true}\n    defaultVariant: b\n")
    assert out == ["flags/flags.yaml:5: flags.f.defaultVariant: 'b' is not one of its variants (a)"]


def test_unquoted_on_and_off_in_yaml_are_explained() -> None:
    out = problems("flags:\n  f:\n    state: ENABLED\n    variants: {on: true, off: false}\n"
                   "    defaultVariant: 'off'\n")
    assert len(out) == 2
    assert all("quote it" in line and ":4:" in line for line in out)


def test_an_unknown_key_on_a_flag_is_refused() -> None:
    out = problems("flags:\n  f:\n    state: ENABLED\n    variants: {a: true}\n    defaultVariant: a\n"
                   "    owner: me\n")
    assert out == ["flags/flags.yaml:2: flags.f: Additional properties are not allowed ('owner' was unexpected)"]


def test_a_fractional_rule_naming_an_unknown_variant_is_refused() -> None:
    out = problems("flags:\n  f:\n    state: ENABLED\n    variants: {a: true, b: false}\n    defaultVariant: a\n"
                   "    targeting: {fractional: [[a, 50], [c, 50]]}\n")
    assert out == ["flags/flags.yaml:6: flags.f.targeting.fractional.1.0: variant 'c' is not one of f's variants "
                   "(a, b)"]


def test_a_reference_to_a_missing_evaluator_is_refused() -> None:
    out = problems('flags:\n  f:\n    state: ENABLED\n    variants: {a: true}\n    defaultVariant: a\n'
                   '    targeting: {if: [{$ref: staff}, a]}\n')
    assert out == ["flags/flags.yaml:6: flags.f.targeting.if.0.$ref: no evaluator 'staff' under $evaluators"]


def test_requires_release_must_name_a_release_id() -> None:
    out = problems("flags:\n  f:\n    state: ENABLED\n    variants: {a: true}\n    defaultVariant: a\n"
                   "    requires_release: '> 12'\n")
    assert len(out) == 1
    assert out[0].startswith("flags/flags.yaml:6: flags.f.requires_release: expected")


def test_requires_release_keeps_the_id_without_the_operator() -> None:
    parsed = parse_flags("flags:\n  f:\n    state: ENABLED\n    variants: {a: true}\n    defaultVariant: a\n"
                         "    requires_release: '>= 20260101T120000Z-abc1234'\n", "f.yaml")
    assert parsed.flags["f"].requires_release == "20260101T120000Z-abc1234"


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    out = problems("flags:\n  f:\n    state: NO\n    variants: {a: true}\n    defaultVariant: a\n"
                   "  g:\n    state: ENABLED\n    variants: {}\n    defaultVariant: a\n")
    assert [line.split(":")[1] for line in out] == ["3", "8"]


def test_broken_json_says_where() -> None:
    assert problems('{"flags": {\n  "f": }\n}', "flags.json") == ["flags.json:2: JSON error: Expecting value"]


def test_broken_yaml_says_where() -> None:
    out = problems("flags:\n  f: [\n", "flags.yaml")
    assert out[0].startswith("flags.yaml:3: YAML error")


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such flag file"):
        load_flags(tmp_path / "nope.yaml")


def test_the_schema_is_itself_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


# -- conveyor.yml -----------------------------------------------------------------------------------------------

CONFIG = """\
app: www
roles: {web: {}}
environments:
  production:
    regions: {uk: {hosts: {web: [a]}}, za: {hosts: {web: [b]}}}
flags:
  overrides:
    production: {uk: {new-checkout: "on"}}
"""


def test_the_flags_section_parses_with_defaults() -> None:
    config, _ = parse_config(CONFIG, "conveyor.yml", env={})
    assert config.flags is not None
    assert config.flags.file == "flags/flags.yaml"
    assert config.flags.overrides == {"production": {"uk": {"new-checkout": "on"}}}
    assert config.flags.host_path("/srv/www") == "/srv/www/shared/flags.json"


def test_an_override_for_an_unknown_region_is_a_config_error_with_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG.replace("production: {uk:", "production: {us:"), "conveyor.yml", env={})
    assert [str(p) for p in caught.value.problems] == [
        "conveyor.yml:8: flags.overrides.production.us: unknown region 'us' of production (known: uk, za, or '*' "
        "for all)"]


def test_on_change_for_an_unknown_role_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"flags\.on_change\.db: unknown role 'db'"):
        parse_config(CONFIG + "  on_change: {db: reload}\n", "conveyor.yml", env={})


def test_path_on_host_may_be_relative_to_deploy_to_or_absolute() -> None:
    assert FlagSettings(path_on_host="shared/config/flags.json").host_path("/srv/x") == \
        "/srv/x/shared/config/flags.json"
    assert FlagSettings(path_on_host="/etc/www/flags.json").host_path("/srv/x") == "/etc/www/flags.json"
    with pytest.raises(ValueError, match="not a usable file path"):
        FlagSettings(path_on_host="../flags.json")


# -- effective flags ----------------------------------------------------------------------------------------------

YML = Layer("conveyor.yml", {"production": {"*": {"banner": Setting("festive")},
                                            "uk": {"new-checkout": Setting("on")}}})


def test_without_overrides_a_region_sees_the_files_defaults() -> None:
    r = resolve(flags(), "production", "za", [])
    assert {k: (v.variant, v.source) for k, v in r.items()} == {
        "new-checkout": ("off", "file"), "banner": ("plain", "file"), "old": ("on", "file")}


def test_an_environment_wide_override_applies_to_every_region() -> None:
    assert resolve(flags(), "production", "za", [YML])["banner"].source == "conveyor.yml production/*"
    assert resolve(flags(), "production", "za", [YML])["banner"].variant == "festive"


def test_a_regions_own_override_wins_over_the_environments() -> None:
    layer = Layer("conveyor.yml", {"production": {"*": {"banner": Setting("festive")},
                                                  "uk": {"banner": Setting("plain")}}})
    assert resolve(flags(), "production", "uk", [layer])["banner"].variant == "plain"
    assert resolve(flags(), "production", "za", [layer])["banner"].variant == "festive"


def test_a_later_layer_wins_over_an_earlier_even_environment_wide() -> None:
    live = Layer("flags set", {"production": {"*": {"new-checkout": Setting("off")}}})
    r = resolve(flags(), "production", "uk", [YML, live])["new-checkout"]
    assert (r.variant, r.source) == ("off", "flags set production/*")


def test_other_environments_are_untouched_by_an_override() -> None:
    assert resolve(flags(), "staging", "uk", [YML])["new-checkout"].source == "file"


def test_a_percentage_rollout_serves_the_variant_to_a_share_and_the_rest_what_they_had() -> None:
    live = Layer("flags set", {"production": {"za": {"new-checkout": Setting("on", 25)}}})
    r = resolve(flags(), "production", "za", [YML, live])["new-checkout"]
    assert (r.variant, r.percent, r.rest, r.describe()) == ("on", 25, "off", "on 25% (else off)")


def test_a_rollout_over_a_rollout_keeps_the_original_rest() -> None:
    first = Layer("a", {"production": {"za": {"new-checkout": Setting("on", 10)}}})
    second = Layer("b", {"production": {"za": {"new-checkout": Setting("on", 50)}}})
    r = resolve(flags(), "production", "za", [first, second])["new-checkout"]
    assert (r.variant, r.percent, r.rest) == ("on", 50, "off")


def test_a_hundred_percent_is_everyone_and_zero_is_nobody() -> None:
    full = resolve(flags(), "p", "za", [Layer("x", {"p": {"za": {"new-checkout": Setting("on", 100)}}})])
    none = resolve(flags(), "p", "za", [Layer("x", {"p": {"za": {"new-checkout": Setting("on", 0)}}})])
    assert (full["new-checkout"].variant, full["new-checkout"].percent) == ("on", None)
    assert (none["new-checkout"].variant, none["new-checkout"].percent) == ("off", None)


def test_the_document_is_flagd_with_the_override_as_default_variant() -> None:
    doc = document(flags(), resolve(flags(), "production", "uk", [YML]))
    assert doc["$schema"] == "https://flagd.dev/schema/v0/flags.json"
    assert doc["flags"]["new-checkout"] == {"state": "ENABLED", "variants": {"on": True, "off": False},
                                            "defaultVariant": "on"}


def test_a_rollout_becomes_fractional_targeting() -> None:
    live = Layer("s", {"production": {"za": {"new-checkout": Setting("on", 25)}}})
    body = document(flags(), resolve(flags(), "production", "za", [live]))["flags"]["new-checkout"]
    assert body["targeting"] == {"fractional": [["on", 25], ["off", 75]]}
    assert body["defaultVariant"] == "off"


def test_an_override_enables_a_disabled_flag_and_the_file_alone_keeps_it_disabled() -> None:
    assert document(flags(), resolve(flags(), "p", "za", []))["flags"]["old"]["state"] == "DISABLED"
    on = resolve(flags(), "p", "za", [Layer("x", {"p": {"za": {"old": Setting("off")}}})])
    assert document(flags(), on)["flags"]["old"]["state"] == "ENABLED"


def test_equal_documents_have_equal_bytes_and_digests() -> None:
    a = document(flags(), resolve(flags(), "production", "uk", [YML]))
    b = document(parse_flags(YAML, "other.yaml"), resolve(flags(), "production", "uk", [YML]))
    assert encode(a) == encode(b)
    assert digest(a) == digest(b)
    assert digest(a) != digest(document(flags(), resolve(flags(), "production", "za", [YML])))
    assert digest(a).startswith("flags-")
    assert len(digest(a)) == 18


def test_changed_flags_ignores_a_change_of_source_alone() -> None:
    before = resolve(flags(), "production", "uk", [])
    same = resolve(flags(), "production", "uk", [Layer("x", {"production": {"uk": {"banner": Setting("plain")}}})])
    assert changed_flags(before, same) == []
    assert changed_flags(before, resolve(flags(), "production", "uk", [YML])) == ["banner", "new-checkout"]


def test_switched_on_names_flags_a_change_turns_on_even_partly() -> None:
    before = resolve(flags(), "p", "za", [])
    after = resolve(flags(), "p", "za", [Layer("x", {"p": {"za": {"new-checkout": Setting("on", 5)}}})])
    assert [f.key for f in switched_on(flags(), before, after)] == ["new-checkout"]
    off = resolve(flags(), "p", "za", [Layer("x", {"p": {"za": {"new-checkout": Setting("off")}}})])
    assert switched_on(flags(), after, off) == []


def test_the_off_variant_is_the_false_one_else_the_files_default() -> None:
    assert flags().flags["new-checkout"].off_variant == "off"
    assert flags().flags["banner"].off_variant == "plain"
    assert flags().flags["banner"].is_on("festive")


def test_overrides_naming_unknown_flags_or_variants_are_found() -> None:
    found = dict(check_overrides(flags(), {"p": {"uk": {"nope": Setting("on"), "banner": Setting("gold")}}}))
    assert found == {("p", "uk", "nope"): "no flag 'nope' in flags/flags.yaml (flags: new-checkout, banner, old)",
                     ("p", "uk", "banner"): "banner has no variant 'gold' (variants: plain, festive)"}


def test_set_override_copies_and_drops_empty_scopes() -> None:
    start = {"p": {"uk": {"banner": Setting("festive")}}}
    added = set_override(start, "p", "za", "banner", Setting("plain"))
    assert added == {"p": {"uk": {"banner": Setting("festive")}, "za": {"banner": Setting("plain")}}}
    assert start == {"p": {"uk": {"banner": Setting("festive")}}}
    assert set_override(start, "p", "uk", "banner", None) == {}


def test_settings_round_trip_through_json() -> None:
    for setting in (Setting("on"), Setting("on", 25)):
        assert Setting.from_json(json.loads(json.dumps(setting.to_json()))) == setting
