"""DORA charts as SVG geometry (web/charts.py): bars scaled to the largest week, gaps where nothing was measured."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")

from conveyor.operations.dora import duration
from conveyor.web.charts import BASELINE, bar_chart, dora_charts

WEEKS = [{"week": "2026-W47", "deployments": 2, "change_failure_rate": None},
         {"week": "2026-W48", "deployments": 0, "change_failure_rate": 0.0},
         {"week": "2026-W49", "deployments": 4, "change_failure_rate": 0.25}]


def test_bars_are_scaled_to_the_largest_week_and_stand_on_the_baseline() -> None:
    chart = bar_chart("Deployments", WEEKS, "deployments", lambda v: f"{v:g}")
    heights = [bar.height for bar in chart.bars]
    assert heights == [45.0, 0.0, 90.0]
    assert all(bar.y + bar.height == BASELINE for bar in chart.bars)
    assert [bar.label for bar in chart.bars] == ["W47", "W48", "W49"]
    assert chart.bars[2].title == "2026-W49: 4"
    assert chart.peak == "4"
    assert not chart.empty


def test_a_week_without_a_measurement_has_no_bar_and_zeros_are_not_no_data() -> None:
    rate = dora_charts(WEEKS, duration)[2]
    assert rate.title == "Change failure rate"
    assert [bar.title for bar in rate.bars] == ["2026-W47: -", "2026-W48: 0%", "2026-W49: 25%"]
    assert not rate.empty
    zeros = bar_chart("Failures", [{"week": "2026-W49", "n": 0}], "n", str)
    assert not zeros.empty
    assert bar_chart("Lead time", WEEKS, "lead_time_median_seconds", duration).empty
