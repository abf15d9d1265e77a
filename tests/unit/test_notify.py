"""Notifications and annotations as data: what a message says, who it names, what Grafana is sent, how a
target is named without its secrets, the config that asks for them, and delivery that never blocks or
raises. The real sending (Apprise, SMTP, HTTP) is proven in tests/integration/test_notifications.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from conveyor.config.loader import parse_config
from conveyor.config.models import Config, NotifyTarget
from conveyor.engine.events import DeploymentFinished, DeploymentStarted, HostStep
from conveyor.engine.plan import Plan, RegionPlan
from conveyor.engine.results import (
    DeploymentResult,
    DeploymentStatus,
    HostOutcome,
    HostStatus,
    RegionOutcome,
    RegionStatus,
)
from conveyor.errors import ConfigError
from conveyor.inventory import Host
from conveyor.notify import targets
from conveyor.notify.ci import job_url
from conveyor.notify.delivery import Courier, DeliveryError, Failures, redact
from conveyor.notify.grafana import closing, opening
from conveyor.notify.message import (
    Commit,
    Facts,
    FailedHost,
    Message,
    RegionEnd,
    compose,
    end_of_the_path,
    live_for,
)
from conveyor.notify.notifier import Context, Notifier, Recipient
from conveyor.secrets import MASK, register_secret

R1 = "20261126T090000Z-0123abcd"
R2 = "20261127T101500Z-abcd1234"
FILE = "conveyor.yml"


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    config, _ = parse_config(textwrap.dedent(text), FILE, env=env or {})
    return config


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), FILE, env={})
    return [str(p) for p in info.value.problems]


def facts(event: str, **changes: Any) -> Facts:
    base: dict[str, Any] = {"event": event, "app": "shop", "environment": "production", "kind": "deploy",
                            "user": "alice", "regions": ("za", "uk"), "release": R2}
    return Facts(**{**base, **changes})


# -- titles ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("event", "kind", "expected"), [
    ("started", "deploy", f"🚀 shop {R2} deploying to production (za, uk) by alice"),
    ("succeeded", "deploy", f"✅ shop {R2} deployed to production (za, uk) by alice"),
    ("failed", "deploy", f"❌ shop {R2} failed in production (za, uk) by alice"),
    ("rolled_back", "deploy", f"↩️ shop {R2} rolled back in production (za, uk) by alice"),
    ("interrupted", "deploy", f"⚠️ shop {R2} interrupted in production (za, uk) by alice"),
    ("held", "deploy", f"⏸️ shop {R2} held in production (za, uk) by alice"),
    ("blocked", "deploy", f"⛔ shop {R2} blocked from production (za, uk) by alice"),
    ("break_glass", "deploy", f"🔨 shop {R2}: break-glass deploy to production (za, uk) by alice"),
    ("started", "rollback", f"⏪ shop rolling back production (za, uk) to {R2} by alice"),
    ("succeeded", "rollback", f"⏪ shop production (za, uk) rolled back to {R2} by alice"),
    ("failed", "rollback", f"❌ shop rollback to {R2} failed in production (za, uk) by alice"),
    ("started", "flags", f"🚀 shop flag change {R2} deploying to production (za, uk) by alice"),
    ("rolled_back", "flags", f"↩️ shop flag change {R2} rolled back in production (za, uk) by alice"),
])
def test_the_title_says_what_happened_to_which_release_where_and_by_whom(event: str, kind: str,
                                                                         expected: str) -> None:
    assert compose(facts(event, kind=kind)).title == expected


def test_a_rollback_that_has_not_found_its_release_yet_says_so() -> None:
    message = compose(facts("started", kind="rollback", release=None))
    assert message.title == "⏪ shop rolling back production (za, uk) to the previous release by alice"
    assert message.body == "Release: (the previous release)"


@pytest.mark.parametrize(("event", "level"), [
    ("started", "info"), ("succeeded", "success"), ("failed", "failure"), ("rolled_back", "failure"),
    ("interrupted", "failure"), ("blocked", "warning"), ("held", "warning"), ("break_glass", "warning"),
])
def test_the_level_follows_the_outcome(event: str, level: str) -> None:
    assert compose(facts(event)).level == level


# -- bodies ---------------------------------------------------------------------------------------------------


def test_a_rolled_back_deploy_says_where_why_which_hosts_what_went_out_and_where_the_job_is() -> None:
    message = compose(facts(
        "rolled_back",
        previous={"za": R1, "uk": R1},
        ends=(RegionEnd("za", "succeeded"), RegionEnd("uk", "rolled_back", "web canary failed")),
        duration=72.0,
        failed_hosts=(FailedHost("uk-web-1", "uk", "restart", "exit 7: uk-web-1 refuses version 2"),),
        commits=(Commit("abcd1234ef567890", "Alice Example", "alice@example.com", "Round card totals"),),
        summary="uk: web canary failed, switched back",
        job_url="https://gitlab.example.com/shop/-/jobs/42",
    ))
    assert message.body == textwrap.dedent(f"""\
        Regions: za succeeded; uk rolled back (web canary failed)
        Release: {R2} (previous: {R1})
        Duration: 1m12s
        Failed hosts:
          uk-web-1 (uk, restart): exit 7: uk-web-1 refuses version 2
        Commits:
          abcd1234 Alice Example: Round card totals
        Pipeline: https://gitlab.example.com/shop/-/jobs/42""")


def test_a_success_at_the_end_of_the_path_names_the_people_whose_change_is_live() -> None:
    message = compose(facts("succeeded", previous={"za": None, "uk": None}, duration=3.0,
                            ends=(RegionEnd("za", "succeeded"), RegionEnd("uk", "succeeded")),
                            live_for=("@alice", "Bob Builder")))
    assert message.body == textwrap.dedent(f"""\
        Regions: za succeeded; uk succeeded
        Release: {R2} (first deploy)
        Duration: 3s
        Live now for @alice, Bob Builder""")


def test_regions_that_ran_different_releases_before_are_named_with_theirs() -> None:
    body = compose(facts("started", previous={"za": R1, "uk": "20261120T000000Z-99999999"})).body
    assert body == f"Release: {R2} (previous: za {R1}, uk 20261120T000000Z-99999999)"


def test_secrets_and_long_outputs_never_reach_a_message_whole() -> None:
    register_secret("hunter2-notify-secret")
    message = compose(facts("failed", failed_hosts=(
        FailedHost("za-web-1", "za", "restart", "login with hunter2-notify-secret refused " + "x" * 400),
    ) * 12, reason="deploying with hunter2-notify-secret"))
    assert "hunter2-notify-secret" not in message.title + message.body
    assert f"Reason: deploying with {MASK}" in message.body
    lines = message.body.splitlines()
    assert all(len(line) <= 330 for line in lines)
    assert lines[-1] == "  … and 2 more"


# -- who is named --------------------------------------------------------------------------------------------


def test_authors_are_named_by_handle_when_mapped_by_name_otherwise_once_each() -> None:
    commits = [Commit("a" * 40, "Alice Example", "Alice@Example.com", "one"),
               Commit("b" * 40, "Bob Builder", "bob@example.com", "two"),
               Commit("c" * 40, "Alice Example", "alice@example.com", "three")]
    assert live_for(commits, {"alice@example.com": "@alice"}) == ("@alice", "Bob Builder")


def config_with(environments: str) -> Config:
    head = "app: shop\nroles: {web: {}}\nenvironments:\n"
    return parse(head + textwrap.indent(textwrap.dedent(environments), "  "))


def test_the_end_of_the_promotion_path_is_where_nothing_promotes_from() -> None:
    config = config_with("""\
        staging: {regions: {uk: {hosts: {web: [s-1]}}}}
        production: {promote_from: staging, regions: {uk: {hosts: {web: [p-1]}}}}
        sandbox: {regions: {uk: {hosts: {web: [x-1]}}}}
        """)
    assert end_of_the_path(config) == {"production"}


def test_without_a_promotion_path_the_last_environment_is_the_end() -> None:
    config = config_with("""\
        staging: {regions: {uk: {hosts: {web: [s-1]}}}}
        production: {regions: {uk: {hosts: {web: [p-1]}}}}
        """)
    assert end_of_the_path(config) == {"production"}


# -- the CI job ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("environ", "expected"), [
    ({"CI_JOB_URL": "https://gitlab.example.com/shop/-/jobs/42"}, "https://gitlab.example.com/shop/-/jobs/42"),
    ({"GITHUB_SERVER_URL": "https://github.example.com/", "GITHUB_REPOSITORY": "acme/shop",
      "GITHUB_RUN_ID": "991"}, "https://github.example.com/acme/shop/actions/runs/991"),
    ({"GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "991"}, "https://github.com/acme/shop/actions/runs/991"),
    ({"GITHUB_REPOSITORY": "acme/shop"}, None),
    ({}, None),
])
def test_the_pipeline_job_link_comes_from_gitlab_or_github_variables(environ: dict[str, str],
                                                                      expected: str | None) -> None:
    assert job_url(environ) == expected


# -- naming a target without its secrets ---------------------------------------------------------------------


@pytest.mark.parametrize(("url", "shown"), [
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "slack://…"),
    ("json://user:pa55word@hooks.example.com:8080/deploys?token=abc", "json://user:…@hooks.example.com:8080/…"),
    ("mailto://ops@example.com", "mailto://ops@example.com"),
    ("mmost://127.0.0.1:8065/abcdefghijklmnop", "mmost://127.0.0.1:8065/…"),
    ("msteams://tokenA/tokenB/tokenC", "msteams://…"),
    ("not a url", "(an unreadable URL)"),
])
def test_a_target_is_shown_by_scheme_user_and_host_only(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_a_registered_secret_is_masked_even_where_it_looks_like_a_host() -> None:
    register_secret("secret-host.example.com")
    assert redact("json://secret-host.example.com/x") == f"json://{MASK}/…"


# -- Grafana ------------------------------------------------------------------------------------------------


def test_an_annotation_opens_with_the_regions_tags_and_the_dashboard() -> None:
    assert opening(app="shop", environment="production", region="za", release=R2, kind="deploy",
                   user="alice", at_ms=1_700_000_000_000, dashboard_uid="deploys") == {
        "time": 1_700_000_000_000,
        "tags": ["conveyor", "app:shop", "environment:production", "region:za", f"release:{R2}", "kind:deploy"],
        "text": f"shop: deploy {R2} to production/za by alice",
        "dashboardUID": "deploys",
    }


def test_an_annotation_closes_with_its_end_and_outcome() -> None:
    assert closing(app="shop", environment="production", region="uk", release=R2, kind="deploy",
                   user="alice", at_ms=1_700_000_060_000, outcome="rolled_back",
                   message="web canary failed") == {
        "timeEnd": 1_700_000_060_000,
        "tags": ["conveyor", "app:shop", "environment:production", "region:uk", f"release:{R2}", "kind:deploy",
                 "outcome:rolled_back"],
        "text": f"shop: deploy {R2} to production/uk by alice: rolled back (web canary failed)",
    }


# -- the config ---------------------------------------------------------------------------------------------


def test_notify_takes_urls_and_mappings_and_a_url_alone_wants_everything() -> None:
    config = parse("""\
        app: shop
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [s-1]}}}}
          production: {regions: {uk: {hosts: {web: [p-1]}}}}
        notify:
          - "json://hooks.example.com/${HOOK}"
          - {url: "mailto://ops@example.com", events: [failed, rolled_back], environments: [production],
             name: ops mail, timeout: 2s}
        authors: {Alice@Example.com: "@alice"}
        grafana: {url: "https://grafana.example.com/", token_env: GRAFANA_TOKEN, dashboard_uid: deploys}
        """, env={"HOOK": "t0ps3cret-hook"})
    assert config.notify[0] == "json://hooks.example.com/t0ps3cret-hook"
    everything, ops = targets(config)
    assert everything == NotifyTarget(url="json://hooks.example.com/t0ps3cret-hook")
    assert all(everything.wants(event, "staging") for event in ("started", "succeeded", "blocked"))
    assert (ops.events, ops.environments, ops.name, ops.timeout) == (["failed", "rolled_back"], ["production"],
                                                                     "ops mail", 2.0)
    assert ops.wants("failed", "production")
    assert not ops.wants("succeeded", "production")
    assert not ops.wants("failed", "staging")
    assert config.authors == {"alice@example.com": "@alice"}
    assert config.grafana is not None
    assert (config.grafana.url, config.grafana.token_env, config.grafana.dashboard_uid, config.grafana.timeout) \
        == ("https://grafana.example.com", "GRAFANA_TOKEN", "deploys", 5.0)


def test_notify_and_grafana_mistakes_are_reported_with_their_lines() -> None:
    assert problems("""\
        app: www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        notify:
          - json://hooks.example.com/deploys
          - {url: "json://x.example.com/a", events: [failed, sucess]}
          - {url: "json://x.example.com/b", environments: [prod]}
          - {url: "not a url"}
          - {url: "json://x.example.com/c", events: []}
          - 42
          - {url: "json://x.example.com/d", timeout: 0s, colour: red}
        authors: {alice: "@alice"}
        grafana: {url: "grafana.example.com", token_env: "GRAFANA-TOKEN"}
        """) == [
        "conveyor.yml:7: notify.1.events.1: expected 'started', 'succeeded', 'failed', 'rolled_back', 'blocked', "
        "'held', 'break_glass' or 'interrupted', got text 'sucess'",
        "conveyor.yml:8: notify.2.environments.0: unknown environment 'prod'; known: staging",
        "conveyor.yml:9: notify.3.url: expected an Apprise URL like slack://TOKEN_A/TOKEN_B/TOKEN_C, "
        "mailto://user:pass@example.com or json://host/path (the value is not shown: it may hold a secret)",
        "conveyor.yml:10: notify.4.events: list at least one, or leave the field out for all",
        "conveyor.yml:11: notify.5: expected an Apprise URL or a mapping like {url: URL, events: [failed]}, "
        "got number 42",
        "conveyor.yml:12: notify.6.colour: unknown field",
        "conveyor.yml:12: notify.6.timeout: a timeout must be more than zero and at most 5m, got 0s",
        "conveyor.yml:13: authors: 'alice': expected a git author email like alice@example.com",
        "conveyor.yml:14: grafana.token_env: expected the name of an environment variable like GRAFANA_TOKEN, "
        "got 'GRAFANA-TOKEN'",
        "conveyor.yml:14: grafana.url: expected Grafana's http:// or https:// URL, like "
        "https://grafana.example.com",
    ]


def test_an_unset_variable_in_a_notify_url_is_a_config_error_naming_it() -> None:
    assert problems("""\
        app: www
        roles: {web: {}}
        environments:
          staging: {regions: {uk: {hosts: {web: [web-1]}}}}
        notify:
          - {url: "mmost://chat.example.com/${CHAT_TOKEN}"}
        """) == ["conveyor.yml:6: notify.0.url: environment variable CHAT_TOKEN is not set"]


# -- delivery -------------------------------------------------------------------------------------------------


def test_a_failing_target_is_reported_once_however_often_it_fails(capsys: pytest.CaptureFixture[str]) -> None:
    failures = Failures(None, "alice", "production")
    courier = Courier("json://hooks.example.com/…", 1.0, failures)

    def refuse() -> None:
        raise DeliveryError("HTTP 500")

    courier.post(refuse, "started")
    courier.post(refuse, "succeeded")
    assert courier.drain()
    failures.flush(7)
    failures.flush(7)
    assert capsys.readouterr().err == "conveyor: warning: notify json://hooks.example.com/…: HTTP 500\n"
    assert failures.reported == [("json://hooks.example.com/…", "HTTP 500")]


def test_a_target_that_does_not_answer_is_given_up_on_after_its_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    failures = Failures(None, "alice", "production")
    courier = Courier("slow", 0.2, failures)
    release = threading.Event()
    courier.post(lambda: release.wait(30))
    try:
        assert not courier.drain()
    finally:
        release.set()
    failures.flush(None)
    assert capsys.readouterr().err == "conveyor: warning: notify slow: no answer within 0.2s; gave up waiting\n"


class Outbox:
    """A sender that keeps what it is given (the test's stand-in for a chat channel)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.closed = False

    def send(self, message: Message) -> None:
        self.messages.append(message)

    def close(self) -> None:
        self.closed = True


def host(name: str, region: str) -> Host:
    return Host(name=name, environment="production", region=region, role="web", address=name)


def test_the_notifier_sends_each_target_only_the_events_it_asked_for() -> None:
    everything, failures_only = Outbox(), Outbox()
    failures = Failures(None, "alice", "production")
    context = Context(app="shop", environment="production", kind="deploy", user="alice",
                      previous={"za": R1, "uk": R1},
                      commits=lambda release: [Commit("abcd1234" * 5, "Alice Example", "alice@example.com",
                                                      "Round card totals")] if release == R2 else [],
                      authors={"alice@example.com": "@alice"}, live_here=True)
    notifier = Notifier(context, [
        Recipient(NotifyTarget(url="json://a.example.com/x"), everything, Courier("a", 1.0, failures)),
        Recipient(NotifyTarget(url="json://b.example.com/y", events=["failed", "rolled_back"]), failures_only,
                  Courier("b", 1.0, failures)),
    ], failures)
    plan = Plan("production", ((RegionPlan("za", ()), RegionPlan("uk", ())),))
    notifier(DeploymentStarted(id=7, environment="production", deployment_kind="deploy", release=R2, plan=plan,
                               user="alice"))
    notifier(HostStep("za-web-1", "za", "switch"))  # events people do not hear about are ignored
    result = DeploymentResult(7, "production", "deploy", R2, DeploymentStatus.SUCCEEDED, regions=[
        RegionOutcome(region, R2, RegionStatus.SUCCEEDED,
                      hosts=[HostOutcome(host(f"{region}-web-1", region), HostStatus.SUCCEEDED, release=R2,
                                         previous=R1)])
        for region in ("za", "uk")])
    notifier(DeploymentFinished(result))

    assert failures_only.messages == []
    started, succeeded = everything.messages
    assert started.title == f"🚀 shop {R2} deploying to production (za, uk) by alice"
    assert started.body == f"Release: {R2} (previous: {R1})"
    assert succeeded.title == f"✅ shop {R2} deployed to production (za, uk) by alice"
    assert succeeded.body.startswith(f"Regions: za succeeded; uk succeeded\nRelease: {R2} (previous: {R1})\n"
                                     "Duration: ")
    assert succeeded.body.endswith("Commits:\n  abcd1234 Alice Example: Round card totals\nLive now for @alice")
    assert failures.reported == []
    # what sending held is let go once the deployment ends
    assert everything.closed
    assert failures_only.closed


# -- start-up cost ------------------------------------------------------------------------------------------


def test_the_cli_does_not_load_apprise_or_the_notifiers() -> None:
    code = "import sys, conveyor.cli.app; print(sorted(m for m in sys.modules if m.split('.')[0] == 'apprise' " \
           "or m.startswith('conveyor.notify')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_a_release_built_from_uncommitted_changes_says_so() -> None:
    text = compose(facts("succeeded", dirty="uncommitted changes on top of 1a2b3c4d (diff 0123456789ab)")).body
    assert "Built from uncommitted changes on top of 1a2b3c4d (diff 0123456789ab): the commit alone does not say " \
           "what shipped" in text
    assert "Built from" not in compose(facts("succeeded")).body
