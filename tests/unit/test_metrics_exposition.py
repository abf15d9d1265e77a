"""The Prometheus text format Conveyor writes (through prometheus-client): exact text for the tricky parts, values
read back as written, and promtool agrees with it."""

from __future__ import annotations

import math
import os
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.metrics.exposition import Family, render
from conveyor.metrics.publish import group_url

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def families() -> list[Family]:
    total = Family("conveyor_deployments_total", "counter", "Finished deployments.\nBy status.")
    total.add(3, app="shop", environment="production", kind="deploy", status="succeeded")
    total.add(0, app="shop", environment="production", kind="rollback", status="failed")
    last = Family("conveyor_last_success_timestamp_seconds", "gauge", 'When it last "worked" \\ succeeded.')
    last.add(1767323045.0, region='za "south"\\africa\n', environment="production", app="shop")
    duration = Family("conveyor_deployment_duration_seconds", "gauge", "How long it took.")
    duration.add(12.345, app="shop", environment="production", kind="deploy", status="succeeded")
    return [total, last, duration]


def test_render_writes_help_type_and_samples_with_sorted_escaped_labels() -> None:
    assert render(families()) == (
        "# HELP conveyor_deployments_total Finished deployments.\\nBy status.\n"
        "# TYPE conveyor_deployments_total counter\n"
        'conveyor_deployments_total{app="shop",environment="production",kind="deploy",status="succeeded"} 3.0\n'
        'conveyor_deployments_total{app="shop",environment="production",kind="rollback",status="failed"} 0.0\n'
        '# HELP conveyor_last_success_timestamp_seconds When it last "worked" \\\\ succeeded.\n'
        "# TYPE conveyor_last_success_timestamp_seconds gauge\n"
        'conveyor_last_success_timestamp_seconds{app="shop",environment="production",'
        'region="za \\"south\\"\\\\africa\\n"} 1.767323045e+09\n'
        "# HELP conveyor_deployment_duration_seconds How long it took.\n"
        "# TYPE conveyor_deployment_duration_seconds gauge\n"
        'conveyor_deployment_duration_seconds{app="shop",environment="production",kind="deploy",'
        'status="succeeded"} 12.345\n'
    )


def test_labels_the_pushgateway_adds_itself_are_left_out() -> None:
    text = render(families()[:1], drop_labels={"app": "shop", "environment": "production"})
    assert text.splitlines()[2:] == ['conveyor_deployments_total{kind="deploy",status="succeeded"} 3.0',
                                     'conveyor_deployments_total{kind="rollback",status="failed"} 0.0']


@pytest.mark.parametrize(("value", "text"), [
    (0, "0.0"), (3, "3.0"), (12.5, "12.5"), (1767323045.0, "1.767323045e+09"),
    (1767323045.25, "1.76732304525e+09"), (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
    (1e-7, "1e-07"),
])
def test_values_keep_every_digit(value: float, text: str) -> None:
    family = Family("conveyor_x", "gauge", "x")
    family.add(value, app="shop")

    written = render([family])

    assert written.splitlines()[-1] == f'conveyor_x{{app="shop"}} {text}'
    [read] = [sample.value for metric in text_string_to_metric_families(written) for sample in metric.samples]
    assert read == value or (math.isnan(read) and math.isnan(value))


def test_label_values_escape_backslash_quote_and_newline() -> None:
    family = Family("conveyor_x", "gauge", "x")
    family.add(1, region='a\\b"c\nd')

    written = render([family])

    assert written.splitlines()[-1] == 'conveyor_x{region="a\\\\b\\"c\\nd"} 1.0'
    [read] = [sample.labels for metric in text_string_to_metric_families(written) for sample in metric.samples]
    assert read == {"region": 'a\\b"c\nd'}


def test_bad_names_are_refused_before_anything_is_written() -> None:
    with pytest.raises(ValueError, match="not a Prometheus metric name"):
        Family("conveyor-deployments", "counter", "x")
    with pytest.raises(ValueError, match="not a Prometheus label name"):
        Family("conveyor_x", "gauge", "x").add(1, **{"bad-label": "v"})
    with pytest.raises(ValueError, match="is a counter, so its name ends in _total"):
        Family("conveyor_deployments", "counter", "x")


def test_every_sample_of_a_family_has_the_same_label_names() -> None:
    family = Family("conveyor_x", "gauge", "x")
    family.add(1, app="shop", region="za")

    with pytest.raises(ValueError, match=r"every sample has the labels \['app', 'region'\], not \['app'\]"):
        family.add(2, app="shop")


def test_the_group_url_quotes_each_part() -> None:
    assert group_url("http://127.0.0.1:9091/", "conveyor", {"app": "shop", "environment": "prod uk"}) == \
        "http://127.0.0.1:9091/metrics/job/conveyor/app/shop/environment/prod%20uk"


def test_promtool_accepts_what_render_writes() -> None:
    if not os.access(PROMTOOL, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (apt-get install prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=render(families()), capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""
