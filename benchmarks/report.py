"""Render docs/performance.md from the results files of ``bench.py``.

The document is generated, never edited by hand, so its figures are always
the ones a results file holds and the command that produced them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

FLOOR_RATIO = 2.5
GROWTH = 1.5
IMPORT_EPS = 50_000
RSS_GROWTH = 1.5
INGEST_EPS = 20_000
PLANNED = (100_000, 300_000, 1_000_000)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _days90(route: str) -> bool:
    return "days=90" in route


def _size_section(result: dict[str, Any]) -> list[str]:
    """One table per (backend, size): every route against its two yardsticks."""
    lines = [
        f"### {result['backend']}, {result['events']:,} events",
        "",
        f"{result['requests_per_route']} sequential requests per route after a warm-up; "
        "times in ms. *ratio* is the REST median over the floor's.",
        "",
        "| route | REST median | REST p99 | GraphQL median | GraphQL p99 | floor median | "
        "floor p99 | ratio | naive SQL median | REST / naive |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for route, row in result["routes"].items():
        rest, graphql, floor = row["rest"], row["graphql"], row["floor"]
        naive = row.get("naive", {}).get("median_ms")
        versus = "–" if naive is None else f"{rest['median_ms'] / naive:.1f}×"
        lines.append(
            f"| `{route}` | {_ms(rest['median_ms'])} | {_ms(rest['p99_ms'])} | "
            f"{_ms(graphql['median_ms'])} | {_ms(graphql['p99_ms'])} | "
            f"{_ms(floor['median_ms'])} | {_ms(floor['p99_ms'])} | "
            f"{rest['median_ms'] / floor['median_ms']:.1f}× | {_ms(naive)} | {versus} |"
        )
    imported, ingest, exact = result["import"], result["ingest"], result["exactness"]
    failures = sum(row[kind]["failures"] for row in result["routes"].values()
                   for kind in ("rest", "graphql"))
    lines += [
        "",
        f"- import (`meterql load`, {imported['file_mib']:.0f} MiB file"
        "): "
        f"**{imported['events_per_s']:,.0f} events/s** ({imported['seconds']:.1f} s), "
        f"peak RSS **{imported['peak_rss_mib']:.0f} MiB**",
        f"- live ingest (`POST /v1/usage/events`, {ingest['batches']} batches of 1,000): "
        f"**{ingest['events_per_s']:,.0f} events/s**",
        f"- `/v1/metrics/summary?days=90` equals the naive SQL: "
        f"**{'yes' if exact['exact'] else 'NO'}** (requests "
        f"{exact['route']['total_requests']}, cost {exact['route']['estimated_cost_usd']} USD)",
        f"- failed requests: {failures}; tracebacks in the server log: "
        f"{result['server_tracebacks']}",
        f"- command: `{result['command']}`",
        "",
    ]
    return lines


def _growth_section(by_backend: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Smallest against largest size measured, per backend."""
    lines = ["## Growth with size", ""]
    for backend, results in by_backend.items():
        if len(results) < 2:
            sizes = ", ".join(f"{r['events']:,}" for r in results)
            todo = ", ".join(f"{n:,}" for n in PLANNED if n not in {r['events'] for r in results})
            lines.append(f"- {backend}: only {sizes} measured; {todo} still to be measured.")
            continue
        small, large = results[0], results[-1]
        lines += [
            f"### {backend}: {small['events']:,} → {large['events']:,} events", "",
            "| route | median growth |", "|---|---:|",
        ]
        for route, row in large["routes"].items():
            before = small["routes"][route]["rest"]["median_ms"]
            lines.append(f"| `{route}` | {row['rest']['median_ms'] / before:.2f}× |")
        lines += [
            "",
            f"- import: {small['import']['events_per_s']:,.0f} → "
            f"{large['import']['events_per_s']:,.0f} events/s; peak RSS "
            f"{small['import']['peak_rss_mib']:.0f} → {large['import']['peak_rss_mib']:.0f} MiB",
            f"- ingest: {small['ingest']['events_per_s']:,.0f} → "
            f"{large['ingest']['events_per_s']:,.0f} events/s",
            "",
        ]
    return [*lines, ""]


def _verdict(ok: bool | None) -> str:
    return "not measured yet" if ok is None else ("**met**" if ok else "**not met**")


def _targets(results: list[dict[str, Any]]) -> list[str]:
    """Each target of issue 5 for one backend; met only if met at every size measured."""
    worst_floor = max((row["rest"]["median_ms"] / row["floor"]["median_ms"], route)
                      for r in results for route, row in r["routes"].items())
    slower = sorted({route for r in results for route, row in r["routes"].items()
                     if _days90(route) and row["rest"]["median_ms"] >= row["naive"]["median_ms"]})
    days90 = {route for r in results for route in r["routes"] if _days90(route)}
    by_size = {r["events"]: r for r in results}
    growth: bool | None = None
    rss: bool | None = None
    if 100_000 in by_size and 1_000_000 in by_size:
        small, large = by_size[100_000], by_size[1_000_000]
        growth = all(large["routes"][route]["rest"]["median_ms"]
                     <= GROWTH * small["routes"][route]["rest"]["median_ms"]
                     for route in small["routes"])
        rss = large["import"]["peak_rss_mib"] <= RSS_GROWTH * small["import"]["peak_rss_mib"]
    import_eps = min(r["import"]["events_per_s"] for r in results)
    ingest_eps = min(r["ingest"]["events_per_s"] for r in results)
    return [
        f"| every `/v1` route median ≤ {FLOOR_RATIO}× the HTTP floor | "
        f"worst {worst_floor[0]:.1f}× (`{worst_floor[1]}`) | "
        f"{_verdict(worst_floor[0] <= FLOOR_RATIO)} |",
        f"| every days=90 route faster than the naive SQL | "
        f"{len(days90) - len(slower)} of {len(days90)} faster"
        f"{'; slower: ' + ', '.join(f'`{s}`' for s in slower) if slower else ''} | "
        f"{_verdict(not slower)} |",
        f"| route latency grows ≤ {GROWTH}× from 100k to 1M | "
        f"{'–' if growth is None else 'see growth'} | {_verdict(growth)} |",
        f"| import ≥ {IMPORT_EPS:,} events/s | {import_eps:,.0f} events/s | "
        f"{_verdict(import_eps >= IMPORT_EPS)} |",
        f"| import peak RSS at 1M ≤ {RSS_GROWTH}× that at 100k | "
        f"{'–' if rss is None else 'see growth'} | {_verdict(rss)} |",
        f"| live ingest ≥ {INGEST_EPS:,} events/s | {ingest_eps:,.0f} events/s | "
        f"{_verdict(ingest_eps >= INGEST_EPS)} |",
    ]


def render(results: list[dict[str, Any]]) -> str:
    by_backend: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in sorted(results, key=lambda r: (r["backend"], r["events"])):
        by_backend[result["backend"]].append(result)
    lines = [
        "# Performance",
        "",
        "Baseline figures, generated by `python benchmarks/bench.py --write-docs` from",
        "`benchmarks/results/*.json`; do not edit by hand. Each run generates a tenant",
        "(N events over the 90 days before the run, 50 instances, 20 priced models,",
        "20,000 end users, plus a small second tenant), imports it with `meterql load`,",
        "starts `meterql serve` and measures it over real HTTP, sequentially, next to",
        "two yardsticks from the same run:",
        "",
        "- **floor**: a bare Starlette app under the same uvicorn (`benchmarks/floor.py`)",
        "  answering the route's captured bytes from memory: the cost of HTTP alone;",
        "- **naive SQL**: the same aggregate hand-written over `usage_events`",
        "  (`sqlite3` or `asyncpg`, prepared), median of repeated runs: the cost of the",
        "  query alone, without any HTTP.",
        "",
        "These are a **baseline**: the targets of issue 5 are not expected to be met",
        "yet. The 300,000 and 1,000,000 event sizes are still to be measured",
        "(`--sizes 100000,300000,1000000`).",
        "",
        "## Machine",
        "",
    ]
    for backend, runs in by_backend.items():
        info = runs[-1]["machine"]
        extra = f", PostgreSQL {info['postgresql']}" if "postgresql" in info else ""
        lines.append(f"- {backend}: {info['nproc']} CPUs, Python {info['python']}, "
                     f"SQLite {info['sqlite']}{extra}, {info['platform']}, "
                     f"measured {runs[-1]['date'][:16]} UTC")
    lines += ["", "## Results", ""]
    for runs in by_backend.values():
        for result in runs:
            lines += _size_section(result)
    lines += _growth_section(by_backend)
    lines += ["## Targets of issue 5", ""]
    for backend, runs in by_backend.items():
        lines += [f"### {backend}", "", "| target | measured | verdict |", "|---|---|---|",
                  *_targets(runs), ""]
    lines += [
        "## Reproducing",
        "",
        "```sh",
        *sorted({r["command"] for r in results}),
        "python benchmarks/bench.py --write-docs",
        "```",
        "",
    ]
    return "\n".join(lines)
