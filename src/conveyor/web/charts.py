"""Bar charts as geometry for server-rendered SVG: each week a bar, scaled to the largest value."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH = 360
HEIGHT = 120
BASELINE = 100  # y of the bars' foot; the labels sit below it


@dataclass(frozen=True)
class Bar:
    """One week's bar: where it stands, and what its tooltip and label say."""

    x: float
    y: float
    width: float
    height: float
    label: str  # the week, short (W49)
    title: str  # the tooltip: the week and the value as a person reads it


@dataclass(frozen=True)
class Chart:
    """A titled bar chart; `empty` when no week has a value (a week of zeros is no empty chart)."""

    title: str
    bars: tuple[Bar, ...]
    peak: str  # the largest value, shown at the top of the scale
    empty: bool
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = BASELINE


def bar_chart(title: str, weeks: Sequence[dict[str, Any]], key: str,
              shown: Callable[[float | None], str]) -> Chart:
    """A chart of `key` in each week (None: no bar), every value shown by `shown`."""
    values = [week.get(key) for week in weeks]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    top = max(numbers, default=0.0)
    slot = WIDTH / max(len(weeks), 1)
    bars = []
    for index, (week, value) in enumerate(zip(weeks, values, strict=True)):
        height = (float(value) / top * (BASELINE - 10)) if top and isinstance(value, int | float) else 0.0
        number = float(value) if isinstance(value, int | float) else None
        bars.append(Bar(x=round(index * slot + slot * 0.15, 1), y=round(BASELINE - height, 1),
                        width=round(slot * 0.7, 1), height=round(height, 1), label=str(week["week"]).split("-")[-1],
                        title=f"{week['week']}: {shown(number)}"))
    return Chart(title=title, bars=tuple(bars), peak=shown(top) if numbers else "-", empty=not numbers)


def dora_charts(weeks: Sequence[dict[str, Any]], duration: Callable[[float | None], str]) -> list[Chart]:
    """The four DORA figures of one environment, a chart each."""

    def count(value: float | None) -> str:
        return "-" if value is None else f"{value:g}"

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    return [
        bar_chart("Deployments", weeks, "deployments", count),
        bar_chart("Lead time for changes (median)", weeks, "lead_time_median_seconds", duration),
        bar_chart("Change failure rate", weeks, "change_failure_rate", percent),
        bar_chart("Time to restore (median)", weeks, "time_to_restore_median_seconds", duration),
    ]
