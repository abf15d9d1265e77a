"""The Prometheus text exposition format (version 0.0.4): families of samples, written by prometheus-client.

`Family` is what the metrics code fills in, its names checked as it goes; `render` hands the families to
prometheus-client's `generate_latest`, which escapes and formats them. `promtool check metrics` accepts what
`render` writes (tests/unit/test_metrics_exposition.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, UnknownMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What `render` writes (prometheus-client's `generate_latest`), as an HTTP Content-Type."""

# prometheus-client accepts any UTF-8 name (and quotes it); a Pushgateway or a promtool that predates
# UTF-8 names does not, so these are the classic rules.
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
KINDS = ("counter", "gauge", "untyped")
_KINDS: dict[str, type[CounterMetricFamily | GaugeMetricFamily | UnknownMetricFamily]] = {
    "counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "untyped": UnknownMetricFamily}


@dataclass(frozen=True)
class Sample:
    """One value of a family, with its labels."""

    labels: Mapping[str, str]
    value: float


@dataclass
class Family:
    """A metric: name, type, help text and its samples (one per label set, all with the same label names)."""

    name: str
    kind: str
    help: str
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _METRIC_NAME.match(self.name):
            raise ValueError(f"{self.name!r} is not a Prometheus metric name")
        if self.kind not in KINDS:
            raise ValueError(f"{self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"{self.name!r} is a counter, so its name ends in _total")

    def add(self, value: float, /, **labels: str) -> None:
        """Add a sample (a label may be called `value`)."""
        for name in labels:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a Prometheus label name")
        if self.samples and set(labels) != set(self.samples[0].labels):
            raise ValueError(f"{self.name}: every sample has the labels {sorted(self.samples[0].labels)}, "
                             f"not {sorted(labels)}")
        self.samples.append(Sample(labels, value))


def render(families: Iterable[Family], *, drop_labels: Iterable[str] = ()) -> str:
    """The families as exposition text: HELP and TYPE, then each sample, labels sorted by name.

    `drop_labels` are left out of every sample (the Pushgateway adds its grouping key's labels itself, and
    refuses pushed metrics that carry them too). Samples that become identical keep only the first.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected([_metric(family, set(drop_labels)) for family in families]))
    return generate_latest(registry).decode("utf-8")


def _metric(family: Family, dropped: set[str]) -> Metric:
    """The family as prometheus-client's metric family of its kind, without the dropped labels."""
    names = sorted(set(family.samples[0].labels) - dropped) if family.samples else []
    # CounterMetricFamily takes the name without _total off, and puts it back on the family and its samples.
    metric = _KINDS[family.kind](family.name, family.help, labels=names)
    seen: set[tuple[str, ...]] = set()
    for sample in family.samples:
        values = tuple(sample.labels[name] for name in names)
        if values not in seen:
            seen.add(values)
            metric.add_metric(values, sample.value)
    return metric


class _Collected(Collector):
    """Families computed already, as a prometheus-client collector."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics
