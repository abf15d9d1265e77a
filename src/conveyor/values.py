"""Small value types the configuration is written in: durations, counts or percents, names, URLs.

A leaf at the bottom of the layers (it imports nothing of conveyor's), beside errors.py and secrets.py: the
config models, the check kinds they hold and whoever reads a config parse and print values with it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# Names that become directory names, shell arguments and URL parts: keep them boring.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HTTP_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


def parse_duration(value: Any) -> float:
    """Seconds from `10s`, `5m`, `1h30m`, `500ms` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got {describe(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if not text:
            raise ValueError(f"expected a duration like 30s, 5m or 1h, got {value!r}")
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(text):
                raise ValueError(f"expected a duration like 30s, 5m or 1h, got {value!r}") from None
    else:
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got {describe(value)}")
    if seconds < 0 or math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"a duration must be zero or more, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form of a number of seconds: `1.2s`, `5m`, `1h30m`."""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds % 1 else f"{int(seconds)}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"type": ["string", "number"], "description": "a duration: 30s, 5m, 1h30m or seconds"}),
]


@dataclass(frozen=True)
class Amount:
    """A number of hosts, absolute (`3`) or relative to a group's size (`25%`)."""

    value: float
    percent: bool

    def of(self, total: int, *, at_least_one: bool = False) -> int:
        """How many hosts this amount is out of `total`."""
        count = math.floor(total * self.value / 100.0 + 1e-09) if self.percent else int(self.value)
        if at_least_one and total > 0:
            count = max(1, count)
        return min(count, total)

    def __str__(self) -> str:
        if self.percent:
            return f"{self.value:g}%"
        return str(int(self.value))


def parse_amount(value: Any) -> Amount:
    """`3` or `25%` (0..100%) into an Amount; negative numbers and fractions are refused."""
    if isinstance(value, Amount):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number of hosts or a percent like 25%, got {describe(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a number of hosts must be zero or more, got {value}")
        return Amount(float(value), percent=False)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            try:
                number = float(text[:-1])
            except ValueError:
                raise ValueError(f"expected a percent like 25%, got {value!r}") from None
            if not 0 <= number <= 100:
                raise ValueError(f"a percent must be between 0% and 100%, got {value!r}")
            return Amount(number, percent=True)
        if text.isdigit():
            return Amount(float(int(text)), percent=False)
    raise ValueError(f"expected a whole number of hosts or a percent like 25%, got {value!r}")


HostAmount = Annotated[
    Amount,
    BeforeValidator(parse_amount),
    PlainSerializer(str),
    WithJsonSchema({"type": ["string", "integer"], "description": "a number of hosts or a percent like 25%"}),
]


def describe(value: Any) -> str:
    """How a wrong value is shown in a message: what YAML made of it, and the value itself when short."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    kind = {bool: "boolean", int: "number", float: "number", str: "text"}.get(type(value), type(value).__name__)
    return f"{kind} {value!r}"


def whole_number(value: Any) -> Any:
    """Refuse booleans where a number is expected: YAML reads `yes`/`true` as True, which is not 1."""
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {describe(value)}")
    return value


# YAML reads `true`/`yes` as a boolean, which pydantic would otherwise take as 1.
Int = Annotated[int, BeforeValidator(whole_number)]


def http_url(value: str, message: str) -> str:
    """`value` if it is an http:// or https:// URL with a host (and no whitespace), else ValueError(message)."""
    if not _HTTP_URL.match(value):
        raise ValueError(message)
    return value


def check_name(value: Any, what: str) -> str:
    """A name that is safe as a directory name and a shell word."""
    if not isinstance(value, str):
        raise ValueError(f"expected a name (text), got {describe(value)}")
    if not NAME_RE.match(value):
        raise ValueError(
            f"{what} name {value!r} must start with a letter or digit and use only letters, digits, '.', '_', '-'"
        )
    return value
