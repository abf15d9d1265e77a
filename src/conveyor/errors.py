"""The errors Conveyor raises, and the exit code each one maps to.

ConveyorError                 exit 1 unless a subclass says otherwise
├── UsageError                exit 2  bad arguments on the command line
│   └── MigrationRefused      a release's migration (or a rollback across one) the schema cannot take
├── ConfigError               exit 2  conveyor.yml is missing or invalid (carries every problem found)
├── ArtifactError             exit 2  the artifact cannot be built, read or is unsafe to ship
├── HeldError                 exit 3  a gate or a lock holds the deployment; nothing was changed
│   ├── LockHeld              the environment is locked by someone else
│   └── PromotionRefused      the release has not succeeded where it must be promoted from
├── StateError                exit 1  the state store cannot be read or written
├── LockLost                  exit 3  another controller took over the lock of a running deployment: it stopped
├── Interrupted               130 (SIGINT) / 143 (SIGTERM)  a person or the system stopped a deployment
├── TransportError            exit 1  a host cannot be reached or stopped answering
├── InventoryError            exit 1  a region's inventory (command, AWS) cannot be read or says nonsense
└── DeploymentFailed          exit 1  hosts failed beyond max_failures; carries every host's outcome
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ConveyorError(Exception):
    """Root of every error Conveyor reports to a user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(ConveyorError):
    """The command line asks for something that does not make sense."""

    exit_code = 2


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file, located as precisely as we can."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class MigrationRefused(UsageError):
    """A release's migrations, or a rollback across them, are refused before anything changes."""


class ConfigError(ConveyorError):
    """The configuration is missing or invalid; `problems` lists every problem at once."""

    exit_code = 2

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class ArtifactError(ConveyorError):
    """The artifact cannot be built or read, or holds something we refuse to ship."""

    exit_code = 2


class HeldError(ConveyorError):
    """A gate holds the deployment; nothing was changed."""

    exit_code = 3


class LockHeld(HeldError):
    """The environment's lock is held by a live holder."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class PromotionRefused(HeldError):
    """The release has not succeeded in the environment it must be promoted from."""


class StateError(ConveyorError):
    """The state store cannot be reached, read or written."""


class LockLost(ConveyorError):
    """The lock a deployment held is someone else's now: the deployment stopped before its next host changed.

    Raised by the state store when a write carries a fencing token the lock no longer has, and by deploy and
    rollback (with `result`, every host's outcome) once the rollout has stopped.
    """

    exit_code = 3

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class Interrupted(ConveyorError):
    """A signal (Ctrl-C, SIGTERM) stopped a deployment; `result` holds every host's outcome so far. The exit code
    is the shell's for that signal: 128 + its number."""

    def __init__(self, message: str, result: Any = None, *, signal_number: int = 2) -> None:
        super().__init__(message)
        self.result = result
        self.exit_code = 128 + signal_number


class TransportError(ConveyorError):
    """A host cannot be reached, or stopped answering."""


class InventoryError(ConveyorError):
    """A region's hosts cannot be found: its inventory command or AWS failed, or answered nonsense."""

    def __init__(self, message: str, *, environment: str | None = None, region: str | None = None,
                 provider: str | None = None) -> None:
        super().__init__(message)
        self.environment = environment
        self.region = region
        self.provider = provider


class DeploymentFailed(ConveyorError):
    """The deployment failed; `result` holds every host's outcome."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result
