"""What every gate is given and what it answers: a `GateContext` in, a `GateVerdict` out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.gates import windows
from conveyor.gates.analysis import Fetch, http_fetch
from conveyor.gates.drift import Answer

if TYPE_CHECKING:
    from conveyor.config.models import Config, Environment
    from conveyor.errors import ConveyorError
    from conveyor.flags import FlagFacts

class LockHolder(Protocol):
    """Who holds an environment's lock (the state store's LockInfo is one)."""

    def describe(self) -> str:
        """One sentence naming the holder."""
        ...


class GateLedger(Protocol):
    """What gates read from the state store (conveyor.state.store.Store is one). Gates never write."""

    def lock_holder(self, environment: str) -> LockHolder | None:
        """The live holder of an environment's lock, or None."""
        ...

    def succeeded_in(self, environment: str, release: str) -> bool:
        """Whether a deployment of `release` to `environment` succeeded."""
        ...

    def approval(self, approval_id: int) -> dict[str, Any] | None:
        """One approval request, or None."""
        ...

    def host_components(self, environment: str) -> Sequence[Answer]:
        """Every host's latest answer for each component (consistency)."""
        ...

    def release_components(self, environment: str, release: str) -> tuple[int, Sequence[Answer]] | None:
        """The stack `release` last succeeded on in `environment`: that deployment and its hosts' answers."""
        ...


class PlannedMigration(Protocol):
    """A migration a deployment would run, judged (operations.migrations.Judged is one)."""

    @property
    def name(self) -> str:
        """Its name, as the release's migrations directory has it."""
        ...

    @property
    def cls(self) -> str:
        """safe | needs-window | breaking: the worst of its statements."""
        ...

    @property
    def findings(self) -> Sequence[Mapping[str, Any]]:
        """{line, rule, class, message, hint} for each statement that is not safe."""
        ...


class RegionSchema(Protocol):
    """What a deployment would do to one region's schema (operations.migrations.RegionMigrations is one)."""

    @property
    def expand(self) -> Sequence[PlannedMigration]:
        """The release's own migrations, run before the region's hosts switch."""
        ...

    @property
    def to_run(self) -> Sequence[PlannedMigration]:
        """Every migration the deployment runs in the region, in order."""
        ...


def _now() -> datetime:
    return windows.now()  # looked up when called: a test clock replaces `windows.now`


@dataclass(frozen=True)
class GateContext:
    """One deploy or rollback as the gates see it: which release goes where, and what the request asks for.

    Built by the operation from its workspace and request; a gate reads nothing else (the state store only
    through `ledger`, the clock only through `at`, Alertmanager only through `fetch`)."""

    config: Config
    ledger: GateLedger
    environment: str
    kind: str                                        # "deploy", "rollback" or "flags"
    release: str | None                              # None: a rollback whose target the hosts will say
    regions: tuple[str, ...]                         # the regions that would move
    # A rollback to a named release (`--to`) is held by promotion like a deploy; one to "the previous" is not.
    explicit: bool = True
    manifest: Mapping[str, Any] = field(default_factory=dict)  # what the state store recorded of the release
    requested_regions: tuple[str, ...] = ()          # --region as given (none: every region)
    overrides: tuple[str, ...] = ()                  # break_glass, skip_promotion, force: audited, need a reason
    reason: str | None = None
    approval: int | None = None                      # --request ID
    auto: bool = False                               # a pipeline deploying on merge
    # The operation takes the lock right after the gates, atomically: a held lock is refused there.
    lock_follows: bool = False
    migrations: Mapping[str, RegionSchema] | None = None  # region → its planned migrations (None: not judged)
    flags: FlagFacts | None = None                   # what the flags gate judges (None: no flags configured)
    at: datetime = field(default_factory=_now)       # the moment windows are judged at
    fetch: Fetch = http_fetch                        # how the alerts gate asks Alertmanager

    @property
    def settings(self) -> Environment:
        """The environment's configuration."""
        return self.config.environments[self.environment]


@dataclass(frozen=True)
class GateVerdict:
    """What one gate says now. A closed gate holds the deployment unless `override` lets it through."""

    name: str                    # "lock", "promotion", ...: what plan shows and audit events name
    open: bool
    detail: str                  # one sentence: why it is open or closed
    override: str | None = None  # the request's audited override that lets this closed gate through
    # What a deploy stops with when this gate holds (None: HeldError("ENV is held: DETAIL")).
    refusal: ConveyorError | None = field(default=None, compare=False)
    listed: bool = True          # among plan's `gates` (approval and migrations speak through `holds`)
    warning: bool = False        # open, but the person deploying must hear it (shown, recorded, in the result)

    @property
    def holds(self) -> bool:
        """Closed, and not overridden."""
        return not self.open and self.override is None

    def to_json(self) -> dict[str, Any]:
        """As plan's `gates` list shows it: {"gate", "open", "detail"} and "overridden" when overridden."""
        out: dict[str, Any] = {"gate": self.name, "open": self.open, "detail": self.detail}
        if self.override is not None:
            out["overridden"] = self.override
        if self.warning:
            out["warning"] = True
        return out
