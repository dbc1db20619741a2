"""Render docs/performance.md from the results files of ``bench.py`` and ``load.py``.

The document is generated, never edited by hand, so its figures are always
the ones a results file holds and the command that produced them. Every
verdict in it is computed here from those figures, against ``BOUNDS`` (the
targets, per backend), judged at 1M events or, until 1M is measured, at the
largest size measured, and saying so. Results files written before a figure
was measured (throughput, statement times, the post-ingest block, the
GraphQL-only queries, an exactness check of every route) still render: what
they lack reads "not measured yet". The load test's files (``load-*.json``,
``"kind": "load"``) get a section of their own.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "performance.md"

PLANNED = (100_000, 1_000_000)
SMALL, TARGET = 100_000, 1_000_000
SUMMARY = "/v1/metrics/summary?days=90"
MATRIX = ("python benchmarks/bench.py --sizes 100000,1000000 --backend sqlite,postgresql \\\n"
          "    --profile /v1/billing/usage --write-docs")
RENDER = "python benchmarks/bench.py --write-docs"
# A plan's arguments shown up to this many characters (the spans of a series are long).
ARGUMENTS_SHOWN = 1_500


@dataclass(frozen=True)
class Bounds:
    """One backend's targets, all judged on the same run at 1M events."""

    routes_floor: float  # every /v1 route's median over HTTP ≤ this × the floor's
    throughput_share: float  # wrk: meterql's requests/s (1 worker) ≥ this × the floor's
    workers_gain: float  # wrk: --workers 2 requests/s ≥ this × 1 worker's
    series_floor: float  # the 90-day usage series' medians ≤ this × the floor's
    pages_floor: float  # the page queries' medians ≤ this × the floor's
    growth: float  # each route and query median at 1M ≤ this × at 100k
    statement_ms: float  # any one statement of any read, median, at 1M


BOUNDS = {
    "sqlite": Bounds(2.5, 0.25, 1.6, 3.0, 6.0, 1.2, 5.0),
    "postgresql": Bounds(3.0, 0.20, 1.6, 4.0, 8.0, 1.2, 5.0),
}
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
SERVERS = {"floor": "floor", "meterql": "meterql, 1 worker",
           "meterql_workers_2": "meterql, `--workers 2`"}


def _bounds(backend: str) -> Bounds:
    return BOUNDS.get(backend, BOUNDS["sqlite"])


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _x(value: float) -> str:
    return f"{value:.2f}×" if value < 10 else f"{value:.1f}×"


def _size(events: int) -> str:
    return f"{events // 1_000_000}M" if events % 1_000_000 == 0 else (
        f"{events // 1_000}k" if events % 1_000 == 0 else f"{events:,}")


def _yes(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "**NO**")


def _code(text: str, limit: int = 0) -> str:
    """``text`` as a code span fit for a table cell: one line, pipes escaped."""
    flat = re.sub(r"\s+", " ", text).strip()
    if limit and len(flat) > limit:
        flat = flat[:limit - 1] + "…"
    return "`" + flat.replace("`", "'").replace("|", "\\|") + "`"


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} s"


def _exact_routes(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per checked route: exact and mismatches (old files checked the summary only)."""
    exactness = result["exactness"]
    if "routes" in exactness:
        return dict(exactness["routes"])
    return {SUMMARY: {"exact": exactness["exact"], "mismatches": [],
                      "mismatch_count": 0 if exactness["exact"] else 1}}


def _graphql_same(result: dict[str, Any], route: str) -> bool | None:
    same = result["exactness"].get("graphql_same", {}).get(route)
    return None if same is None else bool(same)


def _all_exact(result: dict[str, Any]) -> bool:
    """Every check the result holds passed (old files: the summary only)."""
    exactness = result["exactness"]
    return bool(exactness.get("all_exact", exactness.get("exact", False)))


def _failures(row: dict[str, Any]) -> int:
    """A route's failed requests (REST and GraphQL), or a GraphQL-only query's."""
    return int(row.get("rest", {}).get("failures", 0) + row["graphql"]["failures"])


def _only(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The GraphQL-only queries (none in older files)."""
    return dict(result.get("graphql_only", {}))


def _only_exact(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(result["exactness"].get("graphql_only", {}))


def _is_series(row: dict[str, Any]) -> bool:
    """A 90-day ``usage`` series (timed against a naive answer), not a page."""
    return "naive" in row or str(row.get("source", "")).endswith("bench.py")


def _median(row: dict[str, Any]) -> float:
    """A read's median over HTTP: a route's REST one, a GraphQL-only query's."""
    return float(row["rest"]["median_ms"] if "rest" in row else row["graphql"]["median_ms"])


def _reads(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every read timed in a run, /v1 routes then GraphQL-only queries, by name."""
    return {**result["routes"], **_only(result)}


def _label(name: str, result: dict[str, Any]) -> str:
    return f"GraphQL `{name}`" if name in _only(result) else f"`{name}`"


# --- the targets -------------------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    """One target's figure and verdict (``ok`` None: not measured)."""

    measured: str
    ok: bool | None


def _worst_ratio(rows: dict[str, dict[str, Any]], bound: float, result: dict[str, Any],
                 what: str) -> Judged:
    """Each read's median over its floor's: the worst, how many within, failures."""
    if not rows:
        return Judged("–", None)
    ratios = sorted(((_median(row) / row["floor"]["median_ms"], name)
                     for name, row in rows.items()), reverse=True)
    within = sum(ratio <= bound for ratio, _ in ratios)
    failing = [name for name, row in rows.items() if _failures(row)]
    text = (f"worst {_x(ratios[0][0])} ({_label(ratios[0][1], result)}); "
            f"{within} of {len(ratios)} {what} within")
    if failing:
        text += "; with failed requests: " + ", ".join(_label(n, result) for n in failing)
    return Judged(text, within == len(ratios) and not failing)


def _rates(result: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The wrk runs per server (None when not measured or skipped)."""
    speed = result.get("throughput")
    if not speed or "skipped" in speed:
        return None
    return dict(speed["servers"])


def _wrk_errors(run: dict[str, Any]) -> int:
    if "error" in run:
        return 1
    return int(run.get("non_2xx", 0) + sum(run.get("socket_errors", {}).values()))


def _short(route: str) -> str:
    return route.split("?")[0].removeprefix("/v1/")


def _rate_target(result: dict[str, Any], server: str, base: str, bound: float,
                 share: bool) -> Judged:
    """``server``'s requests/s over ``base``'s on each wrk route, each at least ``bound``."""
    rates = _rates(result)
    if rates is None:
        skipped = result.get("throughput", {}).get("skipped")
        return Judged(skipped or "–", None)
    parts, ok = [], True
    for route in result["throughput"]["routes"]:
        top, bottom = rates.get(server, {}).get(route, {}), rates.get(base, {}).get(route, {})
        if "requests_per_s" not in top or "requests_per_s" not in bottom:
            parts.append(f"`{_short(route)}` not measured")
            ok = False
            continue
        ratio = top["requests_per_s"] / bottom["requests_per_s"]
        errors = _wrk_errors(top)
        figure = f"{100 * ratio:.0f}%" if share else _x(ratio)
        parts.append(f"`{_short(route)}` {figure} ({top['requests_per_s']:,.0f} / "
                     f"{bottom['requests_per_s']:,.0f} req/s"
                     + (f", {errors} errors" if errors else "") + ")")
        ok = ok and ratio >= bound and not errors
    return Judged("; ".join(parts), ok)


def _side_by_side(large: dict[str, Any], small_events: int) -> dict[str, float]:
    """Each read's growth timed side by side (bench.py step 4b), if it was, by name."""
    growth = large.get("growth")
    if not growth or growth["small_events"] != small_events:
        return {}
    return {name: row["large"] / row["small"] for name, row in growth["reads"].items()}


def _growth_target(by_size: dict[int, dict[str, Any]], bound: float) -> Judged:
    if SMALL not in by_size or TARGET not in by_size:
        return Judged("needs 100k and 1M", None)
    beside = _side_by_side(by_size[TARGET], SMALL)
    if beside:
        grown = sorted(((ratio, name) for name, ratio in beside.items()), reverse=True)
        how = "side by side"
    else:
        small, large = _reads(by_size[SMALL]), _reads(by_size[TARGET])
        grown = sorted(((_median(large[name]) / _median(small[name]), name)
                        for name in small if name in large), reverse=True)
        how = "runs apart"
    if not grown:
        return Judged("–", None)
    within = sum(ratio <= bound for ratio, _ in grown)
    return Judged(f"worst {_x(grown[0][0])} ({_label(grown[0][1], by_size[TARGET])}), "
                  f"{how}; {within} of {len(grown)} reads within", within == len(grown))


def _statement_target(result: dict[str, Any], bound: float) -> Judged:
    measured = result.get("statements")
    if not measured:
        return Judged("–", None)
    slowest = sorted(((row["slowest_ms"] or 0.0, name)
                      for name, row in measured["requests"].items()), reverse=True)
    within = sum(ms <= bound for ms, _ in slowest)
    return Judged(f"slowest {slowest[0][0]:.2f} ms ({_label(slowest[0][1], result)}); "
                  f"{within} of {len(slowest)} reads within", within == len(slowest))


def _verdict(ok: bool | None, at: int | None = None) -> str:
    if ok is None:
        return "not measured yet"
    word = "**met**" if ok else "**not met**"
    return word if at in (None, TARGET) else f"{word} at {_size(at)}; 1M not measured yet"


def _targets(backend: str, results: list[dict[str, Any]]) -> list[str]:
    """The targets of one backend, judged at 1M events (else the largest size, said so)."""
    bounds = _bounds(backend)
    by_size = {r["events"]: r for r in results}
    at = TARGET if TARGET in by_size else max(by_size)
    judged = by_size[at]
    only = _only(judged)
    series = {name: row for name, row in only.items() if _is_series(row)}
    pages = {name: row for name, row in only.items() if not _is_series(row)}
    rows: list[tuple[str, str, Judged, int | None]] = [
        ("every `/v1` route, median over HTTP", f"≤ {bounds.routes_floor:g}× the floor",
         _worst_ratio(judged["routes"], bounds.routes_floor, judged, "routes"), at),
        ("throughput, `wrk` 16 connections, `/v1/metrics/summary?days=90` and `/v1/billing`",
         f"≥ {100 * bounds.throughput_share:.0f}% of the floor's req/s",
         _rate_target(judged, "meterql", "floor", bounds.throughput_share, True), at),
        ("`--workers 2` throughput over 1 worker (same two routes)",
         f"≥ {bounds.workers_gain:g}×",
         _rate_target(judged, "meterql_workers_2", "meterql", bounds.workers_gain, False), at),
        ("90-day `usage` series (Berlin, Kolkata, Berlin by model)",
         f"≤ {bounds.series_floor:g}× the floor",
         _worst_ratio(series, bounds.series_floor, judged, "series"), at),
        ("BillingPage and MetricsPage", f"≤ {bounds.pages_floor:g}× the floor",
         _worst_ratio(pages, bounds.pages_floor, judged, "pages"), at),
        ("growth 100k → 1M (route and query medians)", f"≤ {bounds.growth:g}×",
         _growth_target(by_size, bounds.growth), None),
        ("any one statement of any page (and of any `/v1` route) at 1M",
         f"≤ {bounds.statement_ms:g} ms", _statement_target(judged, bounds.statement_ms), at),
    ]
    lines = [f"### {NAMES.get(backend, backend)}", "",
             "| target | bound | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {target} | {bound} | {figure.measured} | {_verdict(figure.ok, size)} |"
              for target, bound, figure, size in rows]
    return [*lines, "", *_checks(results), ""]


def _checks(results: list[dict[str, Any]]) -> list[str]:
    """What holds at every size beside the targets: exact answers, no failures."""
    inexact = []
    for r in results:
        if not _all_exact(r):
            wrong = [f"`{route}`" for route, v in [*_exact_routes(r).items(),
                                                   *_only_exact(r).items()] if not v["exact"]]
            inexact.append(f"{_size(r['events'])}: {', '.join(wrong) or 'GraphQL or pricing'}")
    partial = [_size(r["events"]) for r in results if "routes" not in r["exactness"]]
    exact_text = ("exact at " + ", ".join(_size(r["events"]) for r in results)
                  if not inexact else "**not exact**: " + "; ".join(inexact))
    if partial:
        exact_text += f" (summary only checked at {', '.join(partial)})"
    failed = sum(_failures(row) for r in results for row in _reads(r).values())
    tracebacks = sum(r["server_tracebacks"] for r in results)
    return [f"Checked at every size as well: answers (sampled routes against the naive SQL, "
            f"GraphQL twins against REST, the GraphQL-only queries against their references) "
            f"{exact_text}; failed requests (non-2xx or GraphQL errors) in the sequential "
            f"timings: {failed}; tracebacks in the server logs: {tracebacks}."]


# --- throughput, statements, after live ingest --------------------------------------------


def _throughput_section(by_backend: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["## Throughput", ""]
    speeds = [r["throughput"] for runs in by_backend.values() for r in runs
              if "servers" in r.get("throughput", {})]
    if speeds:
        speed = speeds[-1]
        lines += [
            f"`wrk -t{speed['threads']} -c{speed['connections']} -d{speed['seconds']}s "
            "--latency` with the read token on each route, after an untimed "
            f"{speed['warmup_seconds']} s wrk run, against the floor (answering the captured "
            "bytes), `meterql serve` (one worker) and `meterql serve --workers 2`: one server "
            "at a time, on the machine that runs wrk, after the sequential timings and "
            "before any live ingest (every server reads the imported data only). *of the "
            "floor*: requests/s over the floor's; *of 1 worker*: over one worker's. "
            "Latencies in ms; *errors*: responses of 400 or more plus socket errors.",
            "",
        ]
    for backend, runs in by_backend.items():
        for result in runs:
            lines += _throughput_run(backend, result)
    return lines


def _throughput_run(backend: str, result: dict[str, Any]) -> list[str]:
    title = f"{NAMES.get(backend, backend)}, {result['events']:,} events"
    speed = result.get("throughput")
    if not speed:
        return [f"- {title}: not measured yet.", ""]
    if "skipped" in speed:
        return [f"- {title}: not measured ({speed['skipped']}).", ""]
    lines = [f"### {title}", "",
             "| route | server | requests/s | of the floor | of 1 worker | latency p50 | "
             "p99 | max | requests | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    servers = speed["servers"]
    for route in speed["routes"]:
        floor = servers.get("floor", {}).get(route, {}).get("requests_per_s")
        one = servers.get("meterql", {}).get(route, {}).get("requests_per_s")
        for key, name in SERVERS.items():
            run = servers.get(key, {}).get(route)
            if run is None:
                continue
            if "error" in run:
                lines.append(f"| `{route}` | {name} | wrk failed: {_code(run['error'], 120)} "
                             "| | | | | | | |")
                continue
            rate = run["requests_per_s"]
            share = f"{100 * rate / floor:.0f}%" if floor and key != "floor" else "–"
            gain = _x(rate / one) if one and key == "meterql_workers_2" else "–"
            lines.append(
                f"| `{route}` | {name} | {rate:,.0f} | {share} | {gain} | "
                f"{_ms(run.get('latency_p50_ms'))} | {_ms(run.get('latency_p99_ms'))} | "
                f"{_ms(run.get('latency_max_ms'))} | {run['requests']:,} | "
                f"{_wrk_errors(run)} |")
    return [*lines, "", f"- wrk: {speed['wrk']}", ""]


def _statements_intro(runs: int | None) -> list[str]:
    count = f"{runs} times" if runs else "a few times"
    return [
        "In-process (`create_app` behind httpx's `ASGITransport`, no HTTP server), on the "
        "run's database: each read sent after a warm-up, then "
        f"{count}, one at a time, with every call of the read path's driver "
        "(`db.reads._driver.fetch`: asyncpg's `fetch`, aiosqlite's `execute_fetchall`) "
        "timed from the call to its rows, a wait for a pooled connection or the SQLite "
        "thread included. *round trips*: driver calls per request; *slowest statement*: the "
        "largest median among the request's statements (the bound is the median of any one "
        "statement); *driver total*: the median over runs of the calls' summed times. For "
        "every statement over the plan threshold, its plan was read on a connection of its "
        "own with the arguments of its last run (`EXPLAIN (ANALYZE, BUFFERS)` on PostgreSQL, "
        "`EXPLAIN QUERY PLAN` on SQLite), and it was run alone there too: a request that "
        "runs statements concurrently (its driver total above its median) has each one's "
        "time include waiting behind the others.",
        "",
    ]


def _statements_section(by_backend: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["## Round trips and statements", ""]
    runs = [r["statements"]["runs"] for rs in by_backend.values() for r in rs
            if r.get("statements")]
    lines += _statements_intro(runs[-1] if runs else None)
    lines.append("Measured after the HTTP timings and before any live ingest.")
    lines.append("")
    for backend, results in by_backend.items():
        for result in results:
            title = f"{NAMES.get(backend, backend)}, {result['events']:,} events"
            if not result.get("statements"):
                lines += [f"- {title}: not measured yet.", ""]
                continue
            lines += [f"### {title}", "",
                      *_statements_table(result["statements"], result, _bounds(backend))]
    return lines


def _statements_table(measured: dict[str, Any], result: dict[str, Any],
                      bounds: Bounds) -> list[str]:
    lines = ["| read | round trips | request median | driver total | slowest statement | "
             f"≤ {bounds.statement_ms:g} ms | its SQL |",
             "|---|---:|---:|---:|---:|---|---|"]
    for name, row in measured["requests"].items():
        trips = str(row["round_trips"])
        if len(row.get("round_trips_seen", [])) > 1:
            trips += " (" + ", ".join(map(str, row["round_trips_seen"])) + " seen)"
        slowest = row["statements"][0] if row["statements"] else None
        sql = _code(measured["sql"][slowest["sql_id"]], 90) if slowest else "–"
        failed = f" ({row['failures']} failed)" if row.get("failures") else ""
        slow = row["slowest_ms"]
        within = None if slow is None else slow <= bounds.statement_ms
        lines.append(
            f"| {_label(name, result)}{failed} | {trips} | {_ms(row['request_median_ms'])} | "
            f"{_ms(row['driver_median_ms'])} | {_ms(slow)} | {_yes(within)} | {sql} |")
    lines.append("")
    plans = measured.get("plans", [])
    over = measured.get("explain_over_ms", bounds.statement_ms)
    if not plans:
        return [*lines, f"No statement's median was over {over:g} ms: no plan read.", ""]
    lines += [f"Plans of the {len(plans)} statement{'s' if len(plans) != 1 else ''} whose "
              f"median was over {over:g} ms:", ""]
    for plan in plans:
        reads = ", ".join(_label(name, result) for name in plan["requests"])
        alone = plan.get("alone_median_ms")
        arguments = json.dumps(plan["arguments"])
        if len(arguments) > ARGUMENTS_SHOWN:
            arguments = arguments[:ARGUMENTS_SHOWN] + " …"
        lines += [
            "<details>",
            f"<summary>{plan['median_ms']:.2f} ms in the request"
            + ("" if alone is None else f", {alone:.2f} ms alone")
            + f": statement <code>{plan['sql_id']}</code> of {reads.replace('`', '')}</summary>",
            "",
            "```sql",
            measured["sql"][plan["sql_id"]].strip(),
            "```",
            "",
            "Arguments:",
            "",
            "```json",
            arguments,
            "```",
            "",
            "```text",
            plan["plan"].strip(),
            "```",
            "",
            "</details>",
            "",
        ]
    return lines


def _post_ingest_section(by_backend: dict[str, list[dict[str, Any]]]) -> list[str]:
    done = [r for runs in by_backend.values() for r in runs if r.get("post_ingest")]
    lines = ["## After live ingest (PostgreSQL)", ""]
    if not done:
        return [*lines, "Not measured yet.", ""]
    lines += [
        "On PostgreSQL, after everything above, on the same database and a fresh "
        "`meterql serve` (one worker): concurrent senders POST batches of 1,000 new events "
        "of the big tenant (timestamps within the last day) to `/v1/usage/events` with the "
        "ingest token for the time given; then every read is timed again, sequentially, as "
        "in the results below, and its ratio taken against the floor measured before the "
        "ingest. The tables' tuple counts are read before and after the ingest, each "
        "reading 11 s after the last write (PostgreSQL's backends report their counts when "
        "idle). Then the statements are timed again, in-process.",
        "",
    ]
    for result in done:
        lines += _post_ingest_run(result)
    return lines


def _post_ingest_run(result: dict[str, Any]) -> list[str]:
    post, bounds = result["post_ingest"], _bounds(result["backend"])
    ingest, autovacuum = post["ingest"], post["autovacuum"]
    statuses = ", ".join(f"{code}: {n:,}" for code, n in ingest["statuses"].items())
    if autovacuum["defaults"]:
        vacuum = "at its defaults"
    else:
        changed = [f"`{name}={value['setting']}`" + (f" (from `{value['file']}`)"
                                                      if value.get("file") else "")
                   for name, value in autovacuum["not_default"].items()]
        changed += [f"`{table}`: `{', '.join(options)}`"
                    for table, options in autovacuum["table_options"].items()]
        vacuum = "**not at its defaults**: " + ", ".join(changed)
    lines = [
        f"### {NAMES.get(result['backend'], result['backend'])}, {result['events']:,} events: "
        f"after {_duration(post['seconds'])} of live ingest",
        "",
        f"- live ingest: {ingest['senders']} senders, batches of {ingest['batch']:,}: "
        f"**{ingest['accepted']:,} events accepted in {ingest['elapsed_s']:.0f} s, "
        f"{ingest['events_per_s']:,.0f} events/s**; a batch's latency p50 "
        f"{_ms(ingest['batch_p50_ms'])} ms, p99 {_ms(ingest['batch_p99_ms'])} ms",
        f"- non-2xx answers: **{ingest['non_2xx']}** (statuses: {statuses or 'none'}); "
        f"transport errors: {ingest['transport_errors']}",
        f"- autovacuum: {vacuum}",
    ]
    lines += [f"  - failure: {_code(json.dumps(failure), 200)}"
              for failure in ingest.get("failures", [])[:3]]
    lines += ["",
              "| read | median before | median after | after / before | floor median | "
              "after / floor | bound | within |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    before = _reads(result)
    after = {**post["routes"], **post["graphql_only"]}
    for name, row in after.items():
        earlier = before.get(name)
        if earlier is None:
            continue
        bound = (bounds.routes_floor if name in result["routes"] else
                 bounds.series_floor if _is_series(earlier) else bounds.pages_floor)
        ratio = _median(row) / earlier["floor"]["median_ms"]
        failed = f" ({_failures(row)} failed)" if _failures(row) else ""
        lines.append(
            f"| {_label(name, result)}{failed} | {_ms(_median(earlier))} | "
            f"{_ms(_median(row))} | {_x(_median(row) / _median(earlier))} | "
            f"{_ms(earlier['floor']['median_ms'])} | {_x(ratio)} | ≤ {bound:g}× | "
            f"{_yes(ratio <= bound and not _failures(row))} |")
    lines += ["", *_tables(post["tables_before"], post["tables_after"])]
    if post.get("statements"):
        lines += ["Statements after the ingest (in-process, as above):", "",
                  *_statements_table(post["statements"], result, bounds)]
    return lines


def _tables(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Live and dead tuples of each table, before and after the ingest."""
    lines = ["`pg_stat_user_tables` of the tables named `usage_%` and `end_users%`:", "",
             "| table | live before | dead before | live after | dead after | dead / live "
             "after | MiB before | MiB after | autovacuums | autoanalyzes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def delta(table: str, key: str) -> int:
        return int(after[table][key] - before.get(table, {}).get(key, 0))

    for table, now in after.items():
        then = before.get(table, {})
        share = (f"{100 * now['n_dead_tup'] / now['n_live_tup']:.0f}%"
                 if now["n_live_tup"] else "–")
        lines.append(
            f"| `{table}` | {then.get('n_live_tup', 0):,} | {then.get('n_dead_tup', 0):,} | "
            f"{now['n_live_tup']:,} | {now['n_dead_tup']:,} | {share} | "
            f"{then.get('bytes', 0) / 2**20:,.1f} | {now['bytes'] / 2**20:,.1f} | "
            f"{delta(table, 'autovacuum_count')} | {delta(table, 'autoanalyze_count')} |")
    return [*lines, ""]


# --- the results of each run -------------------------------------------------------------


def _only_section(result: dict[str, Any]) -> list[str]:
    """The GraphQL-only queries of one run: timings, yardsticks, exactness."""
    only, exact = _only(result), _only_exact(result)
    if not only:
        return []
    lines = [
        f"GraphQL-only queries, `POST /graphql` with no REST route, "
        f"{result['requests_per_route']} sequential requests each; *ratio* is the GraphQL "
        "median over the floor's (the same answer served by `floor.py` for that operation "
        "name); *naive* is one aggregate over `usage_events` per UTC hour (half hour in "
        "Kolkata) plus the bucketing into local days in Python; *exact*: every value of the "
        "answer equals its reference (the naive answer for `usage`, the `/v1` route's body "
        "for a page's twin fields), *values* how many were compared.",
        "",
        "| query | GraphQL median | GraphQL p99 | floor median | floor p99 | ratio | "
        "naive median | GraphQL / naive | failed | exact | values |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, row in only.items():
        graphql, floor = row["graphql"], row["floor"]
        naive = row.get("naive", {}).get("median_ms")
        versus = "–" if naive is None else f"{graphql['median_ms'] / naive:.2f}×"
        verdict = exact.get(name, {})
        source = "" if row.get("source", "").endswith("bench.py") else f" ({row['source']})"
        lines.append(
            f"| `{name}`{source} | {_ms(graphql['median_ms'])} | {_ms(graphql['p99_ms'])} | "
            f"{_ms(floor['median_ms'])} | {_ms(floor['p99_ms'])} | "
            f"{graphql['median_ms'] / floor['median_ms']:.1f}× | {_ms(naive)} | {versus} | "
            f"{graphql['failures']} | {_yes(verdict.get('exact'))} | "
            f"{verdict.get('checked', 0):,} |")
    lines.append("")
    for name, verdict in exact.items():
        if verdict.get("unchecked"):
            lines += [f"- `{name}`: not compared (no reference): "
                      + ", ".join(f"`{path}`" for path in verdict["unchecked"][:20])
                      + (" …" if len(verdict["unchecked"]) > 20 else ""), ""]
    for name, verdict in exact.items():
        if not verdict["exact"]:
            lines += _mismatch_table(name, verdict)
    return lines


def _size_section(result: dict[str, Any]) -> list[str]:
    """One table per (backend, size): every route against its two yardsticks."""
    exact = _exact_routes(result)
    lines = [
        f"### {NAMES.get(result['backend'], result['backend'])}, {result['events']:,} events",
        "",
        f"{result['requests_per_route']} sequential requests per route after a warm-up; "
        "times in ms. *ratio* is the REST median over the floor's; *exact*: the body "
        "equals the naive SQL's answer; *GQL = REST*: the GraphQL twin returned the same "
        "data.",
        "",
        "| route | REST median | REST p99 | GraphQL median | GraphQL p99 | floor median | "
        "floor p99 | ratio | naive SQL median | REST / naive | failed | exact | GQL = REST |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for route, row in result["routes"].items():
        rest, graphql, floor = row["rest"], row["graphql"], row["floor"]
        naive = row.get("naive", {}).get("median_ms")
        versus = "–" if naive is None else f"{rest['median_ms'] / naive:.1f}×"
        lines.append(
            f"| `{route}` | {_ms(rest['median_ms'])} | {_ms(rest['p99_ms'])} | "
            f"{_ms(graphql['median_ms'])} | {_ms(graphql['p99_ms'])} | "
            f"{_ms(floor['median_ms'])} | {_ms(floor['p99_ms'])} | "
            f"{rest['median_ms'] / floor['median_ms']:.1f}× | {_ms(naive)} | {versus} | "
            f"{_failures(row)} | {_yes(exact.get(route, {}).get('exact'))} | "
            f"{_yes(_graphql_same(result, route))} |"
        )
    imported, ingest, exactness = result["import"], result["ingest"], result["exactness"]
    failures = sum(_failures(row) for row in _reads(result).values())
    wrong = [route for route, verdict in exact.items() if not verdict["exact"]]
    same = [row["floor"].get("same_response") for row in _reads(result).values()]
    lines += ["", *_only_section(result)]
    lines += [
        f"- import (`meterql load`, {imported['file_mib']:.0f} MiB file): "
        f"**{imported['events_per_s']:,.0f} events/s** ({imported['seconds']:.1f} s), "
        f"peak RSS **{imported['peak_rss_mib']:.0f} MiB**",
        f"- live ingest (`POST /v1/usage/events`, {ingest['batches']} batches of 1,000, one "
        f"at a time): **{ingest['events_per_s']:,.0f} events/s**",
        f"- exact answers: {len(exact) - len(wrong)} of {len(exact)} routes checked "
        f"against the naive SQL are exact"
        + (f"; **not exact**: {', '.join(f'`{r}`' for r in wrong)} (see below)" if wrong else "")
        + ("" if "pricing" not in exactness else
           f"; stored per-event cost equals the harness's own pricing: "
           f"{_yes(exactness['pricing']['exact'])}")
        + ("" if "today" not in exactness else
           f"; bodies and naive rows read on UTC day {exactness['today']}, before ingest"),
        "- the floor answered the same status, bytes, content-type and content-length: "
        + ("not checked" if None in same else _yes(all(same))),
        f"- failed requests (non-2xx or GraphQL errors): {failures}; tracebacks in the "
        f"server logs: {result['server_tracebacks']}",
    ]
    if result.get("server_env"):
        settings = ", ".join(f"`{k}={v}`" for k, v in result["server_env"].items())
        lines.append(f"- server settings: {settings}")
    if "profile" in result:
        profile = result["profile"]
        lines.append(
            f"- profile of `{profile['route']}` ({profile['requests']} in-process requests "
            f"under pyinstrument): [{profile['file']}](../benchmarks/results/{profile['file']})")
    lines += [f"- command: `{result['command']}`", ""]
    for route in wrong:
        lines += _mismatch_table(route, exact[route])
    return lines


def _mismatch_table(route: str, verdict: dict[str, Any]) -> list[str]:
    shown = verdict.get("mismatches", [])
    if not shown:
        return [f"`{route}`: not exact (no detail recorded).", ""]
    lines = [
        f"Mismatches of `{route}` ({verdict.get('mismatch_count', len(shown))} in all, "
        f"first {len(shown)}):",
        "",
        "| where | route says | naive SQL says |",
        "|---|---|---|",
    ]
    lines += [f"| `{m['at']}` | `{m['route']}` | `{m['naive']}` |" for m in shown]
    return [*lines, ""]


def _growth_section(by_backend: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Each read's median at every size measured, and how it grew."""
    lines = ["## Growth with size", ""]
    for backend, results in by_backend.items():
        name = NAMES.get(backend, backend)
        sizes = [r["events"] for r in results]
        todo = ", ".join(f"{n:,}" for n in PLANNED if n not in sizes)
        if len(results) < 2:
            lines += [f"- {name}: only {', '.join(f'{n:,}' for n in sizes)} measured; "
                      f"{todo} still to be measured.", ""]
            continue
        by_size = {r["events"]: r for r in results}
        # The target's pair when both are measured, else the two ends measured.
        small, large = ((by_size[SMALL], by_size[TARGET]) if SMALL in by_size
                        and TARGET in by_size else (results[0], results[-1]))
        ratio = f"{_size(large['events'])} / {_size(small['events'])}"
        beside = _side_by_side(large, small["events"])
        growth = large.get("growth") or {}
        lines += [
            f"### {name}", "",
            f"Median (ms) at each size, and its growth {ratio} (the target is 1M / 100k ≤ "
            f"{_bounds(backend).growth:g}×), for meterql and for the naive SQL: REST for the "
            "`/v1` routes, GraphQL for the GraphQL-only queries (rows *GraphQL*). The sizes' "
            "medians come from their own runs, tens of minutes apart"
            + (f"; *side by side* is the growth with both tenants served at once and each "
               f"read timed on one then the other, {growth['rounds']} rounds of "
               f"{growth['per_round']} requests each (`bench.py` step 4b), which the verdict "
               "uses." if beside else "."),
            "",
            "| read | " + " | ".join(_size(n) for n in sizes) + f" | {ratio} | "
            + ("side by side | " if beside else "") + f"naive {ratio} |",
            "|---|" + "---:|" * (len(sizes) + 2 + bool(beside)),
        ]
        for read in _reads(large):
            medians = [_median(_reads(r)[read]) if read in _reads(r) else None
                       for r in results]
            first, last = _reads(small).get(read), _reads(large)[read]
            grown = "–" if first is None else _x(_median(last) / _median(first))
            naive = [None if end is None else end.get("naive", {}).get("median_ms")
                     for end in (first, last)]
            naive_grown = ("–" if naive[0] is None or naive[1] is None
                           else _x(naive[1] / naive[0]))
            side = ("–" if read not in beside else _x(beside[read])) + " | " if beside else ""
            lines.append(f"| {_label(read, large)} | " + " | ".join(_ms(m) for m in medians)
                         + f" | {grown} | {side}{naive_grown} |")
        lines += [
            "",
            "| | " + " | ".join(_size(n) for n in sizes) + f" | {ratio} |",
            "|---|" + "---:|" * (len(sizes) + 1),
            _growth_row("import, events/s", results, (small, large),
                        lambda r: r["import"]["events_per_s"], "{:,.0f}"),
            _growth_row("import peak RSS, MiB", results, (small, large),
                        lambda r: r["import"]["peak_rss_mib"], "{:.0f}"),
            _growth_row("live ingest, events/s", results, (small, large),
                        lambda r: r["ingest"]["events_per_s"], "{:,.0f}"),
            "",
        ]
        if todo:
            lines += [f"Still to be measured on {name}: {todo}.", ""]
    return lines


def _growth_row(label: str, results: list[dict[str, Any]],
                ends: tuple[dict[str, Any], dict[str, Any]],
                value: Callable[[dict[str, Any]], float], fmt: str) -> str:
    values = [value(r) for r in results]
    return (f"| {label} | " + " | ".join(fmt.format(v) for v in values)
            + f" | {value(ends[1]) / value(ends[0]):.2f}× |")


def _load_section(runs: list[dict[str, Any]]) -> list[str]:
    """The load test: throughput, latency per kind of request, exactly-once."""
    lines = [
        "## Load test",
        "",
        "`benchmarks/load.py`, run by hand: a generated tenant imported with `meterql load`,",
        "one `meterql serve`, then concurrent clients (asyncio, one shared `httpx` pool,",
        "on the same machine as the server) loop until the deadline, each request drawn",
        "from a fixed mix: the eight `/v1` reads (the chart also for one instance), two",
        "GraphQL queries, and `POST /v1/usage/events` batches of new events or re-sent",
        "earlier ones (possibly still in flight), which must count as duplicates. Then the",
        "database is read directly: the events accepted (the sum of `accepted` over every",
        "ingest answer) must be stored exactly once, the account's events must be the",
        "imported ones plus those, and every rollup table must sum to the account's events",
        "(requests, tokens, cost). The target: no 5xx, every accepted event counted once.",
        "",
    ]
    for run in sorted(runs, key=lambda r: r["backend"]):
        lines += _load_run(run)
    return lines


def _load_run(run: dict[str, Any]) -> list[str]:
    check, ingest, info = run["verification"], run["ingest"], run["machine"]
    extra = f", PostgreSQL {info['postgresql']}" if "postgresql" in info else ""
    lines = [
        f"### {run['backend']}: {run['clients']} clients, {run['seconds']:g} s, "
        f"{run['events']:,} events imported",
        "",
        f"- **{run['requests_per_s']:,.0f} requests/s** ({run['requests']:,} requests in "
        f"{run['elapsed_s']:.1f} s); all requests: p50 {_ms(run['p50_ms'])} ms, "
        f"p99 {_ms(run['p99_ms'])} ms",
        f"- 5xx: **{run['status_5xx']}** (target 0: {_verdict(not run['status_5xx'])}); "
        f"other failed answers: {run['failures'] - run['status_5xx'] - run['transport_errors']}"
        f"; transport errors: {run['transport_errors']}; tracebacks in the server log: "
        f"{run['server']['tracebacks']}",
        f"- ingest: {ingest['accepted']:,} events accepted "
        f"({ingest['accepted_per_s']:,.0f} events/s) in {ingest['batches']:,} batches of "
        f"{ingest['batch']}; {ingest['duplicates']:,} duplicates answered over "
        f"{ingest['sends']:,} sends",
        f"- exactly once: {_verdict(check['exact'])}: {check['stored_live']:,} live events "
        f"stored for {check['accepted']:,} accepted, {check['events']:,} events in the account"
        + (", no event id twice, every rollup equal to them" if check["exact"] else ""),
    ]
    lines += [f"  - **mismatch** {name}: expected {wrong['expected']}, found {wrong['found']}"
              for name, wrong in check["mismatches"].items()]
    lines += [
        f"- machine: {info['nproc']} CPUs, Python {info['python']}, SQLite {info['sqlite']}"
        f"{extra}, measured {run['date'][:16]} UTC; `meterql serve --workers "
        f"{run['workers']}`"
        + ("" if not run.get("server_env") else "; server settings: " + ", ".join(
            f"`{k}={v}`" for k, v in run["server_env"].items())),
        f"- command: `{run['command']}`",
        "",
        "| request | share of the mix | requests | p50 ms | p99 ms | failed | statuses |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    weights = sum(kind["weight"] for kind in run["kinds"].values())
    for name, kind in run["kinds"].items():
        statuses = ", ".join(f"{code}: {n:,}" for code, n in kind["statuses"].items())
        lines.append(f"| `{name}` | {100 * kind['weight'] / weights:.0f} % | "
                     f"{kind['requests']:,} | {_ms(kind['p50_ms'])} | {_ms(kind['p99_ms'])} | "
                     f"{kind['failures']} | {statuses} |")
    lines.append("")
    # What went wrong, verbatim: the first failed answer of each kind that had one.
    for name, kind in run["kinds"].items():
        if kind["examples"]:
            lines.append(f"- first failure of `{name}`: "
                         f"`{json.dumps(kind['examples'][0])[:300]}`")
    return [*lines, ""] if any(k["examples"] for k in run["kinds"].values()) else lines


WRITES_BOUNDS = {"import_events_per_s": 60_000, "live_events_per_s": 25_000}


def _writes_section(runs: list[dict[str, Any]]) -> list[str]:
    """``benchmarks/writes.py``: import by size, and gateways ingesting into one PostgreSQL."""
    lines = [
        "## Writes at scale",
        "",
        "`benchmarks/writes.py`, run by hand. **Import**: a generated tenant (as above) loaded",
        "into a fresh database by `meterql load` in a child process, timed from spawn to",
        "exit (migration included), with its peak RSS. **Gateways** (PostgreSQL):",
        "`meterql serve` processes, each on its own port, over one database holding a",
        "100k-event tenant; concurrent senders per gateway POST batches of new events for",
        "one account, every Nth send of a sender re-sending an earlier batch of any sender",
        "(duplicates, often through another gateway). Then the database is read directly:",
        "each accepted event stored",
        "once (its key and its row), every rollup summing to the account's events, the",
        "deadlocks PostgreSQL counted; 11 s later, each table's live and dead tuples.",
        "",
        f"Targets: `meterql load` ≥ {WRITES_BOUNDS['import_events_per_s']:,} events/s on both "
        "backends at 1M, peak RSS flat;",
        f"live ingest ≥ {WRITES_BOUNDS['live_events_per_s']:,} events/s with 4 gateways × 8 "
        "senders on one account, 0 5xx, 0 deadlocks, every",
        "accepted event counted once, dead rollup tuples ≤ live rows after 10 minutes",
        "(autovacuum at its defaults).",
        "",
        "| backend | events | seconds | events/s | peak RSS MiB | file MiB | ≥ target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in sorted(runs, key=lambda r: r["backend"] != "sqlite"):
        for size in run["imports"]:
            ok = size["events_per_s"] >= WRITES_BOUNDS["import_events_per_s"]
            lines.append(
                f"| {NAMES.get(run['backend'], run['backend'])} | {size['events']:,} | "
                f"{size['seconds']:.1f} | {size['events_per_s']:,.0f} | "
                f"{size['peak_rss_mib']:.0f} | {size['file_mib']:.0f} | {_yes(ok)} |")
    lines.append("")
    for run in runs:
        info = run["machine"]
        extra = f", PostgreSQL {info['postgresql']}" if "postgresql" in info else ""
        lines.append(f"- {NAMES.get(run['backend'], run['backend'])}: {info['nproc']} CPUs, "
                     f"Python {info['python']}, SQLite {info['sqlite']}{extra}, measured "
                     f"{run['date'][:16]} UTC; command: `{run['command']}`")
    lines.append("")
    for run in runs:
        if "live" in run:
            lines += _gateways_run(run["live"])
    return lines


def _gateways_run(live: dict[str, Any]) -> list[str]:
    ingest, check = live["ingest"], live["check"]
    rate_ok = ingest["accepted_per_s"] >= WRITES_BOUNDS["live_events_per_s"]
    auto = live["autovacuum"]
    lines = [
        f"### Gateways: {live['gateways']} × {live['senders']} senders, one account, "
        f"{live['seconds']:g} s, batches of {live['batch']}",
        "",
        f"- **{ingest['accepted_per_s']:,.0f} events/s** accepted ({ingest['accepted']:,} in "
        f"{ingest['elapsed_s']:.0f} s; target {WRITES_BOUNDS['live_events_per_s']:,}: "
        f"{_yes(rate_ok)}); a batch's latency p50 {_ms(ingest['batch_p50_ms'])} ms, p99 "
        f"{_ms(ingest['batch_p99_ms'])} ms",
        f"- 5xx: **{ingest['status_5xx']}**, transport errors: {ingest['transport_errors']}, "
        f"deadlocks: **{check['deadlocks']}**, tracebacks in the gateways' logs: "
        f"{live['tracebacks']}; statuses: " + ", ".join(
            f"{code}: {n:,}" for code, n in ingest["statuses"].items()),
        f"- exactly once: {_yes(check['exact'])}: {check['keys']:,} keys and {check['rows']:,} "
        f"events stored for {ingest['accepted']:,} accepted; {ingest['resends']:,} re-sent "
        f"batches, {ingest['duplicates']:,} duplicates answered; every rollup equal to the "
        f"account's {check['account_events']:,} events: {_yes(check['rollups_equal_events'])}",
        f"- autovacuum at its defaults: {_yes(auto['defaults'])}"
        + ("" if auto["defaults"] else f" ({json.dumps(auto['not_default'])[:200]})"),
        "",
        "| table | live tuples | dead tuples | dead ≤ live | updates | of them HOT |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name, row in live["tables"].items():
        if name.startswith("usage_events"):
            continue  # appended to, never updated
        lines.append(f"| `{name}` | {row['n_live_tup']:,} | {row['n_dead_tup']:,} | "
                     f"{_yes(row['n_dead_tup'] <= row['n_live_tup'])} | {row['n_tup_upd']:,} | "
                     f"{row['n_tup_hot_upd']:,} |")
    return [*lines, ""]


def _bounds_table() -> list[str]:
    """The targets as stated, per backend."""
    rows = [
        ("every `/v1` route, median over HTTP", "≤ {:g}× the floor", "routes_floor", 1),
        ("throughput, `wrk` 16 connections, `/v1/metrics/summary?days=90` and "
         "`/v1/billing`", "≥ {:.0f}% of the floor's req/s", "throughput_share", 100),
        ("`--workers 2` throughput over 1 worker (same two routes)", "≥ {:g}×",
         "workers_gain", 1),
        ("90-day `usage` series (Berlin, Kolkata, Berlin by model)", "≤ {:g}× the floor",
         "series_floor", 1),
        ("BillingPage and MetricsPage", "≤ {:g}× the floor", "pages_floor", 1),
        ("growth 100k → 1M (route and query medians)", "≤ {:g}×", "growth", 1),
        ("any one statement of any page (and of any `/v1` route) at 1M", "≤ {:g} ms",
         "statement_ms", 1),
    ]
    backends = list(BOUNDS)
    lines = ["| target | " + " | ".join(NAMES[b] for b in backends) + " |",
             "|---|" + "---|" * len(backends)]
    for target, fmt, field, scale in rows:
        lines.append(f"| {target} | " + " | ".join(
            fmt.format(getattr(BOUNDS[b], field) * scale) for b in backends) + " |")
    return lines


def render(results: list[dict[str, Any]], analysis: str = "", source: str = "benchmarks/results",
           rendering: str = RENDER) -> str:
    """The document; ``analysis`` (hand-written Markdown) follows the targets."""
    load = [r for r in results if r.get("kind") == "load"]
    writes = [r for r in results if r.get("kind") == "writes"]
    results = [r for r in results if r.get("kind") not in ("load", "writes")]
    by_backend: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in sorted(results, key=lambda r: (r["backend"] != "sqlite", r["backend"],
                                                 r["events"])):
        by_backend[result["backend"]].append(result)
    lines = [
        "# Performance",
        "",
        f"<!-- Generated by benchmarks/report.py from {source}/*.json: "
        "do not edit by hand. -->",
        "",
        f"Generated by `{rendering}` from `{source}/*.json`; do not edit by hand. Each run",
        "generates a tenant (N events over the 90 days before the run, 50 instances, 20",
        "priced models, 20,000 end users, plus a small second tenant), imports it with",
        "`meterql load`, starts `meterql serve` (one worker) and measures it over real HTTP,",
        "sequentially, next to two yardsticks from the same run:",
        "",
        "- **floor**: a bare Starlette app under the same uvicorn (`benchmarks/floor.py`)",
        "  answering the route's captured response from memory (same status, bytes,",
        "  content-type and content-length): the cost of HTTP alone;",
        "- **naive SQL**: the same aggregate hand-written over the indexed `usage_events`",
        "  table (`sqlite3` or `asyncpg`, prepared), median of repeated runs: the cost of",
        "  the query alone, without any HTTP.",
        "",
        "Before anything is timed and before live ingest writes, every route's body is",
        "read and compared with the naive SQL's rows (`benchmarks/exact.py`): money as",
        "the exact nano-USD sum rounded half-up to 4 places, percentages half-up to 2,",
        "lists in the contract's order, within the same UTC day as the server's. Each",
        "GraphQL twin must return the same data as its REST route.",
        "",
        "The GraphQL-only queries, which have no REST route (`usage` over 90 local days in",
        "Europe/Berlin and in Asia/Kolkata, the Berlin one by model, and the pages of",
        "`src/meterql/queries/`), are measured the same way over `POST /graphql`: the floor",
        "answers their captured response by operation name; `usage` is checked bucket by",
        "bucket against the naive SQL bucketed into local days with `zoneinfo`, and each",
        "part of a page against the `/v1` route it is the twin of.",
        "",
        "Then, in this order and before anything writes: throughput with `wrk` on the",
        "floor, on `meterql serve` and on `meterql serve --workers 2`, one server at a",
        "time; every database call of each read timed in-process, with the plans of the",
        "slow statements. Only then live ingest, and on PostgreSQL a sustained one, after",
        "which every read is timed again.",
        "",
        "Both sizes on both backends, in one command (well over an hour at 1M events):",
        "",
        "```sh",
        MATRIX,
        "```",
        "",
        "## Machine",
        "",
    ]
    for backend, runs in by_backend.items():
        info = runs[-1]["machine"]
        extra = f", PostgreSQL {info['postgresql']}" if "postgresql" in info else ""
        extra += f", {info['wrk']}" if "wrk" in info else ""
        lines.append(f"- {NAMES.get(backend, backend)}: {info['nproc']} CPUs, Python "
                     f"{info['python']}, SQLite {info['sqlite']}{extra}, {info['platform']}, "
                     f"measured {runs[-1]['date'][:16]} UTC")
    lines += [
        "", "## Targets", "",
        "One worker, 1M events, all figures from the same run; 100k is reported too. A "
        "backend whose 1M run is missing is judged at the largest size measured, and the "
        "verdict says so.",
        "", *_bounds_table(), "",
    ]
    for backend, runs in by_backend.items():
        lines += _targets(backend, runs)
    if analysis:
        lines += [analysis.strip(), ""]
    lines += _throughput_section(by_backend)
    lines += _statements_section(by_backend)
    if "postgresql" in by_backend:
        lines += _post_ingest_section(by_backend)
    lines += _growth_section(by_backend)
    if writes:
        lines += _writes_section(writes)
    if load:
        lines += _load_section(load)
    lines += ["## Results", ""]
    for runs in by_backend.values():
        for result in runs:
            lines += _size_section(result)
    lines += [
        "## Reproducing",
        "",
        "The commands that produced the results above, then the rendering:",
        "",
        "```sh",
        *sorted({r["command"] for r in results + writes + load}),
        rendering,
        "```",
        "",
    ]
    return "\n".join(lines)


def _shown(path: Path, root: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def write_docs(root: Path = ROOT, results: Path | None = None,
               out: Path | None = None) -> tuple[Path, int]:
    """Render the results files of ``results`` to ``out``; (its path, files read).

    By default ``benchmarks/results/*.json`` to ``docs/performance.md``: the
    entry point of ``bench.py --write-docs`` and ``load.py --write-docs``. A
    smoke run renders its own directory elsewhere (``bench.py --results DIR
    --docs-out FILE``).
    """
    root = root.resolve()
    folder = results or root / "benchmarks" / "results"
    docs = out or root / "docs" / "performance.md"
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    rendering = RENDER
    if folder.resolve() != (root / "benchmarks" / "results").resolve() or out is not None:
        rendering += f" --results {_shown(folder, root)} --docs-out {_shown(docs, root)}"
    # The hand-written reading of the figures (profile findings, what is
    # left) lives beside the results and is placed after the targets.
    analysis = root / "benchmarks" / "analysis.md"
    docs.write_text(render(found, analysis.read_text() if analysis.exists() else "",
                           _shown(folder, root), rendering))
    return docs, len(found)
