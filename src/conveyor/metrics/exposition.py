"""The Prometheus text exposition format (version 0.0.4), written by hand: families of samples as text.

Pure functions; `promtool check metrics` accepts what `render` writes (tests/unit/test_metrics_exposition.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
KINDS = ("counter", "gauge", "untyped")


@dataclass(frozen=True)
class Sample:
    """One value of a family, with its labels."""

    labels: Mapping[str, str]
    value: float


@dataclass
class Family:
    """A metric: name, type, help text and its samples (one per label set)."""

    name: str
    kind: str
    help: str
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _METRIC_NAME.match(self.name):
            raise ValueError(f"{self.name!r} is not a Prometheus metric name")
        if self.kind not in KINDS:
            raise ValueError(f"{self.kind!r} is not one of {', '.join(KINDS)}")

    def add(self, value: float, **labels: str) -> None:
        """Add a sample."""
        for name in labels:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a Prometheus label name")
        self.samples.append(Sample(labels, value))


def escape_label(value: str) -> str:
    """A label value inside double quotes: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """A HELP text: backslash and line feed escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: whole numbers without a fraction (timestamps keep every digit), NaN, +Inf, -Inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family], *, drop_labels: Iterable[str] = ()) -> str:
    """The families as exposition text: HELP and TYPE, then each sample, labels sorted by name.

    `drop_labels` are left out of every sample (the Pushgateway adds its grouping key's labels itself, and
    refuses pushed metrics that carry them too). Samples that become identical keep only the first.
    """
    dropped = set(drop_labels)
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        seen: set[str] = set()
        for sample in family.samples:
            labels = ",".join(f'{name}="{escape_label(value)}"' for name, value in sorted(sample.labels.items())
                              if name not in dropped)
            key = f"{family.name}{{{labels}}}" if labels else family.name
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"{key} {format_value(sample.value)}")
    return "\n".join(lines) + "\n" if lines else ""
