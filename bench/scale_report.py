"""The Markdown sections of the engine benchmark (bench/engine.py) and the history benchmark (bench/history.py),
from their results files; bench/report.py puts them in docs/PERFORMANCE.md beside the fan-out results."""

from __future__ import annotations

from typing import Any


def _load(record: dict[str, Any]) -> str:
    before = record.get("loadavg_before") or []
    after = record.get("loadavg_after") or []
    text = f"{before[0]:.1f}→{after[0]:.1f}" if before and after else "–"
    if record.get("background_cpus") is not None:
        text += f" ({record['background_cpus']:.2f})"
    return text


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _machine(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    src = results.get("source", {})
    dirty = f", with uncommitted changes in {', '.join(src['src_changes'])}" if src.get("src_changes") else ""
    return (f"{m.get('nproc')} CPUs ({m.get('cpu_model')}), {m.get('mem_gib')} GiB, Python {m.get('python')}, "
            f"SQLite {m.get('sqlite')}, {m.get('postgres')}; commit {src.get('commit')}{dirty}; started "
            f"{results.get('started_at')}, `{results.get('command')}`.")


def engine_section(results: dict[str, Any]) -> list[str]:
    """Plan, rollout and state writes at 1,000 to 100,000 simulated hosts, on each store."""
    runs = results.get("runs") or []
    if not runs:
        return []
    targets = results.get("targets", {})
    out = ["## The engine at 100,000 hosts", "",
           "`bench/engine.py`: one deployment of N hosts (4 regions in 2 waves, 4 roles, batches of 25%) through "
           "the config loader, the plan, the rollout and the state store, with a transport that answers every host "
           "script at once (no I/O: what is measured is Conveyor's own controller work). Each run is its own "
           "process against an empty store; the deployment holds the environment's lock and writes under its "
           "lease as `conveyor deploy` does (host results and what each host runs, in groups of 200). "
           "PostgreSQL is a throwaway local cluster with its default durability (fsync on), reached over "
           "127.0.0.1; its own CPU is the `server CPU s` column. `state writes` is the time the rollout waited "
           "on the store (inside `rollout`, plus the final flush). Load: the 1-minute load average before → "
           "after the run, and (in brackets) the CPUs other work kept busy in the 2 s before it — the machine "
           "is shared, so wall times are inflated when that is high; CPU seconds are the steadier figure.", "",
           "| store | hosts | wall s | CPU s | config s | store open s | plan s | rollout s | state writes s "
           "| server CPU s | peak RSS MiB | ms per host | load before→after (other CPUs) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        p = r.get("phases_s", {})
        server = r.get("server_cpu_s")
        out.append(f"| {r['store']} | {r['hosts']:,} | {r['seconds']:.2f} | {r['cpu_s']:.2f} "
                   f"| {p.get('config', 0):.2f} | {p.get('open', 0):.2f} | {p.get('plan', 0):.2f} "
                   f"| {p.get('rollout', 0):.2f} | {p.get('state_writes', 0):.2f} | "
                   f"{'–' if server is None else f'{server:.2f}'} | {r['peak_rss_mib']:.0f} | "
                   f"{r['ms_per_host']:.3f} | {_load(r)} |")
    out.append("")
    rows = []
    for store in dict.fromkeys(r["store"] for r in runs):
        mine = [r for r in runs if r["store"] == store]
        largest = max(r["hosts"] for r in mine)
        smallest = min(r["hosts"] for r in mine)
        big = [r for r in mine if r["hosts"] == largest]
        small = [r for r in mine if r["hosts"] == smallest]
        worst = max(big, key=lambda r: r["seconds"])
        rss = max(r["peak_rss_mib"] for r in big)
        rows.append(f"| {store}: {largest:,} hosts in under {targets.get('seconds', 60):g} s | "
                    f"{worst['seconds']:.1f} s | {_verdict(worst['seconds'] < targets.get('seconds', 60))} |")
        rows.append(f"| {store}: {largest:,} hosts in under {targets.get('peak_rss_mib', 1024) / 1024:g} GiB | "
                    f"{rss:.0f} MiB | {_verdict(rss < targets.get('peak_rss_mib', 1024))} |")
        if largest > smallest:
            growth = (min(r["cpu_s"] for r in big) / largest) / (min(r["cpu_s"] for r in small) / smallest)
            rows.append(f"| {store}: linear from {smallest:,} (CPU per host at {largest:,} ÷ at {smallest:,}, "
                        f"≤ 1.25) | {growth:.2f}× | {_verdict(growth <= 1.25)} |")
    out += ["| target (issue 20) | measured | verdict |", "|---|---:|---|", *rows, ""]
    out += [f"Measured on {_machine(results)}", ""]
    return out


def history_section(results: dict[str, Any]) -> list[str]:
    """The reads of a year of deployments, on each store."""
    stores = results.get("stores") or {}
    if not stores:
        return []
    data = results.get("data", {})
    target = results.get("target_ms", 200)
    out = ["## History: a year of deployments", "",
           f"`bench/history.py`: {data.get('deployments', 0):,} deployments ({data.get('per_day')} a day for "
           f"{data.get('days')} days, over {data.get('environments')} environments, each to "
           f"{data.get('hosts')} hosts), with their host results ({data.get('host_results', 0):,} rows), audit "
           f"events ({data.get('events', 0):,}) and check measurements ({data.get('measurements', 0):,}), written "
           "in the rows real deployments write; then each read a command or a dashboard makes, timed in-process "
           f"(median of {results.get('repeats')} after one warm-up; the store opened once; the CLI's own start-up "
           "is not included). Target: each under "
           f"{target} ms.", "",
           "| read | " + " | ".join(f"{name} ms" for name in stores) + " | verdict |",
           "|---|" + "---:|" * len(stores) + "---|"]
    names = list(dict.fromkeys(q for s in stores.values() for q in s.get("queries", {})))
    for name in names:
        values = [s.get("queries", {}).get(name, {}).get("median_ms") for s in stores.values()]
        ok = all(v is not None and v < target for v in values)
        cells = " | ".join("–" if v is None else f"{v:.1f}" for v in values)
        out.append(f"| {name} | {cells} | {_verdict(ok)} |")
    out.append("")
    for name, s in stores.items():
        load = s.get("loadavg_before"), s.get("loadavg_after")
        out.append(f"- {name}: generated in {s.get('generate_s')} s, database {s.get('size_mib')} MiB; load "
                   f"{load[0][0] if load[0] else '–'}→{load[1][0] if load[1] else '–'} (1 min), other work "
                   f"{s.get('background_cpus')} CPUs before the reads.")
    out += ["", f"Measured on {_machine(results)}", ""]
    return out
