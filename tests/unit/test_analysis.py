"""Analysis checks against canned Prometheus and Alertmanager answers, and bake periods on a virtual clock.

Nothing here touches the network: `fetch` is a fake that records each URL and answers from a script, and
`watch` runs on virtual time (a sleep wakes when every task is waiting and the clock jumps to it).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import math
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from conveyor.checks.alerts import measure_alerts
from conveyor.checks.prometheus import evaluate_condition, measure_prometheus
from conveyor.config.models import AlertsCheck, Check, CommandCheck, HttpCheck, PrometheusCheck
from conveyor.errors import TransportError
from conveyor.gates.analysis import (
    MIN_INTERVAL,
    Measurement,
    Scope,
    Verdict,
    WatchResult,
    estimate,
    http_fetch,
    preflight_alerts,
    watch,
)

PROM = "http://prom.example:9090"
AM = "http://am.example:9093"
ZA = Scope(app="www", environment="production", region="za", release="20260101T000000Z-abcdef12")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

Answer = tuple[int, bytes] | Exception
T = TypeVar("T")


def prom_check(**fields: Any) -> PrometheusCheck:
    base: dict[str, Any] = {"prometheus": PROM, "query": 'app_error_ratio{region="$region"}',
                            "condition": "result < 0.01"}
    return PrometheusCheck.model_validate(base | fields)


def alerts_check(**fields: Any) -> AlertsCheck:
    return AlertsCheck.model_validate({"alerts": AM, "matchers": {"region": "$region"}} | fields)


def vector(*samples: tuple[dict[str, str], str]) -> Answer:
    result = [{"metric": metric, "value": [1767225600.0, value]} for metric, value in samples]
    return 200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def scalar(value: str) -> Answer:
    return 200, json.dumps({"status": "success", "data": {"resultType": "scalar",
                                                          "result": [1767225600.0, value]}}).encode()


def alerts(*labels: dict[str, str]) -> Answer:
    body = [{"labels": lab, "annotations": {}, "startsAt": "2026-03-02T09:00:00Z", "endsAt": "2026-03-02T11:00:00Z",
             "fingerprint": f"{i:016x}", "receivers": [{"name": "null"}], "updatedAt": "2026-03-02T09:00:00Z",
             "status": {"state": "active", "silencedBy": [], "inhibitedBy": []}} for i, lab in enumerate(labels)]
    return 200, json.dumps(body).encode()


class FakeFetch:
    """Answers GETs from a script (one answer per call; the last one repeats) and records every URL."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.urls: list[str] = []
        self.timeouts: list[float] = []

    async def __call__(self, url: str, timeout: float) -> tuple[int, bytes]:
        self.urls.append(url)
        self.timeouts.append(timeout)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def measure(check: PrometheusCheck, *answers: Answer, scope: Scope = ZA) -> Measurement:
    return run(measure_prometheus(check, scope, fetch=FakeFetch(*answers), now=lambda: T0))


# -- conditions and substitution ----------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "value", "met"), [
    ("result < 0.01", 0.005, True), ("result < 0.01", 0.01, False), ("result <= 0.01", 0.01, True),
    ("result > 5", 6, True), ("result >= 5", 4.9, False), ("result == 0", 0, True), ("result != 0", 0, False),
    ("result < 1e-3", 0.0001, True), ("result > -1", -2, False),
    ("result < 0.01", math.inf, False), ("result > 0", math.inf, True), ("result < 0", -math.inf, True),
])
def test_condition_compares_the_value_with_the_threshold(condition: str, value: float, met: bool) -> None:
    assert evaluate_condition(condition, value) is met


def test_a_malformed_condition_is_refused() -> None:
    with pytest.raises(ValueError, match=r"result < 0\.01"):
        evaluate_condition("value < 1", 0)


FULL = Scope(app="www", environment="production", region="za", release="R1", host="za-web-1")


@pytest.mark.parametrize(("text", "expected"), [
    ('rate{region="$region"}', 'rate{region="za"}'),
    ("$app/$environment/$region/$release/$host", "www/production/za/R1/za-web-1"),
    ("za$region", "zaza"),                         # letters before: still the variable
    ("$regionx $region_1 $region9", "$regionx $region_1 $region9"),  # letters after: another word, left alone
    ("$region-$region.$region", "za-za.za"),       # punctuation ends a name
    ("$$region", "$region"),                       # $$ is a literal dollar
    ("cost $$5 in $region", "cost $5 in za"),
    ("$$$region", "$za"),
    ("$unknown $ $", "$unknown $ $"),
    ("$environments", "$environments"),
    ("$hostname", "$hostname"),
    ("", ""),
])
def test_substitution_replaces_whole_variable_names(text: str, expected: str) -> None:
    assert FULL.substitute(text) == expected


def test_substitution_of_a_missing_value_is_empty() -> None:
    scope = Scope(app="www", environment="staging")
    assert scope.substitute('x{region="$region",host="$host",release="$release"}') == \
        'x{region="",host="",release=""}'


def test_scope_describes_its_narrowest_part() -> None:
    assert FULL.describe() == "host za-web-1"
    assert ZA.describe() == "region za"
    assert Scope(app="www", environment="staging").describe() == "environment staging"


# -- Prometheus -----------------------------------------------------------------------------------------


def test_the_query_is_substituted_and_url_encoded() -> None:
    fetch = FakeFetch(vector(({"region": "za"}, "0.001")))
    check = prom_check(query='sum(rate(errors{region="$region", release="$release"}[5m])) / 2 > 0 + 1',
                       timeout="3s")
    run(measure_prometheus(check, ZA, fetch=fetch))
    (url,) = fetch.urls
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{PROM}/api/v1/query"
    assert parse_qs(parts.query) == {"query": [
        'sum(rate(errors{region="za", release="20260101T000000Z-abcdef12"}[5m])) / 2 > 0 + 1']}
    for raw in (" ", '"', "{"):
        assert raw not in url
    assert "+" not in parts.query
    assert fetch.timeouts == [3.0]


def test_a_value_that_meets_the_condition_passes() -> None:
    m = measure(prom_check(), vector(({"__name__": "app_error_ratio", "region": "za"}, "0.002")))
    assert (m.verdict, m.value, m.kind, m.scope, m.condition) == (Verdict.PASS, 0.002, "prometheus", "region za",
                                                                  "result < 0.01")
    assert m.check == 'prometheus app_error_ratio{region="$region"} ⇒ result < 0.01'
    assert m.at == T0
    assert 'app_error_ratio{region="za"} 0.002 meets result < 0.01' in m.detail


def test_a_value_that_misses_the_condition_fails() -> None:
    m = measure(prom_check(), vector(({"region": "za"}, "0.2")))
    assert (m.verdict, m.value) == (Verdict.FAIL, 0.2)
    assert "0.2 fails result < 0.01" in m.detail


def test_one_failing_series_among_several_fails_with_the_worst_value() -> None:
    m = measure(prom_check(), vector(({"region": "za", "pod": "a"}, "0.001"), ({"region": "za", "pod": "b"}, "0.05"),
                                     ({"region": "za", "pod": "c"}, "0.3"), ({"region": "za", "pod": "d"}, "0")))
    assert (m.verdict, m.value) == (Verdict.FAIL, 0.3)
    assert m.detail.startswith("2 of 4 series fail result < 0.01: ")
    assert '{pod="c", region="za"}=0.3, {pod="b", region="za"}=0.05' in m.detail
    assert 'pod="a"' not in m.detail


def test_the_worst_value_follows_the_direction_of_the_condition() -> None:
    m = measure(prom_check(condition="result > 100"),
                vector(({"i": "1"}, "50"), ({"i": "2"}, "7"), ({"i": "3"}, "500")))
    assert (m.verdict, m.value) == (Verdict.FAIL, 7.0)


def test_several_series_that_all_pass_report_the_one_closest_to_failing() -> None:
    m = measure(prom_check(), vector(({"i": "1"}, "0.001"), ({"i": "2"}, "0.009")))
    assert (m.verdict, m.value) == (Verdict.PASS, 0.009)
    assert "all 2 series meet result < 0.01" in m.detail


def test_a_scalar_is_judged_by_its_value() -> None:
    assert measure(prom_check(query="scalar(x)"), scalar("0.001")).verdict is Verdict.PASS
    m = measure(prom_check(query="scalar(x)"), scalar("3"))
    assert (m.verdict, m.value) == (Verdict.FAIL, 3.0)


def test_infinity_is_a_number_compared_as_any_other() -> None:
    m = measure(prom_check(on_nan="pass"), vector(({"region": "za"}, "+Inf")))
    assert (m.verdict, m.value) == (Verdict.FAIL, math.inf)
    assert m.to_json()["value"] == "+Inf"
    assert measure(prom_check(condition="result > 0"), scalar("+Inf")).verdict is Verdict.PASS
    assert measure(prom_check(condition="result < 0"), scalar("-Inf")).verdict is Verdict.PASS


@pytest.mark.parametrize("policy", ["fail", "pass", "inconclusive"])
def test_an_empty_result_follows_on_empty(policy: str) -> None:
    m = measure(prom_check(on_empty=policy), vector())
    assert m.verdict == Verdict(policy)
    assert m.value is None
    assert f"returned no series; on_empty: {policy}" in m.detail


def test_an_empty_result_is_inconclusive_by_default() -> None:
    assert measure(prom_check(), vector()).verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize("policy", ["fail", "pass", "inconclusive"])
def test_nan_follows_on_nan(policy: str) -> None:
    for answer in (vector(({"region": "za"}, "NaN")), scalar("NaN")):
        m = measure(prom_check(on_nan=policy, on_empty="fail"), answer)
        assert m.verdict == Verdict(policy)
        assert isinstance(m.value, float)
        assert math.isnan(m.value)
        assert f"on_nan: {policy}" in m.detail
        assert m.to_json()["value"] == "NaN"
        json.dumps(m.to_json(), allow_nan=False)


@pytest.mark.parametrize(("policy", "verdict"), [("fail", Verdict.FAIL), ("pass", Verdict.PASS),
                                                 ("inconclusive", Verdict.INCONCLUSIVE)])
def test_nan_among_passing_series_follows_on_nan(policy: str, verdict: Verdict) -> None:
    m = measure(prom_check(on_nan=policy), vector(({"i": "1"}, "0.001"), ({"i": "2"}, "NaN")))
    assert m.verdict is verdict
    assert '1 NaN (on_nan: ' + policy + '): {i="2"}' in m.detail


def test_a_failing_series_outweighs_a_nan_that_is_inconclusive() -> None:
    m = measure(prom_check(on_nan="inconclusive"), vector(({"i": "1"}, "0.5"), ({"i": "2"}, "NaN")))
    assert (m.verdict, m.value) == (Verdict.FAIL, 0.5)


def test_a_query_prometheus_refuses_is_inconclusive() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected <EOF>"}
    m = measure(prom_check(), (200, json.dumps(body).encode()))
    assert m.verdict is Verdict.INCONCLUSIVE
    assert "bad_data: 1:5: parse error" in m.detail


def test_an_http_error_is_inconclusive_and_says_what_prometheus_said() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "invalid parameter \"query\""}
    m = measure(prom_check(), (400, json.dumps(body).encode()))
    assert m.verdict is Verdict.INCONCLUSIVE
    assert m.detail == f'Prometheus at {PROM} answered HTTP 400: invalid parameter "query"'


def test_http_500_is_inconclusive() -> None:
    m = measure(prom_check(), (500, b"internal error\n"))
    assert (m.verdict, m.value) == (Verdict.INCONCLUSIVE, None)
    assert "answered HTTP 500: internal error" in m.detail


def test_an_unreachable_prometheus_is_inconclusive_never_a_pass() -> None:
    m = measure(prom_check(on_empty="pass"), TransportError("GET http://prom.example:9090/...: Connection refused"))
    assert m.verdict is Verdict.INCONCLUSIVE
    assert m.detail.startswith(f"Prometheus at {PROM} cannot be asked: ")
    assert "Connection refused" in m.detail


def test_an_answer_that_is_not_json_is_inconclusive() -> None:
    m = measure(prom_check(), (200, b"<html>login</html>"))
    assert m.verdict is Verdict.INCONCLUSIVE
    assert "not JSON" in m.detail


def test_a_range_vector_is_inconclusive() -> None:
    body = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    m = measure(prom_check(query="x[5m]"), (200, json.dumps(body).encode()))
    assert m.verdict is Verdict.INCONCLUSIVE
    assert "gave a matrix result" in m.detail


def test_a_garbled_sample_is_inconclusive() -> None:
    body = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": "0.1"}]}}
    assert measure(prom_check(), (200, json.dumps(body).encode())).verdict is Verdict.INCONCLUSIVE


def test_a_fetch_that_never_answers_is_cut_off_at_the_timeout() -> None:
    async def hang(url: str, timeout: float) -> tuple[int, bytes]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    m = run(measure_prometheus(prom_check(timeout=0.01), ZA, fetch=hang))
    assert m.verdict is Verdict.INCONCLUSIVE
    assert "within 0.01s" in m.detail


def test_measurement_to_json_is_plain_json() -> None:
    m = measure(prom_check(), vector(({"region": "za"}, "0.2")))
    assert m.to_json() == {
        "check": 'prometheus app_error_ratio{region="$region"} ⇒ result < 0.01', "kind": "prometheus",
        "scope": "region za", "value": 0.2, "condition": "result < 0.01", "verdict": "fail",
        "at": "2026-03-02T10:00:00+00:00", "detail": m.detail,
    }


# -- Alertmanager -----------------------------------------------------------------------------------


def test_the_alerts_url_asks_for_active_unsilenced_uninhibited_alerts_with_filters() -> None:
    fetch = FakeFetch(alerts())
    check = alerts_check(matchers={"region": "$region", "team": 'pay"ments\\', "env": "$environment"})
    run(measure_alerts(check, ZA, fetch=fetch))
    (url,) = fetch.urls
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{AM}/api/v2/alerts"
    assert parse_qsl(parts.query) == [("active", "true"), ("silenced", "false"), ("inhibited", "false"),
                                      ("filter", 'region="za"'), ("filter", 'team="pay\\"ments\\\\"'),
                                      ("filter", 'env="production"')]
    assert '"' not in url
    assert " " not in url


def test_no_active_alert_passes() -> None:
    m = run(measure_alerts(alerts_check(), ZA, fetch=FakeFetch(alerts()), now=lambda: T0))
    assert (m.verdict, m.value, m.kind, m.scope) == (Verdict.PASS, 0.0, "alerts", "region za")
    assert m.condition == 'no active alert matching {region="za"}'
    assert m.check == "no active alert matching region=$region"


def test_active_alerts_fail_and_are_named() -> None:
    answer = alerts({"alertname": "HighErrorRate", "region": "za", "severity": "page"},
                    {"alertname": "DiskFull", "region": "za"})
    m = run(measure_alerts(alerts_check(), ZA, fetch=FakeFetch(answer)))
    assert (m.verdict, m.value) == (Verdict.FAIL, 2.0)
    assert m.detail == ('2 active alerts: DiskFull{region="za"}, HighErrorRate{region="za", severity="page"}')


def test_an_alert_that_does_not_match_is_not_counted_even_if_the_server_returns_it() -> None:
    m = run(measure_alerts(alerts_check(), ZA, fetch=FakeFetch(alerts({"alertname": "X", "region": "uk"}))))
    assert m.verdict is Verdict.PASS


def test_without_matchers_any_active_alert_fails() -> None:
    fetch = FakeFetch(alerts({"alertname": "Watchdog"}))
    m = run(measure_alerts(alerts_check(matchers={}), ZA, fetch=fetch))
    assert (m.verdict, m.detail) == (Verdict.FAIL, "1 active alert: Watchdog{}")
    assert "filter" not in fetch.urls[0]


@pytest.mark.parametrize("answer", [TransportError("Connection refused"), (503, b"not ready"), (200, b"{}"),
                                    (200, b"nonsense")])
def test_an_alertmanager_that_cannot_be_asked_is_inconclusive(answer: Answer) -> None:
    m = run(measure_alerts(alerts_check(), ZA, fetch=FakeFetch(answer)))
    assert (m.verdict, m.value) == (Verdict.INCONCLUSIVE, None)
    assert "Alertmanager" in m.detail


def test_preflight_measures_only_alerts_checks_meant_for_before_start() -> None:
    checks: list[Check] = [prom_check(), alerts_check(name="za alerts"), alerts_check(name="later", before_start=False),
                           alerts_check(name="team", matchers={"team": "payments"}),
                           HttpCheck(http="http://127.0.0.1/health")]
    fetch = FakeFetch(alerts())
    found = run(preflight_alerts(checks, ZA, fetch=fetch))
    assert [m.check for m in found] == ["za alerts", "team"]
    assert len(fetch.urls) == 2
    assert all("/api/v2/alerts?" in url for url in fetch.urls)


# -- watching over time -------------------------------------------------------------------------------


class VirtualTime:
    """A monotonic clock and a sleep on virtual time: when every task waits, time jumps to the next wake."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self.now + max(delay, 0.0), next(self._seq), future))
        if self._driver is None or self._driver.done():
            self._driver = asyncio.ensure_future(self._drive())
        await future

    async def _drive(self) -> None:
        while self._waiters:
            for _ in range(50):  # let every runnable task reach its next wait
                await asyncio.sleep(0)
            wake, _, future = heapq.heappop(self._waiters)
            if not future.done():
                self.now = max(self.now, wake)
                future.set_result(None)


class Script:
    """A measure_other that answers each check from a list of verdicts and notes the time of each call."""

    def __init__(self, time: VirtualTime, verdicts: dict[str, list[Verdict]]) -> None:
        self.time = time
        self.verdicts = verdicts
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, check: Any, scope: Scope) -> Measurement:
        name = check.describe()
        self.calls.append((name, self.time.now - 1000.0))
        queue = self.verdicts[name]
        verdict = queue.pop(0) if len(queue) > 1 else queue[0]
        return Measurement(check=name, kind="command", scope=scope.describe(), value=None, condition="exit 0",
                           verdict=verdict, at=T0, detail=str(verdict))


def command(name: str, **fields: Any) -> CommandCheck:
    return CommandCheck.model_validate({"command": "true", "name": name} | fields)


P, F, U = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE  # U: unsure


def watch_script(checks: Iterable[Any], verdicts: dict[str, list[Verdict]],
                 ) -> tuple[WatchResult, Script, list[Measurement], VirtualTime]:
    time = VirtualTime()
    script = Script(time, verdicts)
    seen: list[Measurement] = []
    result = run(watch(list(checks), ZA, clock=time.clock, sleep=time.sleep, fetch=FakeFetch((599, b"")),
                       measure_other=script, on_measurement=seen.append))
    return result, script, seen, time


def test_count_takes_that_many_measurements_one_interval_apart() -> None:
    result, script, seen, _ = watch_script([command("c", count=4, interval="30s")], {"c": [P]})
    assert [t for _, t in script.calls] == [0, 30, 60, 90]
    assert result.verdict is Verdict.PASS
    assert result.reason == "all 1 check passed"
    assert result.measurements == seen
    assert len(seen) == 4


def test_duration_measures_from_the_start_to_the_end_of_the_bake() -> None:
    result, script, _, _ = watch_script([command("d", duration="1m", interval="20s")], {"d": [P]})
    assert [t for _, t in script.calls] == [0, 20, 40, 60]
    assert result.verdict is Verdict.PASS


def test_duration_that_is_not_a_multiple_of_the_interval_stops_before_overrunning() -> None:
    _, script, _, _ = watch_script([command("d", duration="50s", interval="20s")], {"d": [P]})
    assert [t for _, t in script.calls] == [0, 20, 40]


def test_count_and_duration_stop_at_whichever_comes_first() -> None:
    _, script, _, _ = watch_script([command("a", count=10, duration="30s", interval="10s"),
                                    command("b", count=2, duration="10m", interval="10s")], {"a": [P], "b": [P]})
    assert [t for n, t in script.calls if n == "a"] == [0, 10, 20, 30]
    assert [t for n, t in script.calls if n == "b"] == [0, 10]


def test_without_count_or_duration_a_check_is_measured_once() -> None:
    result, script, _, time = watch_script([command("once", interval="1m")], {"once": [P]})
    assert script.calls == [("once", 0)]
    assert time.sleeps == []
    assert result.verdict is Verdict.PASS


@pytest.mark.parametrize(("limit", "verdicts", "taken", "verdict"), [
    (0, [P, P, F, P, P, P], 3, Verdict.FAIL),          # the first failure is one too many: stop at once
    (0, [P, P, P, P, P, P], 6, Verdict.PASS),
    (1, [P, F, P, P, P, P], 6, Verdict.PASS),          # one failure is within the limit
    (1, [P, F, P, F, P, P], 4, Verdict.FAIL),          # the second is not
    (2, [F, F, P, P, P, P], 6, Verdict.PASS),
    (2, [F, P, F, P, F, P], 5, Verdict.FAIL),
])
def test_failure_limit_counts_failed_measurements_and_stops_early(limit: int, verdicts: list[Verdict], taken: int,
                                                                  verdict: Verdict) -> None:
    result, script, seen, _ = watch_script([command("c", count=6, interval="10s", failure_limit=limit)],
                                           {"c": list(verdicts)})
    assert len(script.calls) == taken
    assert [m.verdict for m in seen] == verdicts[:taken]
    assert result.verdict is verdict
    assert result.failed_checks == (["c"] if verdict is Verdict.FAIL else [])


def test_a_failing_check_stops_the_others() -> None:
    result, script, seen, time = watch_script(
        [command("slow", duration="10m", interval="1m"), command("bad", count=5, interval="15s")],
        {"slow": [P], "bad": [P, P, F]})
    assert result.verdict is Verdict.FAIL
    assert result.failed_checks == ["bad"]
    assert [t for n, t in script.calls if n == "bad"] == [0, 15, 30]
    assert [t for n, t in script.calls if n == "slow"] == [0]
    assert time.now - 1000 < 60
    assert result.reason.startswith("bad failed on region za (3 measurements: 1 failed (limit 0), 0 inconclusive)")
    stopped = [w for w in result.watches if w.name == "slow"]
    assert stopped[0].stopped
    assert stopped[0].verdict is Verdict.PASS
    assert len(seen) == 4


def test_inconclusive_measurements_are_not_failures_but_make_the_watch_inconclusive() -> None:
    result, script, _, _ = watch_script([command("c", count=4, interval="10s", failure_limit=0)],
                                        {"c": [U, U, P, P]})
    assert len(script.calls) == 4
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.failed_checks == []
    assert result.inconclusive_checks == ["c"]
    assert "a person must decide" in result.reason


def test_failures_within_the_limit_and_an_inconclusive_measurement_are_inconclusive() -> None:
    result, _, _, _ = watch_script([command("c", count=3, interval="10s", failure_limit=1)], {"c": [F, U, P]})
    assert result.verdict is Verdict.INCONCLUSIVE


def test_a_failure_beyond_the_limit_outweighs_inconclusive_ones() -> None:
    result, _, _, _ = watch_script([command("a", count=3, interval="10s"), command("b", count=3, interval="10s")],
                                   {"a": [U], "b": [P, F]})
    assert result.verdict is Verdict.FAIL
    assert result.failed_checks == ["b"]


def test_several_checks_run_concurrently_on_their_own_intervals() -> None:
    result, script, seen, time = watch_script(
        [command("fast", duration="1m", interval="15s"), command("slow", duration="1m", interval="30s")],
        {"fast": [P], "slow": [P]})
    assert [t for n, t in script.calls if n == "fast"] == [0, 15, 30, 45, 60]
    assert [t for n, t in script.calls if n == "slow"] == [0, 30, 60]
    assert time.now - 1000 == 60
    assert len(seen) == len(result.measurements) == 8
    assert result.reason == "all 2 checks passed"


def test_a_measurement_that_breaks_is_inconclusive() -> None:
    time = VirtualTime()

    async def broken(check: Any, scope: Scope) -> Measurement:
        raise TransportError("za-web-1: connection lost")

    result = run(watch([command("c", count=2, interval="1s")], ZA, clock=time.clock, sleep=time.sleep,
                       measure_other=broken))
    assert [m.verdict for m in result.measurements] == [U, U]
    assert "connection lost" in result.measurements[0].detail
    assert result.verdict is Verdict.INCONCLUSIVE


def test_watch_measures_prometheus_and_alerts_itself_and_reports_every_measurement() -> None:
    time = VirtualTime()
    fetch = FakeFetch(vector(({"region": "za"}, "0.001")), alerts(), vector(({"region": "za"}, "0.001")), alerts(),
                      vector(({"region": "za"}, "0.5")), alerts())
    recorded: list[Measurement] = []

    async def record(m: Measurement) -> None:
        recorded.append(m)

    checks: list[Check] = [prom_check(count=3, interval="10s"), alerts_check(count=3, interval="10s"),
                           HttpCheck(http="http://127.0.0.1:8080/health", count=3)]
    result = run(watch(checks, ZA, clock=time.clock, sleep=time.sleep, fetch=fetch, on_measurement=record))
    assert result.verdict is Verdict.FAIL
    assert result.failed_checks == [checks[0].describe()]
    # Both are due at 20s; the Prometheus check fails first and the alerts check is stopped before its third.
    assert [m.kind for m in recorded] == ["prometheus", "alerts", "prometheus", "alerts", "prometheus"]
    assert recorded == result.measurements
    assert result.skipped_checks == ["GET http://127.0.0.1:8080/health expects 200"]
    assert "not measured here" in result.reason
    json.dumps(result.to_json(), allow_nan=False)


def test_no_checks_pass_with_a_reason() -> None:
    time = VirtualTime()
    result = run(watch([], ZA, clock=time.clock, sleep=time.sleep))
    assert (result.verdict, result.measurements, result.reason) == (Verdict.PASS, [], "no checks to watch")


def test_interval_zero_does_not_busy_loop() -> None:
    _, script, _, _ = watch_script([command("z", duration="1s", interval=0)], {"z": [P]})
    assert len(script.calls) == round(1 / MIN_INTERVAL) + 1


def test_a_slow_measurement_skips_the_slots_it_missed_and_keeps_the_grid() -> None:
    time = VirtualTime()
    calls: list[float] = []

    async def slow(check: Any, scope: Scope) -> Measurement:
        calls.append(time.now - 1000)
        if len(calls) == 1:
            await time.sleep(25)  # the first takes longer than two intervals
        return Measurement(check="c", kind="command", scope="region za", value=None, condition="", verdict=P,
                           at=T0, detail="")

    run(watch([command("c", duration="1m", interval="10s")], ZA, clock=time.clock, sleep=time.sleep,
              measure_other=slow))
    assert calls == [0, 30, 40, 50, 60]


@pytest.mark.parametrize(("fields", "seconds"), [
    ({}, 0.0), ({"count": 1, "interval": "1m"}, 0.0), ({"count": 5, "interval": "1m"}, 240.0),
    ({"duration": "10m"}, 600.0), ({"duration": "10m", "count": 3, "interval": "1m"}, 120.0),
    ({"duration": "1m", "count": 30, "interval": "10s"}, 60.0),
])
def test_estimate_is_how_long_a_watch_lasts(fields: dict[str, Any], seconds: float) -> None:
    assert estimate(command("c", **fields)) == seconds
    assert estimate(prom_check(**fields)) == seconds


def test_estimate_matches_what_watch_does() -> None:
    for fields in ({"count": 5, "interval": "1m"}, {"duration": "10m", "interval": "1m"},
                   {"duration": "10m", "count": 3, "interval": "1m"}):
        check = command("c", **fields)
        _, _, _, time = watch_script([check], {"c": [P]})
        assert time.now - 1000 == estimate(check)


# -- the default fetch ---------------------------------------------------------------------------------


def test_http_fetch_refuses_other_schemes() -> None:
    with pytest.raises(TransportError, match="only http"):
        run(http_fetch("file:///etc/passwd", 1))
