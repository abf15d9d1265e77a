"""Who hears about deployments, in `conveyor.yml`: notification targets (`notify:`), Grafana annotations,
git release tags, Prometheus metrics, and the chat handles of commit authors.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from conveyor.config.base import Strict
from conveyor.values import Duration, check_name, describe, http_url

NotifyEvent = Literal["started", "succeeded", "failed", "rolled_back", "blocked", "held", "break_glass",
                      "interrupted"]
NOTIFY_EVENTS: tuple[str, ...] = get_args(NotifyEvent)
_APPRISE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_notify_url(value: str) -> str:
    """An Apprise URL: `scheme://...`, one word. The value is never echoed: it may hold a secret."""
    if not _APPRISE_URL.match(value):
        raise ValueError("expected an Apprise URL like slack://TOKEN_A/TOKEN_B/TOKEN_C, "
                         "mailto://user:pass@example.com or json://host/path (the value is not shown: it may "
                         "hold a secret)")
    return value


def _within_five_minutes(value: float) -> float:
    if not 0 < value <= 300:
        raise ValueError(f"a timeout must be more than zero and at most 5m, got {value:g}s")
    return value


# How long one call to a far end (a message, an annotation) may take: it ends then, whatever the far end does.
CallTimeout = Annotated[Duration, AfterValidator(_within_five_minutes)]


class NotifyTarget(Strict):
    """One place notifications go, and which of them it wants."""

    url: str = Field(description="an Apprise URL; use ${VAR} for its secrets")
    events: list[NotifyEvent] | None = Field(default=None, description="the events to send; all when left out")
    environments: list[str] | None = Field(default=None, description="only deployments to these environments")
    name: str | None = Field(default=None, min_length=1, max_length=80, description="shown in warnings instead "
                             "of the (masked) URL")
    timeout: CallTimeout = Field(default=5.0, description="how long one message may take to send")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_notify_url(value)

    @field_validator("events", "environments")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("list at least one, or leave the field out for all")
        return value

    def wants(self, event: str, environment: str) -> bool:
        """Whether this target asked for `event` of deployments to `environment`."""
        return ((self.events is None or event in self.events)
                and (self.environments is None or environment in self.environments))


def _notify_item(value: Any) -> Any:
    """A notify entry is an Apprise URL (every event), or a mapping {url, events, environments, ...}."""
    if isinstance(value, str):
        return check_notify_url(value)
    if isinstance(value, dict):
        return NotifyTarget.model_validate(value)
    raise ValueError(f"expected an Apprise URL or a mapping like {{url: URL, events: [failed]}}, "
                     f"got {describe(value)}")


# A plain string stays a string (what `notify:` always held); a mapping becomes a NotifyTarget.
NotifyEntry = Annotated[str | NotifyTarget, BeforeValidator(_notify_item, json_schema_input_type=str | NotifyTarget)]


class Grafana(Strict):
    """Annotations on Grafana dashboards: one per region per deployment, from its start to its end."""

    url: str = Field(description="Grafana's base URL, like https://grafana.example.com")
    token_env: str | None = Field(default=None, description="the environment variable holding a service "
                                  "account token (sent as a Bearer token)")
    dashboard_uid: str | None = Field(default=None, min_length=1, description="annotate this dashboard only; "
                                      "organisation-wide when left out")
    timeout: CallTimeout = 5.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        # The URL may hold a secret: the message does not repeat it.
        return http_url(value, "expected Grafana's http:// or https:// URL, like https://grafana.example.com").rstrip("/")

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"expected the name of an environment variable like GRAFANA_TOKEN, got {value!r}")
        return value


def _authors(value: Any) -> Any:
    """Emails are matched without regard to case; a handle is any non-empty text (`@alice`, `<@U123>`)."""
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for email, handle in value.items():
        if not isinstance(email, str) or "@" not in email.strip("@"):
            raise ValueError(f"{email!r}: expected a git author email like alice@example.com")
        if not isinstance(handle, str) or not handle.strip():
            raise ValueError(f"{email}: expected a handle like \"@alice\", got {describe(handle)}")
        out[email.strip().lower()] = handle.strip()
    return out


# git author email → chat handle (`authors:`).
Authors = Annotated[dict[str, str], BeforeValidator(_authors)]

# A git remote's name: no spaces, never an option (it is passed to `git push` as an argument).
GIT_REMOTE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


def _push_remote(value: Any) -> Any:
    """`push: false` (or null) pushes nothing; `push: origin` names the remote the tags go to."""
    if value is None or value is False:
        return None
    if isinstance(value, str) and GIT_REMOTE_RE.match(value):
        return value
    raise ValueError(f"expected false or the name of a git remote like origin, got {describe(value)}")


class GitSettings(Strict):
    """Release tags `deploy/<env>/<region>/<release-id>` on the commit each region now runs."""

    tags: bool = Field(default=False, description="tag the release's commit when a region finishes moving")
    push: Annotated[str | None, BeforeValidator(_push_remote, json_schema_input_type=bool | str | None)] = Field(
        default=None, description="false, or the remote the tags are pushed to when the deployment ends")
    timeout: Duration = Field(default=60.0, description="how long pushing the tags may take (git and what it "
                              "started are stopped then)")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= 600:
            raise ValueError(f"a timeout must be more than zero and at most 10m, got {value:g}s")
        return value

    @model_validator(mode="after")
    def _push_needs_tags(self) -> GitSettings:
        if self.push and not self.tags:
            raise ValueError(f"push: {self.push} sends release tags, so it needs tags: true")
        return self


class MetricsSettings(Strict):
    """Deployment metrics for Prometheus: pushed to a Pushgateway, written for node_exporter, or both."""

    pushgateway: str | None = Field(default=None, description="the Pushgateway's URL, like http://127.0.0.1:9091")
    textfile: str | None = Field(default=None, description="a .prom file in node_exporter's textfile directory "
                                 "(relative to conveyor.yml unless absolute)")
    job: str = Field(default="conveyor", description="the job of the Pushgateway group")
    timeout: Duration = Field(default=5.0, description="how long a push may take")

    @field_validator("pushgateway")
    @classmethod
    def _pushgateway(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return http_url(value, "expected the Pushgateway's http:// or https:// URL, like http://127.0.0.1:9091, "
                               f"got {value!r}").rstrip("/")

    @field_validator("textfile")
    @classmethod
    def _textfile(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(c in value for c in "\n\r\0"):
            raise ValueError(f"{value!r} contains a control character")
        if not value.endswith(".prom") or value.endswith("/.prom"):
            raise ValueError(f"expected a file name ending in .prom (node_exporter reads only those), got {value!r}")
        return value

    @field_validator("job")
    @classmethod
    def _job(cls, value: str) -> str:
        return check_name(value, "job")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= 60:
            raise ValueError(f"a timeout must be more than zero and at most 1m, got {value:g}s")
        return value

    @property
    def enabled(self) -> bool:
        """Whether any target is configured."""
        return bool(self.pushgateway or self.textfile)
