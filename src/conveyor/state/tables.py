"""The state store's tables (SQLAlchemy Core). Every row is keyed by app so apps can share a store."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

releases = Table(
    "releases", metadata,
    Column("app", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("user", String(200), nullable=False),
    Column("manifest", JSON, nullable=False),
)

deployments = Table(
    "deployments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app", String(64), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("regions", JSON, nullable=False),
    Column("release", String(64)),
    Column("previous", String(64)),
    Column("previous_by_region", JSON, nullable=False, default=dict),
    Column("kind", String(16), nullable=False),       # deploy | rollback
    Column("status", String(16), nullable=False),     # see DeploymentStatus
    Column("started_at", String(40), nullable=False),
    Column("finished_at", String(40)),
    Column("user", String(200), nullable=False),
    Column("reason", Text),
    Column("failed_hosts", JSON, nullable=False, default=list),
    Column("summary", Text),
    Column("overrides", JSON, default=list),   # break_glass, skip_promotion: audited
    Column("approval_id", Integer),
    Index("ix_deployments_app_env", "app", "environment"),
    # Every command's reap looks for running deployments; the dashboard filters history by status.
    Index("ix_deployments_app_status", "app", "status"),
    # `report dora` and the dashboard read the deployments of a window of time.
    Index("ix_deployments_app_started", "app", "started_at"),
    # History of every environment, newest first: read in order, not sorted.
    Index("ix_deployments_app_id", "app", "id"),
    # Where one release ran (the dashboard's release page).
    Index("ix_deployments_app_release", "app", "release"),
)

host_results = Table(
    "host_results", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", Integer, ForeignKey("deployments.id"), nullable=False),
    Column("host", String(255), nullable=False),
    Column("region", String(64), nullable=False),
    Column("role", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("release", String(64)),
    Column("previous", String(64)),
    Column("step", String(32)),
    Column("exit_code", Integer),
    Column("output_tail", Text),
    Column("error", Text),
    Column("note", Text),
    Column("transferred", Boolean, nullable=False, default=False),
    Column("transfer", Text),
    Column("duration", Float),
    Index("ix_host_results_deployment", "deployment_id", "host"),
)

# What each host runs, as last seen by a deployment or by `status --verify`.
host_state = Table(
    "host_state", metadata,
    Column("app", String(64), primary_key=True),
    Column("environment", String(64), primary_key=True),
    Column("host", String(255), primary_key=True),
    Column("region", String(64), nullable=False),
    Column("role", String(64), nullable=False),
    Column("release", String(64)),
    Column("updated_at", String(40), nullable=False),
    Column("zstd", Boolean),  # whether it can decompress zstd, as its last probe said (None: not known yet)
)

# The release each (environment, region) should run: the source of truth for new hosts.
pointers = Table(
    "pointers", metadata,
    Column("app", String(64), primary_key=True),
    Column("environment", String(64), primary_key=True),
    Column("region", String(64), primary_key=True),
    Column("release", String(64), nullable=False),
    Column("deployment_id", Integer),
    Column("updated_at", String(40), nullable=False),
)

locks = Table(
    "locks", metadata,
    Column("app", String(64), primary_key=True),
    Column("environment", String(64), primary_key=True),
    Column("owner", String(200), nullable=False),      # the user
    Column("machine", String(255), nullable=False),
    Column("pid", Integer),                            # null for a manual lock
    Column("pid_start", String(32)),                   # guards against pid reuse
    Column("reason", Text),
    Column("deployment_id", Integer),
    Column("acquired_at", String(40), nullable=False),
    Column("heartbeat_at", String(40), nullable=False),
    # ISO 8601 in UTC, written and compared by the database's clock: null, held until unlocked (or, for a
    # deployment on this machine, until its process is gone).
    Column("expires_at", String(40)),
    Column("generation", Integer),                     # the holder's fencing token (see lock_grants)
)

# Every taking of an environment's lock, numbered: the holder's number (its generation) is its fencing token,
# and every write a deployment makes checks that the lock still carries it. Never deleted, so a lock that was
# removed and taken again still gets a larger number than any before it, and a deployment that lost its lock
# can name who took it.
lock_grants = Table(
    "lock_grants", metadata,
    Column("app", String(64), primary_key=True),
    Column("environment", String(64), primary_key=True),
    Column("generation", Integer, primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("machine", String(255), nullable=False),
    Column("pid", Integer),
    Column("reason", Text),
    Column("deployment_id", Integer),
    Column("taken_at", String(40), nullable=False),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app", String(64), nullable=False),
    Column("at", String(40), nullable=False),
    Column("user", String(200), nullable=False),
    Column("environment", String(64)),
    Column("kind", String(40), nullable=False),
    Column("deployment_id", Integer),
    Column("data", JSON, nullable=False, default=dict),
    Index("ix_events_app_at", "app", "at"),
)

# Every measurement a check took during a deployment: "why did it roll back?" has an answer.
measurements = Table(
    "measurements", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", Integer, ForeignKey("deployments.id"), nullable=False),
    Column("phase", String(32), nullable=False),       # preflight | verify | canary_bake | bake
    Column("check", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("scope", String(300), nullable=False),
    Column("value", Text),
    Column("condition", Text),
    Column("verdict", String(16), nullable=False),
    Column("at", String(40), nullable=False),
    Column("detail", Text),
    Index("ix_measurements_deployment", "deployment_id"),
)

# Requests to deploy to an environment that needs approval, and who approved (or denied) them.
approvals = Table(
    "approvals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app", String(64), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("release", String(64), nullable=False),
    Column("regions", JSON, nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("requested_at", String(40), nullable=False),
    Column("expires_at", String(40), nullable=False),
    Column("reason", Text),
    Column("approved_by", String(200)),
    Column("approved_at", String(40)),
    Column("used_by", Integer),                       # the deployment that used it
    Column("denied_by", String(200)),                 # or who refused it, when, and why
    Column("denied_at", String(40)),
    Column("denial", Text),
)

# Schema migrations Conveyor applied, per region (each region has its own database): what a rollback must
# not go back across.
migrations = Table(
    "migrations", metadata,
    Column("app", String(64), primary_key=True),
    Column("environment", String(64), primary_key=True),
    Column("region", String(64), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("phase", String(16), nullable=False),       # expand | contract
    Column("class", String(16), nullable=False),       # safe | needs-window | breaking
    Column("sha256", String(64), nullable=False),
    Column("release", String(64), nullable=False),     # the release that carried it when it was applied
    Column("deployment_id", Integer),
    Column("applied_at", String(40), nullable=False),
)

# Each host's stack (conveyor.yml's consistency: components), as its probe last said: in a deployment's
# probe step, `status --verify` or `converge`. `value` is null when the probe failed; `error` says why.
host_components = Table(
    "host_components", metadata,
    Column("app", String(64), primary_key=True),
    Column("environment", String(64), primary_key=True),
    Column("host", String(255), primary_key=True),
    Column("component", String(64), primary_key=True),
    Column("region", String(64), nullable=False),
    Column("role", String(64), nullable=False),
    Column("value", Text),
    Column("error", Text),
    Column("probed_at", String(40), nullable=False),
    Column("deployment_id", Integer),
)

# What each deployment's hosts ran on: the stack a release was tested on, per host.
deployment_components = Table(
    "deployment_components", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", Integer, ForeignKey("deployments.id"), nullable=False),
    Column("host", String(255), nullable=False),
    Column("region", String(64), nullable=False),
    Column("role", String(64), nullable=False),
    Column("component", String(64), nullable=False),
    Column("value", Text),
    Column("error", Text),
    Index("ix_deployment_components_deployment", "deployment_id"),
)

# The dashboard's users (`conveyor user add`): argon2 hashes, never passwords.
users = Table(
    "users", metadata,
    Column("app", String(64), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

# The key the dashboard signs its session cookies with, made once per app and shared by every dashboard on the
# store (a session outlives a restart, and two dashboards behind one proxy accept each other's cookies).
web_keys = Table(
    "web_keys", metadata,
    Column("app", String(64), primary_key=True),
    Column("session_key", String(128), nullable=False),
    Column("created_at", String(40), nullable=False),
)
