"""Run the `conveyor` CLI in this process with a timeline: where a deploy's wall time goes.

    python bench/conveyor_timeline.py OUT.json -c conveyor.yml deploy prod --release ID --yes --json

Exactly the console script's code path (``conveyor.cli.app.main``), with two things added from outside (no
change to the engine): every engine event is time-stamped as it is emitted, and every SSH connection's setup
is timed. OUT.json gets the imports' time, each host's phases (connect, then each step until the next one,
the last until host_finished) and the rollout's span; `fanout.py --timeline` uses it and summarises it.
"""

from __future__ import annotations

import json
import sys
import time
from itertools import pairwise

T0 = time.monotonic()
RECORD: dict[str, object] = {"events": [], "connects": []}


def _dump(path: str) -> None:
    RECORD["end"] = time.monotonic() - T0
    with open(path, "w") as out:
        json.dump(RECORD, out)


def main() -> None:
    out_path = sys.argv.pop(1)
    from conveyor.engine import events as ev
    from conveyor.transport import clients

    events: list[list[object]] = RECORD["events"]  # type: ignore[assignment]
    connects: list[list[object]] = RECORD["connects"]  # type: ignore[assignment]
    emit = ev.EventBus.emit

    def timed_emit(self: ev.EventBus, event: ev.Event, /) -> None:
        host = getattr(event, "host", None)
        if isinstance(event, ev.HostFinished):
            host = event.outcome.host.name
        events.append([time.monotonic() - T0, event.kind, host, getattr(event, "step", None)])
        emit(self, event)

    ev.EventBus.emit = timed_emit  # type: ignore[method-assign]
    connect = clients.SSHClients.connect  # whichever client (ssh.client) the host has

    async def timed_connect(self: clients.SSHClients, host: object) -> object:
        began = time.monotonic() - T0
        try:
            return await connect(self, host)  # type: ignore[arg-type]
        finally:
            connects.append([began, time.monotonic() - T0, host.name])  # type: ignore[attr-defined]

    clients.SSHClients.connect = timed_connect  # type: ignore[method-assign, assignment]
    from conveyor.cli.app import main as cli

    RECORD["imported"] = time.monotonic() - T0
    try:
        cli(sys.argv[1:])
    finally:
        _dump(out_path)


def summarize(record: dict[str, object]) -> dict[str, object]:
    """Phases: imports, before the first host starts, per-step host time (median and max), after the last."""
    events = record.get("events") or []
    connects = record.get("connects") or []
    by_host: dict[str, list[tuple[float, str, str | None]]] = {}
    first = last = None
    for at, kind, host, step in events:  # type: ignore[misc]
        if kind in ("host_started", "host_step", "host_finished") and host:
            by_host.setdefault(host, []).append((at, kind, step))
            first = at if first is None else min(first, at)
            last = at if last is None else max(last, at)
    phases: dict[str, list[float]] = {}
    for marks in by_host.values():
        for (at, kind, step), (nxt, _, _) in pairwise(marks):
            name = "connect+wait" if kind == "host_started" else (step or kind)
            phases.setdefault(name, []).append(nxt - at)
    out: dict[str, object] = {
        "imports_s": record.get("imported"),
        "before_first_host_s": first,
        "hosts_span_s": None if first is None or last is None else last - first,
        "after_last_host_s": None if last is None else float(record.get("end", last)) - last,  # type: ignore[arg-type]
        "total_s": record.get("end"),
    }
    for name, values in phases.items():
        values.sort()
        out[f"{name}_median_s"] = values[len(values) // 2]
        out[f"{name}_max_s"] = values[-1]
    if connects:
        spans = sorted(end - began for began, end, _ in connects)  # type: ignore[misc]
        out["connects"] = len(spans)
        out["connect_median_s"] = spans[len(spans) // 2]
        out["connect_max_s"] = spans[-1]
    return out


if __name__ == "__main__":
    main()
