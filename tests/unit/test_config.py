"""conveyor.yml: every error a user can make, as `FILE:LINE: field.path: message` lines; and what parses.

Most cases are a table of (YAML text, the exact lines `conveyor validate` would print). The line
numbers are those of the YAML as written in the case, counting from 1.
"""

from __future__ import annotations

import textwrap
from importlib import resources
from pathlib import Path

import pytest

from conveyor.config.loader import MAX_NODES, load_config, parse_config
from conveyor.config.models import Config
from conveyor.errors import ConfigError, ConfigProblem
from conveyor.secrets import MASK, mask
from conveyor.values import Amount, format_duration, parse_amount, parse_duration

FILE = "conveyor.yml"
NAME_RULE = "must start with a letter or digit and use only letters, digits, '.', '_', '-'"


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    """The printed problem lines for a config text that must not validate."""
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), FILE, env={} if env is None else env)
    assert info.value.exit_code == 2
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return [str(p) for p in info.value.problems]


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    config, _ = parse_config(textwrap.dedent(text), FILE, env={} if env is None else env)
    return config


def case(text: str, *expected: str, id: str) -> object:
    return pytest.param(text, list(expected), id=id)


# --- the table of errors ---------------------------------------------------------------------------------

ERROR_CASES = [
    # YAML syntax: the line and column of the problem, and where the unfinished construct began.
    case(
        """\
        app: www
        roles: [web
        """,
        "conveyor.yml:3: YAML syntax error at column 1: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence that started at line 2, column 8)",
        id="yaml-unclosed-flow-list",
    ),
    case(
        """\
        app: www
          roles: {}
        """,
        "conveyor.yml:2: YAML syntax error at column 8: mapping values are not allowed here",
        id="yaml-bad-indentation",
    ),
    case(
        "app: www\n\troles: {}\n",
        "conveyor.yml:2: YAML syntax error at column 1: found character '\\t' that cannot start any token",
        id="yaml-tab",
    ),
    case(
        """\
        app: www
        roles: *defaults
        """,
        "conveyor.yml:2: YAML syntax error at column 8: found undefined alias 'defaults'",
        id="yaml-undefined-alias",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        app: shop
        """,
        "conveyor.yml:5: app: duplicate key 'app' (first at line 1)",
        id="duplicate-top-level-key",
    ),
    case(
        """\
        app: www
        roles:
          web:
            restart: "systemctl reload www"
            restart: "systemctl restart www"
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:5: roles.web.restart: duplicate key 'restart' (first at line 4)",
        id="duplicate-nested-key",
    ),
    # Unknown keys, wherever they are.
    case(
        """\
        app: www
        colour: blue
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:2: colour: unknown field",
        id="unknown-key-top-level",
    ),
    case(
        """\
        app: www
        roles:
          web:
            restrat: "systemctl reload www"
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:4: roles.web.restrat: unknown field; did you mean `restart`?",
        id="unknown-key-in-role",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging:
            regions:
              uk:
                hosts: {web: [web-1]}
                sssh: {user: deploy}
        """,
        "conveyor.yml:8: environments.staging.regions.uk.sssh: unknown field; did you mean `ssh`?",
        id="unknown-key-in-region",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging:
            regions:
              uk:
                hosts:
                  web:
                    - {name: web-1, adress: 10.0.0.1}
        """,
        "conveyor.yml:9: environments.staging.regions.uk.hosts.web.0.adress: unknown field; did you mean `address`?",
        id="unknown-key-in-host-mapping",
    ),
    case(
        """\
        app: www
        roles:
          web:
            checks: [{http: "http://127.0.0.1/health", exepct: 200}]
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:4: roles.web.checks.0.exepct: unknown field; did you mean `expect`?",
        id="unknown-key-in-check",
    ),
    # Wrong types.
    case(
        """\
        app: www
        keep_releases: five
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:2: keep_releases: expected a whole number, got text 'five'",
        id="keep-releases-text",
    ),
    case(
        """\
        app: www
        keep_releases: yes
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:2: keep_releases: expected a whole number, got boolean True",
        id="keep-releases-boolean-is-not-1",
    ),
    case(
        """\
        app: www
        keep_releases: 2.5
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:2: keep_releases: expected a whole number, got number 2.5",
        id="keep-releases-fraction",
    ),
    case(
        """\
        app: www
        roles: [web, batch]
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:2: roles: expected a mapping, got a list",
        id="roles-is-a-list",
    ),
    case(
        """\
        app: www
        roles:
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:2: roles: expected a mapping, got nothing (null)",
        id="roles-is-empty",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging:
            regions:
              uk:
                hosts:
                  web: web-1
        """,
        "conveyor.yml:8: environments.staging.regions.uk.hosts.web: expected a list of host names like "
        "[web-1, web-2], got text 'web-1'",
        id="hosts-role-is-a-string",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging:
            regions:
              uk: {hosts: {web: [web-1, 5, ~]}}
        """,
        "conveyor.yml:6: environments.staging.regions.uk.hosts.web.1: expected a host name or a mapping like "
        "{name: web-1, address: 10.0.0.1}, got number 5",
        "conveyor.yml:6: environments.staging.regions.uk.hosts.web.2: expected a host name or a mapping like "
        "{name: web-1, address: 10.0.0.1}, got nothing (null)",
        id="host-entry-not-a-name",
    ),
    case(
        """\
        app: 5
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:1: app: expected a name (text), got number 5",
        id="app-is-a-number",
    ),
    case(
        """\
        app: www
        deploy_to: 5
        roles: {web: {}}
        environments:
          staging:
            transport: ftp
            regions: {uk: {hosts: {web: [web-1]}}}
        """,
        "conveyor.yml:2: deploy_to: expected text, got number 5",
        "conveyor.yml:6: environments.staging.transport: expected 'local' or 'ssh', got text 'ftp'",
        id="text-and-choice-fields",
    ),
    case(
        """\
        app: www
        shared: log
        roles: {web: {}}
        environments:
          staging:
            waves: [uk]
            regions: {uk: {hosts: {web: [web-1]}}}
        """,
        "conveyor.yml:2: shared: expected a list, got text 'log'",
        "conveyor.yml:6: environments.staging.waves.0: expected a list, got text 'uk'",
        id="list-fields-given-text",
    ),
    # Required fields.
    case(
        """\
        deploy_to: /srv/www
        """,
        "conveyor.yml:1: app: required field is missing",
        "conveyor.yml:1: environments: required field is missing",
        "conveyor.yml:1: roles: required field is missing",
        id="missing-app-roles-environments",
    ),
    case(
        """\
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:1: app: required field is missing",
        id="missing-app",
    ),
    case(
        """\
        app: www
        roles: {}
        environments:
          staging:
            regions: {}
        """,
        "conveyor.yml:2: roles: define at least one role",
        "conveyor.yml:5: environments.staging.regions: define at least one region",
        id="empty-roles-and-regions",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [{address: 10.0.0.1}]}}}}
        """,
        "conveyor.yml:4: environments.staging.regions.uk.hosts.web.0.name: required field is missing",
        id="host-mapping-without-name",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging:
            regions:
              uk: {hosts: {web: [web-1]}}
              za: {}
              us: {hosts: {web: []}}
        """,
        "conveyor.yml:7: environments.staging.regions.za.hosts: a region needs at least one host",
        "conveyor.yml:8: environments.staging.regions.us.hosts: a region needs at least one host",
        id="region-without-hosts",
    ),
    # Out of range.
    case(
        """\
        app: www
        keep_releases: 0
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:2: keep_releases: must be at least 1, got 0",
        id="keep-releases-zero",
    ),
    case(
        """\
        app: www
        roles:
          web:
            batch: 150%
          batch:
            batch: -1
          daemon:
            max_failures: abc
            canary: 1.5
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:4: roles.web.batch: a percent must be between 0% and 100%, got '150%'",
        "conveyor.yml:6: roles.batch.batch: a number of hosts must be zero or more, got -1",
        "conveyor.yml:8: roles.daemon.max_failures: expected a whole number of hosts or a percent like 25%, "
        "got 'abc'",
        "conveyor.yml:9: roles.daemon.canary: expected a whole number of hosts or a percent like 25%, got 1.5",
        id="host-amounts",
    ),
    case(
        """\
        app: www
        ssh: {port: 70000, known_hosts: maybe, connect_timeout: soon, command_timeout: -5}
        roles: {web: {}}
        environments:
          staging:
            regions:
              uk: {hosts: {web: [{name: web-1, port: 0}]}}
        """,
        "conveyor.yml:2: ssh.command_timeout: a duration must be zero or more, got -5",
        "conveyor.yml:2: ssh.connect_timeout: expected a duration like 30s, 5m or 1h, got 'soon'",
        "conveyor.yml:2: ssh.known_hosts: expected 'strict' or 'accept-new', got text 'maybe'",
        "conveyor.yml:2: ssh.port: must be at most 65535, got 70000",
        "conveyor.yml:7: environments.staging.regions.uk.hosts.web.0.port: must be at least 1, got 0",
        id="ssh-settings",
    ),
    case(
        """\
        app: www
        roles:
          web:
            checks: [{http: "http://127.0.0.1/", expect: 700, retries: -1}]
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:4: roles.web.checks.0.expect: must be at most 599, got 700",
        "conveyor.yml:4: roles.web.checks.0.retries: must be at least 0, got -1",
        id="check-numbers",
    ),
    # References between sections.
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging:
            regions:
              uk:
                hosts:
                  web: [web-1]
                  db: [db-1]
        """,
        "conveyor.yml:9: environments.staging.regions.uk.hosts.db: unknown role 'db'; known: web",
        id="hosts-under-unknown-role",
    ),
    case(
        """\
        app: www
        roles: {web: {}, batch: {}}
        environments:
          staging:
            regions:
              uk: {hosts: {web: [web-1, web-2], batch: [web-1]}}
              za: {hosts: {web: [WEB-2]}}
          production:
            regions:
              uk: {hosts: {web: [web-1]}}
        """,
        "conveyor.yml:6: environments.staging.regions.uk.hosts.batch.0: duplicate host 'web-1' (also in uk/web)",
        "conveyor.yml:7: environments.staging.regions.za.hosts.web.0: duplicate host 'WEB-2' (also in uk/web)",
        id="duplicate-hosts-in-an-environment",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          production:
            waves: [[uk], [zz]]
            regions:
              uk: {hosts: {web: [uk-1]}}
        """,
        "conveyor.yml:5: environments.production.waves.1.0: unknown region 'zz'; known: uk",
        id="wave-names-unknown-region",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          production:
            waves: [[uk]]
            regions:
              uk: {hosts: {web: [uk-1]}}
              za: {hosts: {web: [za-1]}}
        """,
        "conveyor.yml:5: environments.production.waves: regions in no wave would never deploy: za",
        id="region-in-no-wave",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          production:
            waves:
              - [uk]
              - [za, uk]
              - [za, za]
            regions:
              uk: {hosts: {web: [uk-1]}}
              za: {hosts: {web: [za-1]}}
        """,
        "conveyor.yml:7: environments.production.waves.1.1: region 'uk' is in more than one wave (also in wave 1)",
        "conveyor.yml:8: environments.production.waves.2.0: region 'za' is in more than one wave (also in wave 2)",
        "conveyor.yml:8: environments.production.waves.2.1: region 'za' is in more than one wave (also in wave 2)",
        id="region-in-two-waves",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          production:
            waves: []
            regions: {uk: {hosts: {web: [uk-1]}}}
          qa:
            waves: [[uk], []]
            regions: {uk: {hosts: {web: [qa-1]}}}
        """,
        "conveyor.yml:5: environments.production.waves: waves must list at least one wave",
        "conveyor.yml:8: environments.qa.waves: a wave must name at least one region",
        id="empty-waves",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging:
            promote_from: qa
            regions: {uk: {hosts: {web: [stg-1]}}}
          production:
            promote_from: production
            regions: {uk: {hosts: {web: [prd-1]}}}
        """,
        "conveyor.yml:5: environments.staging.promote_from: unknown environment 'qa'; known: staging, production",
        "conveyor.yml:8: environments.production.promote_from: an environment cannot promote from itself",
        id="promote-from-unknown-and-self",
    ),
    case(
        """\
        app: www
        ssh: {jump: "bastion:ssh"}
        roles: {web: {}}
        environments:
          staging:
            ssh: {jump: "-oProxyCommand=sh"}
            regions:
              uk: {hosts: {web: [web-1]}, ssh: {jump: "ops@bastion:70000"}}
        """,
        "conveyor.yml:2: ssh.jump: expected [user@]host[:port] like deploy@bastion.example.com:22, got 'bastion:ssh'",
        "conveyor.yml:6: environments.staging.ssh.jump: expected [user@]host[:port] like "
        "deploy@bastion.example.com:22, got '-oProxyCommand=sh'",
        "conveyor.yml:8: environments.staging.regions.uk.ssh.jump: expected [user@]host[:port] like "
        "deploy@bastion.example.com:22, got 'ops@bastion:70000'",
        id="bad-jump-host",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          production:
            window: office
            regions: {uk: {hosts: {web: [prd-1]}}}
        """,
        "conveyor.yml:5: environments.production.window: unknown window 'office'; "
        "no windows are defined (add it under windows:)",
        id="unknown-window-none-defined",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          production:
            window: office
            migration_window: nights
            regions: {uk: {hosts: {web: [prd-1]}}}
        windows:
          office-hours: {timezone: UTC, allow: [{days: mon-fri}]}
        """,
        "conveyor.yml:5: environments.production.window: unknown window 'office'; known: office-hours",
        "conveyor.yml:6: environments.production.migration_window: unknown window 'nights'; known: office-hours",
        id="unknown-window",
    ),
    # Windows.
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        windows:
          office:
            timezone: Mars/Olympus_Mons
            allow: [{days: mon-fri}]
        """,
        "conveyor.yml:7: windows.office.timezone: unknown time zone 'Mars/Olympus_Mons'",
        id="unknown-time-zone",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        windows:
          office:
            timezone: Europe/London
            allow:
              - {hours: "9-17"}
              - {hours: "09:00-25:00"}
              - {hours: "09:00-09:00"}
              - {days: funday}
              - {reason: "nothing to match"}
            allw: []
        """,
        'conveyor.yml:9: windows.office.allow.0.hours: expected "HH:MM-HH:MM", got \'9-17\'',
        "conveyor.yml:10: windows.office.allow.1.hours: hour 25 is out of range",
        "conveyor.yml:11: windows.office.allow.2.hours: start and end are the same; "
        "write 00:00-24:00 for the whole day",
        "conveyor.yml:12: windows.office.allow.3.days: unknown day 'funday' (expected mon..sun)",
        "conveyor.yml:13: windows.office.allow.4: a rule needs at least one of days, hours, month_days, dates",
        "conveyor.yml:14: windows.office.allw: unknown field; did you mean `allow`?",
        id="bad-window-rules",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        windows:
          office:
            allow: [{days: mon-fri}]
        """,
        "conveyor.yml:6: windows.office.timezone: required field is missing",
        id="window-without-time-zone",
    ),
    # Paths.
    case(
        """\
        app: www
        deploy_to: srv/www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:2: deploy_to: expected an absolute path like /srv/www, got 'srv/www'",
        id="relative-deploy-to",
    ),
    case(
        """\
        app: www
        deploy_to: /srv/../
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:2: deploy_to: '/srv/../' is not a usable directory (no '..', not /)",
        id="deploy-to-root",
    ),
    case(
        """\
        app: www
        shared:
          - log
          - ../x
          - /abs
          - tmp/../../etc
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:4: shared.1: shared path '../x' leaves the release",
        "conveyor.yml:5: shared.2: shared path '/abs' must be relative to the release, like log or tmp/uploads",
        "conveyor.yml:6: shared.3: shared path 'tmp/../../etc' leaves the release",
        id="shared-paths-leaving-the-release",
    ),
    # ${VAR} with the environment given explicitly (empty here).
    case(
        """\
        app: www
        deploy_to: /srv/${UNSET_VAR}
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        notify: ["slack://${SLACK_TOKEN}@deploys"]
        """,
        "conveyor.yml:2: deploy_to: environment variable UNSET_VAR is not set",
        "conveyor.yml:6: notify.0: environment variable SLACK_TOKEN is not set",
        id="unset-variable",
    ),
    case(
        """\
        app: ${APP_NAME}
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        # Not followed by "app name '' must start with ...": the value is already reported.
        "conveyor.yml:1: app: environment variable APP_NAME is not set",
        id="unset-variable-reported-once",
    ),
    # Not a mapping at all.
    case("", "conveyor.yml:1: the file is empty; `conveyor init` writes a starter", id="empty-file"),
    case(
        "# just a comment\n\n",
        "conveyor.yml:1: the file is empty; `conveyor init` writes a starter",
        id="only-comments",
    ),
    case(
        """\
        - app: www
        - roles: {}
        """,
        "conveyor.yml:1: expected a mapping of settings (app:, roles:, environments:, ...), got a list",
        id="file-is-a-list",
    ),
    case(
        "\n\nwww\n",
        "conveyor.yml:3: expected a mapping of settings (app:, roles:, environments:, ...), got a single value",
        id="file-is-a-scalar",
    ),
    # Hostile names never reach a shell or an ssh command line.
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging:
            regions:
              uk:
                hosts:
                  web:
                    - "a b"
                    - "$(rm -rf /)"
                    - "-oProxyCommand=x"
                    - {name: "web-1;reboot"}
        """,
        f"conveyor.yml:9: environments.staging.regions.uk.hosts.web.0: host name 'a b' {NAME_RULE}",
        f"conveyor.yml:10: environments.staging.regions.uk.hosts.web.1: host name '$(rm -rf /)' {NAME_RULE}",
        f"conveyor.yml:11: environments.staging.regions.uk.hosts.web.2: host name '-oProxyCommand=x' {NAME_RULE}",
        f"conveyor.yml:12: environments.staging.regions.uk.hosts.web.3.name: host name 'web-1;reboot' {NAME_RULE}",
        id="hostile-host-names",
    ),
    case(
        """\
        app: www
        roles: {web: {}}
        environments:
          staging:
            regions:
              uk:
                hosts:
                  web:
                    - {name: web-1, address: "-oProxyCommand=x", user: "-lroot"}
                    - {name: web-2, address: "$(id)", user: "de ploy"}
        """,
        "conveyor.yml:9: environments.staging.regions.uk.hosts.web.0.address: "
        "address '-oProxyCommand=x' is not a host name or IP address",
        "conveyor.yml:9: environments.staging.regions.uk.hosts.web.0.user: user '-lroot' must start with a "
        "letter, digit or '_' and use only letters, digits, '.', '_', '-', '@', '\\'",
        "conveyor.yml:10: environments.staging.regions.uk.hosts.web.1.address: "
        "address '$(id)' is not a host name or IP address",
        "conveyor.yml:10: environments.staging.regions.uk.hosts.web.1.user: user 'de ploy' must start with a "
        "letter, digit or '_' and use only letters, digits, '.', '_', '-', '@', '\\'",
        id="hostile-address-and-user",
    ),
    case(
        """\
        app: "my app"
        roles: {"we b": {}}
        environments:
          "pro/duction": {regions: {"u k": {hosts: {"we b": [web-1]}}}}
        """,
        f"conveyor.yml:1: app: app name 'my app' {NAME_RULE}",
        f"conveyor.yml:2: roles.we b: role name 'we b' {NAME_RULE}",
        f"conveyor.yml:4: environments.pro/duction: environment name 'pro/duction' {NAME_RULE}",
        f"conveyor.yml:4: environments.pro/duction.regions.u k: region name 'u k' {NAME_RULE}",
        id="hostile-section-names",
    ),
    # Checks.
    case(
        """\
        app: www
        roles:
          web:
            checks:
              - {http: "ftp://127.0.0.1/health"}
              - {http: "http://127.0.0.1/health", command: "curl -f localhost"}
              - {expect: 200}
              - "http://127.0.0.1/health"
              - {command: ""}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:5: roles.web.checks.0.http: expected an http:// or https:// URL, got 'ftp://127.0.0.1/health'",
        "conveyor.yml:6: roles.web.checks.1: a check is one of http:, command:, prometheus:, alerts:, "
        "not http and command",
        "conveyor.yml:7: roles.web.checks.2: a check needs one of http: URL, command: TEXT, prometheus: URL, "
        "alerts: URL",
        "conveyor.yml:8: roles.web.checks.3: expected a mapping like {http: URL, expect: 200} or {command: TEXT}, "
        "got text 'http://127.0.0.1/health'",
        "conveyor.yml:9: roles.web.checks.4.command: must not be empty",
        id="bad-checks",
    ),
    # YAML features we refuse.
    case(
        """\
        app: www
        defaults: &defaults {restart: "true"}
        roles:
          web:
            <<: *defaults
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:2: defaults: unknown field",
        "conveyor.yml:5: roles.web: YAML merge keys (<<) are not supported",
        id="merge-keys",
    ),
    case(
        """\
        app: www
        ? [a, b]
        : c
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """,
        "conveyor.yml:2: keys must be plain strings",
        id="non-scalar-key",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERROR_CASES)
def test_config_errors(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


# --- all at once -----------------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_sorted_by_line() -> None:
    text = """\
        app: www
        keep_releases: 0
        roles:
          web:
            batch: 150%
            restrat: x
        environments:
          staging:
            promote_from: nowhere
            waves: [[uk], [zz]]
            regions:
              uk:
                hosts:
                  web: [web-1, "a b"]
                  db: [db-1]
              za: {hosts: {web: [web-1]}}
        shared: [/abs]
        colour: blue
        """
    assert problems(text) == [
        "conveyor.yml:2: keep_releases: must be at least 1, got 0",
        "conveyor.yml:5: roles.web.batch: a percent must be between 0% and 100%, got '150%'",
        "conveyor.yml:6: roles.web.restrat: unknown field; did you mean `restart`?",
        "conveyor.yml:9: environments.staging.promote_from: unknown environment 'nowhere'; known: staging",
        "conveyor.yml:10: environments.staging.waves: regions in no wave would never deploy: za",
        "conveyor.yml:10: environments.staging.waves.1.0: unknown region 'zz'; known: uk, za",
        f"conveyor.yml:14: environments.staging.regions.uk.hosts.web.1: host name 'a b' {NAME_RULE}",
        "conveyor.yml:15: environments.staging.regions.uk.hosts.db: unknown role 'db'; known: web",
        "conveyor.yml:16: environments.staging.regions.za.hosts.web.0: duplicate host 'web-1' (also in uk/web)",
        "conveyor.yml:17: shared.0: shared path '/abs' must be relative to the release, like log or tmp/uploads",
        "conveyor.yml:18: colour: unknown field",
    ]


def test_cross_checks_skip_what_has_the_wrong_shape() -> None:
    # roles is not a mapping: every host's role would be "unknown"; only the shape is reported.
    text = """\
        app: www
        roles: [web]
        environments:
          staging:
            waves: uk
            regions:
              uk: {hosts: {web: [web-1]}}
        """
    assert problems(text) == [
        "conveyor.yml:2: roles: expected a mapping, got a list",
        "conveyor.yml:5: environments.staging.waves: expected a list, got text 'uk'",
    ]


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10**9 values
    assert problems("\n".join(lines) + "\n") == [
        f"conveyor.yml:1: the document expands to more than {MAX_NODES} values (aliases nested too deep?)"
    ]


def test_problem_without_a_line_or_path() -> None:
    assert str(ConfigProblem("c.yml", None, "", "no such file")) == "c.yml: no such file"
    assert str(ConfigProblem("c.yml", 3, "roles.web", "unknown field")) == "c.yml:3: roles.web: unknown field"


# --- what parses -----------------------------------------------------------------------------------------

FOUR_REGIONS = """\
app: www
deploy_to: /srv/www/
keep_releases: 3
shared: [log, tmp/uploads/]
ssh: {user: deploy, port: 2222, connect_timeout: 10s, command_timeout: 10m, jump: "ops@[2001:db8::9]:2200"}
roles:
  web:
    restart: "sudo systemctl reload www"
    checks:
      - {http: "http://127.0.0.1:8080/health", expect: 200, timeout: 5s, retries: 10}
      - {command: "test -f current/REVISION"}
    batch: 25%
    max_failures: 1
  batch: {restart: "sudo systemctl restart www-batch"}
  processor: {}
  daemon: {batch: 2}
environments:
  staging:
    transport: local
    regions:
      uk: {hosts: {web: [stg-web-1, stg-web-2], batch: [stg-batch-1]}}
  production:
    promote_from: staging
    waves: [[ca], [za], [uk, us]]
    bake: 1h30m
    window: office-hours
    ssh: {user: www}
    regions:
      za:
        hosts:
          web: [za-web-1, za-web-2, za-web-3]
          batch: [za-batch-1]
          processor: [za-proc-1]
          daemon: [za-d-1, {name: za-d-2, address: "10.1.0.12", port: 2200, user: ops, labels: {rack: a}}]
      uk: {hosts: {web: [uk-web-1, uk-web-2], batch: [uk-batch-1]}}
      ca: {hosts: {web: [ca-web-1], batch: [ca-batch-1]}, ssh: {port: 22}}
      us: {hosts: {web: ["[2001:db8::1]", us-web-2], batch: [us-batch-1]}}
windows:
  office-hours:
    timezone: Europe/London
    allow: [{days: mon-thu, hours: "09:00-16:00"}, {days: fri, hours: "09:00-12:00"}]
    deny: [{month_days: "28-31,1-2", reason: "month-end payment runs"}]
"""


def test_valid_four_region_config() -> None:
    # "[2001:db8::1]" is not a valid host *name*: make it an address and check the rest parses.
    text = FOUR_REGIONS.replace('["[2001:db8::1]", us-web-2]', '[{name: us-web-1, address: "2001:db8::1"}, us-web-2]')
    config, lines = parse_config(text, FILE, env={})
    assert config.app == "www"
    assert config.target_dir == "/srv/www"
    assert config.keep_releases == 3
    assert config.shared == ["log", "tmp/uploads"]
    assert list(config.roles) == ["web", "batch", "processor", "daemon"]
    assert config.waves_of("production") == [["ca"], ["za"], ["uk", "us"]]
    assert config.waves_of("staging") == [["uk"]]
    production = config.environments["production"]
    assert list(production.regions) == ["za", "uk", "ca", "us"]
    assert production.bake == 5400.0
    assert production.promote_from == "staging"
    assert config.environments["staging"].transport == "local"
    daemon = production.regions["za"].hosts["daemon"]
    assert [h.name for h in daemon] == ["za-d-1", "za-d-2"]
    assert (daemon[1].address, daemon[1].port, daemon[1].user, daemon[1].labels) == ("10.1.0.12", 2200, "ops",
                                                                                     {"rack": "a"})
    assert production.regions["us"].hosts["web"][0].address == "2001:db8::1"
    web = config.roles["web"]
    assert web.batch.of(8) == 2
    assert web.max_failures.of(8) == 1
    assert [c.describe() for c in web.checks] == ["GET http://127.0.0.1:8080/health expects 200",
                                                  "run 'test -f current/REVISION'"]
    assert config.ssh_for("production", "ca").port == 22
    assert config.ssh_for("production", "za").port == 2222
    assert config.ssh_for("production", "za").user == "www"
    assert config.ssh_for("staging", "uk").user == "deploy"
    assert config.ssh_for("staging", "uk").command_timeout == 600.0
    assert config.ssh_for("staging", "uk").jump == "ops@[2001:db8::9]:2200"
    assert lines[("environments", "production", "waves")] == 24
    assert lines[("environments", "production", "regions", "za", "hosts", "daemon", 1)] == 34


def test_bracketed_ipv6_is_not_a_host_name() -> None:
    assert problems(FOUR_REGIONS) == [
        f"conveyor.yml:37: environments.production.regions.us.hosts.web.0: host name '[2001:db8::1]' {NAME_RULE}"
    ]


def test_same_host_in_two_environments_is_allowed() -> None:
    config = parse("""\
        app: www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
          production: {regions: {uk: {hosts: {web: [web-1]}}}}
        """)
    assert config.environments["production"].regions["uk"].hosts["web"][0].name == "web-1"


def test_anchors_and_aliases_are_allowed() -> None:
    config = parse("""\
        app: www
        roles:
          web: &role {restart: "systemctl reload www", batch: 50%}
          api: *role
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1], api: [api-1]}}}}
        """)
    assert config.roles["api"].restart == "systemctl reload www"
    assert config.roles["api"].batch.of(4) == 2


def test_defaults() -> None:
    config = parse("""\
        app: www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """)
    assert config.target_dir == "/srv/www"
    assert config.keep_releases == 5
    role = config.roles["web"]
    assert (role.canary.of(10), role.batch.of(10), role.max_failures.of(10)) == (1, 2, 0)
    assert config.environments["staging"].transport == "ssh"
    ssh = config.ssh_for("staging", "uk")
    assert (ssh.port, ssh.known_hosts, ssh.connect_timeout) == (22, "strict", 10.0)


def test_starter_config_parses() -> None:
    text = (resources.files("conveyor.config") / "starter.yml").read_text(encoding="utf-8")
    config, _ = parse_config(text, "starter.yml", env={})
    assert config.app == "www"
    assert set(config.environments) == {"staging", "production"}


def test_schema_accepts_the_starter_and_host_names() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    schema = Config.model_json_schema()
    starter = (resources.files("conveyor.config") / "starter.yml").read_text(encoding="utf-8")
    jsonschema.validate(yaml.safe_load(starter), schema)
    bad = yaml.safe_load(starter)
    bad["colour"] = "blue"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# --- values ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("500ms", 0.5),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        ("90", 90.0),
        (90, 90.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "expected a duration like 30s, 5m or 1h, got 'soon'"),
        ("5x", "expected a duration like 30s, 5m or 1h, got '5x'"),
        ("m5", "expected a duration like 30s, 5m or 1h, got 'm5'"),
        ("", "expected a duration like 30s, 5m or 1h, got ''"),
        (-1, "a duration must be zero or more, got -1"),
        ("nan", "a duration must be zero or more, got 'nan'"),
        (True, "expected a duration like 30s, 5m or 1h, got boolean True"),
        (None, "expected a duration like 30s, 5m or 1h, got nothing (null)"),
    ],
)
def test_parse_duration_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (1.5, "1.5s"), (300, "5m"), (5400, "1h30m"), (3661, "1h1m1s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "total", "count", "shown"),
    [
        ("25%", 8, 2, "25%"),
        ("25%", 10, 2, "25%"),  # rounded down: never more hosts than asked for
        ("25%", 3, 0, "25%"),
        ("100%", 7, 7, "100%"),
        ("33.3%", 3, 0, "33.3%"),
        ("0%", 10, 0, "0%"),
        (3, 10, 3, "3"),
        (3, 2, 2, "3"),  # never more than there are
        ("3", 10, 3, "3"),
        (0, 5, 0, "0"),
    ],
)
def test_parse_amount(value: object, total: int, count: int, shown: str) -> None:
    amount = parse_amount(value)
    assert amount.of(total) == count
    assert str(amount) == shown


def test_amount_at_least_one() -> None:
    assert parse_amount("25%").of(3, at_least_one=True) == 1
    assert parse_amount(0).of(0, at_least_one=True) == 0
    assert parse_amount(Amount(10.0, percent=True)) == Amount(10.0, percent=True)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("150%", "a percent must be between 0% and 100%, got '150%'"),
        ("-5%", "a percent must be between 0% and 100%, got '-5%'"),
        ("many%", "expected a percent like 25%, got 'many%'"),
        (-1, "a number of hosts must be zero or more, got -1"),
        ("abc", "expected a whole number of hosts or a percent like 25%, got 'abc'"),
        (2.5, "expected a whole number of hosts or a percent like 25%, got 2.5"),
        (True, "expected a whole number of hosts or a percent like 25%, got boolean True"),
    ],
)
def test_parse_amount_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_amount(value)
    assert str(info.value) == message


# --- ${VAR} ----------------------------------------------------------------------------------------------


def test_variables_are_substituted_and_masked() -> None:
    token = "xoxb-config-test-7f3a9c"
    config = parse(
        """\
        app: www
        deploy_to: /srv/${APP_DIR}
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        notify: ["slack://${SLACK_TOKEN}@deploys", "mailto://ops@example.com"]
        """,
        env={"SLACK_TOKEN": token, "APP_DIR": "www-app"},
    )
    assert config.notify[0] == f"slack://{token}@deploys"
    assert config.deploy_to == "/srv/www-app"
    assert mask(f"notifying {config.notify[0]}") == f"notifying slack://{MASK}@deploys"
    assert mask(config.notify[1]) == "mailto://ops@example.com"


def test_variables_come_only_from_the_given_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_ONLY_IN_OS_ENV", "/srv/x")
    text = """\
        app: www
        deploy_to: ${CONVEYOR_TEST_ONLY_IN_OS_ENV}
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        """
    assert problems(text, env={}) == [
        "conveyor.yml:2: deploy_to: environment variable CONVEYOR_TEST_ONLY_IN_OS_ENV is not set"
    ]
    config, _ = parse_config(textwrap.dedent(text), FILE)  # env=None: the process environment
    assert config.deploy_to == "/srv/x"


def test_substituted_value_is_validated() -> None:
    text = """\
        app: www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: ["${HOST}"]}}}}
        """
    assert parse(text, env={"HOST": "web-9"}).environments["staging"].regions["uk"].hosts["web"][0].name == "web-9"
    assert problems(text, env={"HOST": "x; rm -rf /"}) == [
        f"conveyor.yml:4: environments.staging.regions.uk.hosts.web.0: host name 'x; rm -rf /' {NAME_RULE}"
    ]


# --- reading files ---------------------------------------------------------------------------------------


def test_load_config_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "conveyor.yml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert [str(p) for p in info.value.problems] == [f"{missing}: no such file; `conveyor init` writes a starter"]


def test_load_config_directory_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a config file"
    latin = tmp_path / "latin.yml"
    latin.write_bytes("app: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(latin)
    assert str(info.value) == f"{latin}: is not UTF-8 text"


def test_load_config_names_the_file_and_resolves_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "deploy.yml").write_text("app: www\nroles: {web: {}}\nkeep_releases: 0\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("deploy.yml")
    assert str(info.value).splitlines() == [
        "deploy.yml:1: environments: required field is missing",
        "deploy.yml:3: keep_releases: must be at least 1, got 0",
    ]
    monkeypatch.setenv("CONVEYOR_CONFIG", "deploy.yml")
    (tmp_path / "deploy.yml").write_text(
        "app: www\nroles: {web: {}}\nenvironments: {s: {regions: {uk: {hosts: {web: [w1]}}}}}\n", encoding="utf-8"
    )
    loaded = load_config()
    assert loaded.path == tmp_path / "deploy.yml"
    assert loaded.directory == tmp_path
