"""End-to-end benchmark of meterql: import, read routes, GraphQL, throughput, live ingest.

Everything goes through the real entry points (``meterql load``, ``meterql
serve``, HTTP) and is set beside two yardsticks measured in the same run: the
HTTP floor (a bare Starlette app under the same uvicorn, answering the same
response) and the naive answer (hand-written SQL aggregates over
usage_events, see exact.py). Before anything is timed, and before live ingest
writes, every sampled route's body is checked against the naive SQL's rows.

Beside the /v1 routes, the GraphQL-only queries (``graphql_only``: ``usage``
over 90 local days in Europe/Berlin and Asia/Kolkata, the Berlin one by
model, and the pages ``src/meterql/queries/billing-page.graphql`` and
``metrics-page.graphql``, read at each run with their own operation name) are
timed over POST /graphql, against the floor (answering by operation name)
and, for the ``usage`` series, a naive aggregate per UTC hour or half hour
bucketed into local days in Python. Their answers are walked field by field
against a reference (``references``): the naive answer for ``usage``, the
/v1 route's body for a page's twin fields, /v1/billing and the tenant for
``viewer``.

The order of one run (one size, one backend), each server alone on the
machine while it is measured; nothing writes until step 5, so every read
sees the imported data only:

1. ``meterql serve`` (one worker): the snapshot and exactness check, the
   sequential timings (REST, GraphQL twins, GraphQL-only queries), the naive
   SQL, then throughput: ``wrk -t1 -c16 -d8s`` (``--wrk-seconds``) on
   ``THROUGHPUT`` routes, after an untimed warm-up run of wrk;
2. the floor (``floor.py``): the same sequential timings, then the same wrk;
3. ``meterql serve --workers 2``: the same wrk (when wrk is not installed,
   the throughput is recorded as skipped);
4. in-process (``statements.py``): every driver call of each /v1 route and
   GraphQL-only query timed with its SQL; the plans of statements over
   ``--explain-over-ms``; then ``--profile`` if asked;
4b. at the largest of several sizes, growth side by side: the smallest
   size's tenant loaded into a database of its own, each served by its own
   ``meterql serve``, and every read timed on one then the other, in
   ``GROWTH_ROUNDS`` rounds (the sequential medians of step 1 are taken
   tens of minutes apart, on a machine whose speed drifts);
5. ``meterql serve`` (one worker) again: live ingest (``--ingest-batches``
   batches of 1,000, one at a time), then on PostgreSQL ``--post-ingest-seconds``
   of live ingest by 8 concurrent senders, the tables' dead and live tuples
   before and after, and every read timed again (against the floor of step 2),
   then the statements of step 4 again, in-process.

Both sizes on both backends (well over an hour at 1M events), results in
benchmarks/results/, then docs/performance.md:

    python benchmarks/bench.py --sizes 100000,1000000 --backend sqlite,postgresql \\
        --profile /v1/billing/usage --write-docs

One size on one backend, or only re-render docs/performance.md from
benchmarks/results/:

    python benchmarks/bench.py --events 100000 --backend postgresql \\
        --pg-url postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/bench.py --write-docs

A smoke run, its results and its rendering kept out of benchmarks/results/
and docs/ (``--write-docs`` renders ``--results``; from a directory other
than benchmarks/results/ it writes ``DIR/performance.md`` unless
``--docs-out`` says where):

    python benchmarks/bench.py --events 20000 --requests 20 --naive-runs 3 \\
        --ingest-batches 2 --backend sqlite,postgresql --results /tmp/meterql-smoke \\
        --post-ingest-seconds 20 --wrk-seconds 3
    python benchmarks/bench.py --write-docs --results /tmp/meterql-smoke \\
        --docs-out /tmp/perf.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import secrets
import shlex
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import live
import statements
import wrk
from dataset import BIG, INSTANCES, MODELS, SMALL_EVENTS, Tenant, write_tenant
from exact import (
    DAYS,
    NAIVE,
    TWINS,
    Walk,
    bounds,
    camel_keys,
    check,
    check_pricing,
    day_start,
    expected_usage,
    parse_operation,
    plain,
    twin_route,
    usage_days,
    usage_slot,
    usage_sql,
)
from graphql import GraphQLError
from report import write_docs

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCUMENTS = HERE.parent / "src" / "meterql" / "rest_compat" / "documents"
PAGES = HERE.parent / "src" / "meterql" / "queries"

# (route, GraphQL document, variables). The naive SQL of each route that has
# one is in exact.NAIVE.
ROUTES: list[tuple[str, str, dict[str, int]]] = [
    (f"/v1/metrics/summary?days={DAYS}", "metrics_summary", {"days": DAYS}),
    (f"/v1/metrics/instances?days={DAYS}", "metrics_instances", {"days": DAYS}),
    (f"/v1/metrics/models?days={DAYS}", "metrics_models", {"days": DAYS}),
    (f"/v1/metrics/usage?days={DAYS}", "metrics_usage", {"days": DAYS}),
    ("/v1/billing", "billing", {}),
    ("/v1/billing/trial-status", "billing_trial_status", {}),
    ("/v1/billing/usage", "billing_usage", {}),
    (f"/v1/billing/usage/chart?days={DAYS}", "billing_usage_chart", {"days": DAYS}),
]

# The routes whose throughput is measured with wrk, on the floor and on meterql.
THROUGHPUT = (f"/v1/metrics/summary?days={DAYS}", "/v1/billing")
# An untimed wrk run before each timed one: a fresh worker warms up in it.
WRK_WARMUP_S = 2


def auth_headers(token: str) -> dict[str, str]:
    """What every client here sends: the token, and ``Accept-Encoding: identity``.

    httpx asks for gzip, deflate and brotli unless told otherwise, and meterql
    compresses a larger answer when asked: the lists, the series and the pages
    were timed compressed by meterql and decompressed by the client, against a
    floor answering the same data uncompressed (the report's "the floor
    answered the same bytes" said no). wrk asks for no encoding. Asked for
    none, meterql sends the bytes the floor answers.
    """
    return {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}


_USAGE = """
    from to timeZone
    totals { requests tokensIn tokensOut totalTokens estimatedCostUsd }
    series { start end requests tokensIn tokensOut estimatedCostUsd }"""
_USAGE_BY_MODEL = """
    from to timeZone groupBy
    totals { requests tokensIn tokensOut totalTokens estimatedCostUsd }
    groups { key requests tokensIn tokensOut totalTokens estimatedCostUsd }
    series {
      start end requests tokensIn tokensOut estimatedCostUsd
      groups { key requests tokensIn tokensOut estimatedCostUsd }
    }"""


@dataclass(frozen=True)
class Query:
    """A GraphQL-only query: no /v1 route, so measured by its GraphQL answer.

    ``naive`` (zone, days, groupBy) names the aggregate timed as its naive
    yardstick; pages have none (their parts are the routes', timed there).
    """

    name: str
    operation: str
    text: str
    source: str
    naive: tuple[str, int, str | None] | None = None

    def request(self) -> dict[str, Any]:
        return {"query": self.text, "operationName": self.operation}


def _usage_query(name: str, operation: str, tz: str, group_by: str | None) -> Query:
    arguments = f'days: {DAYS}, tz: "{tz}", granularity: DAY'
    arguments += f", groupBy: {group_by}" if group_by else ""
    text = (f"query {operation} {{\n  usage({arguments}) {{"
            f"{_USAGE_BY_MODEL if group_by else _USAGE}\n  }}\n}}\n")
    return Query(name, operation, text, "benchmarks/bench.py", (tz, DAYS, group_by))


def _page(path: Path) -> Query:
    """A page's document, read from ``src/meterql/queries/``; its operation name is its own."""
    if not path.exists():
        raise SystemExit(f"{path.relative_to(HERE.parent)} is missing: the page to measure")
    text = path.read_text(encoding="utf-8")
    try:
        _, operation = parse_operation(text)
    except (ValueError, GraphQLError) as why:
        raise SystemExit(f"{path.relative_to(HERE.parent)}: {why}") from None
    assert operation.name is not None
    name = operation.name.value
    return Query(name, name, text, str(path.relative_to(HERE.parent)))


def graphql_only() -> list[Query]:
    """The GraphQL-only queries, pages read from disk at each run."""
    return [
        _usage_query(f"usage days={DAYS} DAY Europe/Berlin", "UsageBerlin", "Europe/Berlin",
                     None),
        _usage_query(f"usage days={DAYS} DAY Asia/Kolkata", "UsageKolkata", "Asia/Kolkata",
                     None),
        _usage_query(f"usage days={DAYS} DAY Europe/Berlin by MODEL", "UsageBerlinByModel",
                     "Europe/Berlin", "MODEL"),
        _page(PAGES / "billing-page.graphql"),
        _page(PAGES / "metrics-page.graphql"),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def database(backend: str, pg_url: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """A fresh database: (SQLAlchemy URL for meterql, URL for the naive queries).

    PostgreSQL gets its own throwaway database so a run never touches data it
    did not create, and is dropped even when the run fails.
    """
    if backend == "sqlite":
        path = workdir / "bench.db"
        yield f"sqlite+aiosqlite:///{path}", str(path)
        return
    name = f"meterql_bench_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(pg_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    naive_url = f"{pg_url.rsplit('/', 1)[0]}/{name}"
    try:
        yield naive_url.replace("postgresql://", "postgresql+asyncpg://", 1), naive_url
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def run_import(path: Path, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """``meterql load`` in a child, timed from spawn to exit (migration included).

    The child is started by ``peak_rss.py``, a bare interpreter, so that its
    peak RSS is its own: spawned from this process, the kernel would also
    charge it with this process's memory, held before ``exec``.
    """
    report = workdir / "load.json"
    argv = [sys.executable, str(HERE / "peak_rss.py"), str(report),
            sys.executable, "-m", "meterql.cli", "load", str(path)]
    with (workdir / "load.out").open("wb") as out:
        subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    output = (workdir / "load.out").read_text()
    measured = json.loads(report.read_text())
    if measured["exit_code"]:
        raise SystemExit(f"meterql load failed:\n{output}")
    return {"seconds": measured["seconds"], "peak_rss_mib": measured["peak_rss_kib"] / 1024,
            "output": output.strip()}


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server child in its own session, so SIGTERM reaches uvicorn and its workers."""
    with log.open("wb") as err:
        child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                 start_new_session=True)
    try:
        yield child
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def wait_ready(url: str, headers: dict[str, str], child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"server exited with {child.returncode} before answering {url}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"no answer from {url}")


def timed(call: Callable[[], httpx.Response], warmup: int, count: int) -> dict[str, Any]:
    """Sequential calls after a warm-up; median and p99 in ms.

    Failures (non-2xx, or a GraphQL answer with errors) are counted rather than
    raised, so one bad route shows up in the table instead of hiding the rest.
    """
    for _ in range(warmup):
        call()
    samples, failures = sampled(call, count)
    return {"median_ms": statistics.median(samples),
            "p99_ms": statistics.quantiles(samples, n=100, method="inclusive")[98],
            "failures": failures}


def sampled(call: Callable[[], httpx.Response], count: int) -> tuple[list[float], int]:
    """``count`` sequential calls: each one's time in ms, and how many failed."""
    samples, failures = [], 0
    for _ in range(count):
        started = time.perf_counter()
        response = call()
        samples.append((time.perf_counter() - started) * 1000)
        failures += not response.is_success or b'"errors"' in response.content
    return samples, failures


def run_naive(backend: str, url: str, plan: dict[str, tuple[datetime, datetime]],
              runs: int) -> dict[str, dict[str, Any]]:
    """Each route's naive statements, ``runs + 1`` times; the first run warms caches.

    Returns per route the samples (ms, all statements of the route together,
    first run dropped unless it is the only one) and the rows of the last run.
    """
    if backend == "sqlite":
        return _naive_sqlite(url, plan, runs)
    return asyncio.run(_naive_postgresql(url, plan, runs))


def _naive_sqlite(path: str, plan: dict[str, tuple[datetime, datetime]],
                  runs: int) -> dict[str, dict[str, Any]]:
    """Straight through sqlite3, bounds in meterql's stored text form (naive UTC)."""
    connection = sqlite3.connect(path)
    try:
        out = {}
        for route, (start, end) in plan.items():
            window = [moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
                      for moment in (start, end)]
            statements = [sql.replace("$", "?") for sql in NAIVE[route][1]]
            samples, rows = [], []
            for _ in range(runs + 1):
                started = time.perf_counter()
                rows = [connection.execute(sql, [BIG, *window]).fetchall() for sql in statements]
                samples.append((time.perf_counter() - started) * 1000)
            out[route] = {"samples": samples[1:] or samples,
                          "rows": [[plain(row) for row in result] for result in rows]}
        return out
    finally:
        connection.close()


async def _naive_postgresql(url: str, plan: dict[str, tuple[datetime, datetime]],
                            runs: int) -> dict[str, dict[str, Any]]:
    """Through asyncpg, each statement prepared once (not timed) as a careful hand would."""
    connection = await asyncpg.connect(url)
    try:
        out = {}
        for route, (start, end) in plan.items():
            statements = [await connection.prepare(sql) for sql in NAIVE[route][1]]
            samples, rows = [], []
            for _ in range(runs + 1):
                started = time.perf_counter()
                rows = [await statement.fetch(BIG, start, end) for statement in statements]
                samples.append((time.perf_counter() - started) * 1000)
            out[route] = {"samples": samples[1:] or samples,
                          "rows": [[plain(row) for row in result] for result in rows]}
        return out
    finally:
        await connection.close()


def run_usage_naive(backend: str, url: str, tenant: Tenant, tz: str, days: tuple[date, date],
                    group_by: str | None, runs: int, instance: str | None = None,
                    model: str | None = None) -> dict[str, Any]:
    """``usage(...)``'s naive answer, ``runs + 1`` times (the first warms caches).

    Each sample is the statement (rows fetched) plus the bucketing into local
    days in Python: both are the hand-written answer. Returns the samples
    (first dropped unless it is the only one) and the last answer.
    """
    first, last = days
    sql = usage_sql(backend, usage_slot(tz, first, last), group_by, instance, model)
    zone = ZoneInfo(tz)
    start, end = (day_start(day, zone).astimezone(UTC)
                  for day in (first, last + timedelta(days=1)))
    extra = [value for value in (instance, model) if value is not None]

    def answer(rows: list[Any]) -> dict[str, Any]:
        return expected_usage([plain(row) for row in rows], tz, first, last, group_by, tenant)

    samples, found = [], {}
    if backend == "sqlite":
        connection = sqlite3.connect(url)
        window = [moment.strftime("%Y-%m-%d %H:%M:%S.%f") for moment in (start, end)]
        try:
            for _ in range(runs + 1):
                started = time.perf_counter()
                found = answer(connection.execute(sql, [BIG, *window, *extra]).fetchall())
                samples.append((time.perf_counter() - started) * 1000)
        finally:
            connection.close()
        return {"samples": samples[1:] or samples, "answer": found}

    async def on_postgresql() -> dict[str, Any]:
        connection = await asyncpg.connect(url)
        try:
            statement = await connection.prepare(sql)
            for _ in range(runs + 1):
                started = time.perf_counter()
                found = answer(await statement.fetch(BIG, start, end, *extra))
                samples.append((time.perf_counter() - started) * 1000)
        finally:
            await connection.close()
        return {"samples": samples[1:] or samples, "answer": found}

    return asyncio.run(on_postgresql())


_TIER = ("apiCallLimit", "billingCycle", "conversationLimit", "instanceLimit",
         "maxSitesPerNode", "planName", "priceCents", "productName", "tierId", "tierSlug",
         "tokenAllowance")


def references(client: httpx.Client, tenant: Tenant, backend: str, naive_url: str,
               now: datetime) -> dict[str, Any]:
    """What a GraphQL-only answer is checked against, field by field (see ``exact.Walk``).

    - a /v1 route's twin field (``billing``, ``usageChart(days: 30)``...): that
      route's body read over REST with the same arguments;
    - ``usage(...)``, at the root, on ``viewer``, an instance or a model: the
      naive SQL bucketed into local days (DAY only; other grains unchecked);
    - ``viewer``: its plan and subscriptions against ``/v1/billing``'s plan,
      its instances and models against the tenant the harness wrote.
    """
    bodies: dict[str, Any] = {}
    naive: dict[tuple[Any, ...], Any] = {}

    def rest(route: str) -> Any:
        if route not in bodies:
            bodies[route] = camel_keys(client.get(route).json())
        return bodies[route]

    def twin(field: str) -> Callable[[dict[str, Any]], Any]:
        return lambda arguments: rest(twin_route(field, arguments))

    def usage(arguments: dict[str, Any], instance: str | None = None,
              model: str | None = None) -> Any:
        if (arguments.get("granularity") or "DAY") != "DAY":
            raise NotImplementedError("a grain other than DAY")
        tz, span = arguments.get("tz") or "UTC", arguments.get("range")
        days = usage_days(tz, now, arguments.get("days"),
                          *((date.fromisoformat(span["from"]), date.fromisoformat(span["to"]))
                            if span else ()))
        key = (tz, days, arguments.get("groupBy"), instance, model)
        if key not in naive:
            naive[key] = run_usage_naive(backend, naive_url, tenant, tz, days, key[2], 0,
                                         instance, model)["answer"]
        return naive[key]

    def subscriptions(_: dict[str, Any]) -> list[dict[str, Any]]:
        plan = rest("/v1/billing")["plan"]
        return [{**{key: plan[key] for key in ("tierId", "status", "currentPeriodStart",
                                                "currentPeriodEnd", "trialEndsAt",
                                                "trialDaysRemaining")},
                 "live": True, "tier": {key: plan[key] for key in _TIER}}]

    def instances(arguments: dict[str, Any]) -> dict[str, Any]:
        if arguments.get("after"):
            raise NotImplementedError("a page after a cursor")
        status = arguments.get("status")
        ids = sorted(i for i, (_, state) in tenant.instances.items()
                     if status is None or state == status)
        return {"totalCount": len(ids), "edges": [
            {"node": {"id": i, "hostname": tenant.instances[i][0],
                      "status": tenant.instances[i][1], "usage": partial(usage, instance=i)}}
            for i in ids[:arguments.get("first", 50)]]}

    viewer = {
        "accountId": BIG, "plan": lambda _: rest("/v1/billing")["plan"],
        "subscriptions": subscriptions, "instances": instances, "usage": usage,
        "models": lambda _: [{"name": m, "provider": tenant.models[m][0],
                              "usage": partial(usage, model=m)} for m in sorted(tenant.models)],
    }
    return {**{field: twin(field) for field in TWINS}, "usage": usage, "viewer": viewer}


def check_query(query: Query, answer: dict[str, Any], reference: dict[str, Any],
                limit: int = 10) -> dict[str, Any]:
    """One GraphQL-only answer walked along its document against ``references``."""
    body = answer["json"] or {}
    if answer["status"] != 200 or "errors" in body or not body.get("data"):
        return {"exact": False, "mismatch_count": 1, "checked": 0, "unchecked": [],
                "mismatches": [{"at": "errors", "route": json.dumps(body.get("errors"))[:300],
                                "naive": f"status 200, no errors (was {answer['status']})"}]}
    document, operation = parse_operation(query.text)
    walk = Walk(document, operation)
    walk.walk(operation.selection_set, body["data"], reference, "")
    return {"exact": not walk.mismatches and walk.checked > 0,
            "mismatches": walk.mismatches[:limit], "mismatch_count": len(walk.mismatches),
            "checked": walk.checked, "unchecked": walk.unchecked}


def local_days(now: datetime, queries: list[Query]) -> tuple[date, ...]:
    """Today in UTC and in every zone the queries name: a snapshot stays within all."""
    zones = sorted({"UTC", *(q.naive[0] for q in queries if q.naive)})
    return tuple(now.astimezone(ZoneInfo(zone)).date() for zone in zones)


def graphql_request(document: str, variables: dict[str, int]) -> dict[str, Any]:
    query = (DOCUMENTS / f"{document}.graphql").read_text()
    return {"query": query, "variables": variables}


def snapshot(client: httpx.Client, tenant: Tenant, backend: str, naive_url: str,
             queries: list[Query]) -> tuple[date, dict[str, Any], dict[str, Any], dict[str, Any],
                                            dict[str, Any], int]:
    """Every route's body (REST and GraphQL) and the naive rows, within one UTC day.

    Taken while nothing writes (before live ingest), so the bodies and the
    rows see the same events. The server's "today" and the naive window must
    be the same UTC day (and the same local day in the zones the GraphQL-only
    queries name): if midnight passes during the snapshot, it is taken again.
    The GraphQL-only answers are checked here, their references read in the
    same day.
    """
    for attempt in range(1, 4):
        now = datetime.now(UTC)
        today, days = now.date(), local_days(now, queries)
        captured, extra = {}, {}
        for query in queries:
            response = client.post("/graphql", json=query.request())
            extra[query.name] = {
                "status": response.status_code, "body": response.content.decode(),
                "content_type": response.headers.get("content-type"),
                "content_length": response.headers.get("content-length"),
                "json": response.json() if response.is_success else None,
            }
        reference = references(client, tenant, backend, naive_url, now)
        verdicts = {query.name: check_query(query, extra[query.name], reference)
                    for query in queries}
        for route, document, variables in ROUTES:
            rest = client.get(route)
            graphql = client.post("/graphql", json=graphql_request(document, variables))
            captured[route] = {
                "status": rest.status_code, "body": rest.content.decode(),
                "content_type": rest.headers.get("content-type"),
                "content_length": rest.headers.get("content-length"),
                "graphql": graphql.json() if graphql.is_success else None,
            }
        plan = {route: bounds(route, today, tenant) for route in NAIVE}
        rows = run_naive(backend, naive_url, plan, runs=0)
        if local_days(datetime.now(UTC), queries) == days:
            return today, captured, rows, extra, verdicts, attempt
    raise SystemExit("the snapshot crossed UTC midnight three times running")


def check_exactness(today: date, captured: dict[str, Any], rows: dict[str, Any],
                    tenant: Tenant, verdicts: dict[str, Any]) -> dict[str, Any]:
    """Sampled routes against the naive rows; every GraphQL twin against its REST body.

    ``verdicts`` are the GraphQL-only queries', taken in ``snapshot``.
    """
    routes = {}
    for route in NAIVE:
        answer = captured[route]
        if answer["status"] != 200:
            routes[route] = {"exact": False, "mismatch_count": 1, "mismatches": [
                {"at": "status", "route": answer["status"], "naive": 200}]}
        else:
            routes[route] = check(route, json.loads(answer["body"]), rows[route]["rows"],
                                  today, tenant)
    graphql_same = {}
    for route, answer in captured.items():
        data = (answer["graphql"] or {}).get("data") or {}
        graphql_same[route] = (answer["status"] == 200 and "errors" not in (answer["graphql"] or {})
                               and data.get("body") == json.loads(answer["body"]))
    pricing = check_pricing(rows[f"/v1/metrics/models?days={DAYS}"]["rows"][0], tenant)
    return {"today": today.isoformat(), "routes": routes, "graphql_same": graphql_same,
            "pricing": pricing, "graphql_only": verdicts,
            "all_exact": (all(v["exact"] for v in routes.values()) and pricing["exact"]
                          and all(graphql_same.values())
                          and all(v["exact"] for v in verdicts.values()))}


def ingest_batches(count: int, size: int, now: datetime) -> list[bytes]:
    """Pre-serialised batches of new events, so the timing holds only meterql's work."""
    stamp = (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    tag = secrets.token_hex(3)
    return [json.dumps([
        {"event_id": f"live-{tag}-{b:04d}-{n:05d}", "instance_id": f"inst-{n % INSTANCES:02d}",
         "model": f"model-{n % MODELS:02d}", "timestamp": stamp, "tokens_in": 100 + n % 900,
         "tokens_out": 10 + n % 300, "end_user_id": f"user-{n:05d}"}
        for n in range(size)]).encode() for b in range(count)]


def measure_ingest(base: str, token: str, batches: list[bytes]) -> dict[str, Any]:
    headers = {**auth_headers(token), "Content-Type": "application/json"}
    accepted = 0
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        started = time.perf_counter()
        for batch in batches:
            response = client.post("/v1/usage/events", content=batch)
            response.raise_for_status()
            accepted += response.json()["accepted"]
        elapsed = time.perf_counter() - started
    return {"batches": len(batches), "accepted": accepted, "seconds": elapsed,
            "events_per_s": accepted / elapsed}


def time_reads(client: httpx.Client, queries: list[Query],
               args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every /v1 route (REST, then its GraphQL twin) and GraphQL-only query, sequentially."""
    routes = {
        route: {"rest": timed(partial(client.get, route), args.warmup, args.requests),
                "graphql": timed(partial(client.post, "/graphql",
                                         json=graphql_request(document, variables)),
                                 args.warmup, args.requests)}
        for route, document, variables in ROUTES
    }
    only = {
        query.name: {"graphql": timed(partial(client.post, "/graphql", json=query.request()),
                                      args.warmup, args.requests)}
        for query in queries
    }
    return routes, only


def throughput(base: str, auth: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """wrk on each ``THROUGHPUT`` route of the server at ``base``, one after the other."""
    path = wrk.installed()
    assert path is not None
    return {route: wrk.run(path, base + route, auth, args.wrk_seconds, args.wrk_connections,
                           threads=1, warmup=WRK_WARMUP_S)
            for route in THROUGHPUT}


def measure_server(tenant: Tenant, env: dict[str, str], naive_url: str, backend: str,
                   args: argparse.Namespace, workdir: Path,
                   queries: list[Query]) -> dict[str, Any]:
    """Steps 1 to 3 of a run (see the module's docstring): reads only, nothing writes.

    Exactness, routes, GraphQL twins, GraphQL-only queries, naive SQL and
    wrk on ``meterql serve``; then the floor's timings and wrk; then wrk on
    ``meterql serve --workers 2``. One server runs at a time.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = auth_headers(tenant.read_token)
    serve = [sys.executable, "-m", "meterql.cli", "serve", "--port", str(port)]
    wrk_path = wrk.installed()
    rates: dict[str, Any] = {}
    with process(serve, env, workdir / "serve.log") as child:
        wait_ready(f"{base}/v1/billing/trial-status", auth, child)
        with httpx.Client(base_url=base, headers=auth, timeout=120) as client:
            today, captured, rows, extra, verdicts, attempts = snapshot(
                client, tenant, backend, naive_url, queries)
            exactness = {**check_exactness(today, captured, rows, tenant, verdicts),
                         "snapshot_attempts": attempts}
            routes, only_times = time_reads(client, queries, args)
        results: dict[str, Any] = {
            route: {"capture": {key: captured[route][key]
                                for key in ("status", "content_type", "content_length")},
                    **routes[route]}
            for route, *_ in ROUTES
        }
        only: dict[str, Any] = {
            query.name: {"operation": query.operation, "source": query.source,
                         "capture": {key: extra[query.name][key]
                                     for key in ("status", "content_type", "content_length")},
                         **only_times[query.name]}
            for query in queries
        }
        plan = {route: bounds(route, today, tenant) for route in NAIVE}
        for route, naive in run_naive(backend, naive_url, plan, args.naive_runs).items():
            results[route]["naive"] = {"median_ms": statistics.median(naive["samples"]),
                                       "statements": len(NAIVE[route][1])}
        for query in queries:
            if query.naive:
                tz, days, group_by = query.naive
                naive = run_usage_naive(backend, naive_url, tenant, tz,
                                        usage_days(tz, datetime.now(UTC), days), group_by,
                                        args.naive_runs)
                only[query.name]["naive"] = {"median_ms": statistics.median(naive["samples"]),
                                             "statements": 1}
        if wrk_path:
            print("    wrk on meterql serve (1 worker)", flush=True)
            rates["meterql"] = throughput(base, auth, args)
    bodies = {route: {key: answer[key] for key in ("status", "body", "content_type")}
              for route, answer in captured.items()}
    # GraphQL-only answers: the floor answers POST /graphql by operation name.
    bodies |= {f"graphql:{query.operation}": {key: extra[query.name][key]
                                              for key in ("status", "body", "content_type")}
               for query in queries}
    (workdir / "bodies.json").write_text(json.dumps(bodies))
    floor_port = free_port()
    floor = [sys.executable, str(HERE / "floor.py"), str(workdir / "bodies.json"), str(floor_port)]
    floor_base = f"http://127.0.0.1:{floor_port}"
    with process(floor, env, workdir / "floor.log") as child:
        wait_ready(f"{floor_base}/v1/billing/trial-status", auth, child)
        with httpx.Client(base_url=floor_base, headers=auth, timeout=60) as client:
            for route, *_ in ROUTES:
                results[route]["floor"] = {
                    **timed(partial(client.get, route), args.warmup, args.requests),
                    "same_response": same_response(client.get(route), captured[route]),
                }
            for query in queries:
                ask = partial(client.post, "/graphql", json=query.request())
                only[query.name]["floor"] = {
                    **timed(ask, args.warmup, args.requests),
                    "same_response": same_response(ask(), extra[query.name]),
                }
        if wrk_path:
            print("    wrk on the floor", flush=True)
            rates["floor"] = throughput(floor_base, auth, args)
    if wrk_path:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        workers = [sys.executable, "-m", "meterql.cli", "serve", "--port", str(port),
                   "--workers", "2"]
        with process(workers, env, workdir / "serve-workers-2.log") as child:
            wait_ready(f"{base}/v1/billing/trial-status", auth, child)
            print("    wrk on meterql serve --workers 2", flush=True)
            rates["meterql_workers_2"] = throughput(base, auth, args)
        speed: dict[str, Any] = {
            "wrk": wrk.version(wrk_path), "threads": 1, "connections": args.wrk_connections,
            "seconds": args.wrk_seconds, "warmup_seconds": WRK_WARMUP_S,
            "routes": list(THROUGHPUT), "servers": rates}
    else:
        speed = {"skipped": "wrk not installed"}
    return {"routes": results, "graphql_only": only, "exactness": exactness,
            "throughput": speed}


# Rounds of growth timing: each read, ``--requests`` / rounds calls on the small
# tenant's server then as many on the large one's, per round.
GROWTH_ROUNDS = 5


def measure_growth(large: Tenant, large_env: dict[str, str], small_events: int, backend: str,
                   args: argparse.Namespace, workdir: Path,
                   queries: list[Query]) -> dict[str, Any]:
    """Step 4b: each read's median on the small tenant and on the large one, side by side.

    The small tenant is generated with the same seed (same instances, models
    and tokens, fewer events) and loaded into a database of its own; both
    servers run together, idle but for the read being timed.
    """
    home = workdir / "growth"
    home.mkdir()
    small = write_tenant(home / "tenant.json", small_events, args.seed, datetime.now(UTC))
    assert small.read_token == large.read_token
    auth = auth_headers(large.read_token)
    reads: list[tuple[str, str, dict[str, Any] | None]] = [
        *((route, route, None) for route, *_ in ROUTES),
        *((query.name, "/graphql", query.request()) for query in queries),
    ]
    with database(backend, args.pg_url, home) as (url, _naive_url):
        small_env = {**os.environ, "METERQL_DATABASE_URL": url, **server_env(args)}
        run_import(small.path, small_env, home)
        ports = {"small": free_port(), "large": free_port()}
        with contextlib.ExitStack() as stack:
            clients = {}
            for side, env in (("small", small_env), ("large", large_env)):
                argv = [sys.executable, "-m", "meterql.cli", "serve", "--port", str(ports[side])]
                child = stack.enter_context(process(argv, env, home / f"serve-{side}.log"))
                base = f"http://127.0.0.1:{ports[side]}"
                wait_ready(f"{base}/v1/billing/trial-status", auth, child)
                clients[side] = stack.enter_context(
                    httpx.Client(base_url=base, headers=auth, timeout=120))
            per_round = max(1, args.requests // GROWTH_ROUNDS)
            out: dict[str, Any] = {}
            for name, path, body in reads:
                calls = {side: (partial(client.get, path) if body is None
                                else partial(client.post, path, json=body))
                         for side, client in clients.items()}
                samples: dict[str, list[float]] = {"small": [], "large": []}
                failures = 0
                for side in samples:
                    for _ in range(args.warmup):
                        calls[side]()
                for _ in range(GROWTH_ROUNDS):
                    for side in samples:
                        times, failed = sampled(calls[side], per_round)
                        samples[side] += times
                        failures += failed
                out[name] = {side: statistics.median(values) for side, values in samples.items()}
                out[name]["failures"] = failures
    return {"small_events": small_events, "rounds": GROWTH_ROUNDS, "per_round": per_round,
            "reads": out}


def measure_writes(tenant: Tenant, env: dict[str, str], naive_url: str, backend: str,
                   args: argparse.Namespace, workdir: Path,
                   queries: list[Query]) -> dict[str, Any]:
    """Step 5: live ingest on a fresh ``meterql serve``, then (PostgreSQL) sustained ingest.

    The first writes of the run: every read measured before saw the imported
    data only.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = auth_headers(tenant.read_token)
    serve = [sys.executable, "-m", "meterql.cli", "serve", "--port", str(port)]
    with process(serve, env, workdir / "serve-ingest.log") as child:
        wait_ready(f"{base}/v1/billing/trial-status", auth, child)
        out: dict[str, Any] = {"ingest": measure_ingest(
            base, tenant.ingest_token,
            ingest_batches(args.ingest_batches, 1_000, datetime.now(UTC)))}
        if backend == "postgresql" and args.post_ingest_seconds > 0:
            out["post_ingest"] = post_ingest(base, auth, tenant, naive_url, args, queries)
    return out


def post_ingest(base: str, auth: dict[str, str], tenant: Tenant, naive_url: str,
                args: argparse.Namespace, queries: list[Query]) -> dict[str, Any]:
    """``--post-ingest-seconds`` of live ingest, then every read timed again, sequentially.

    8 senders (``--post-ingest-senders``) POST batches of 1,000 fresh events
    for the big tenant, timestamps within the last day. The tables' tuple
    counts are read before and after (each reading ``live.STATS_DELAY_S``
    after the last write, once PostgreSQL's backends have reported them),
    with the autovacuum settings they ran under.
    """
    autovacuum = live.autovacuum_settings(naive_url)
    time.sleep(live.STATS_DELAY_S)
    before = live.table_stats(naive_url)
    print(f"    {args.post_ingest_seconds:g} s of live ingest, "
          f"{args.post_ingest_senders} senders", flush=True)
    ingest = live.sustain(base, tenant.ingest_token, args.post_ingest_seconds,
                          args.post_ingest_senders, 1_000, args.seed)
    time.sleep(live.STATS_DELAY_S)
    after = live.table_stats(naive_url)
    print("    timing every read again", flush=True)
    with httpx.Client(base_url=base, headers=auth, timeout=120) as client:
        routes, only = time_reads(client, queries, args)
    return {"seconds": args.post_ingest_seconds, "ingest": ingest, "autovacuum": autovacuum,
            "tables_before": before, "tables_after": after, "routes": routes,
            "graphql_only": only}


def statement_times(url: str, naive_url: str, tenant: Tenant, args: argparse.Namespace,
                    backend: str, queries: list[Query]) -> dict[str, Any]:
    """Step 4: each read's driver calls in-process (``statements.py``), slow ones explained."""
    requests = [statements.Request(route, "rest", route) for route, *_ in ROUTES]
    requests += [statements.Request(query.name, "graphql", "/graphql", query.request())
                 for query in queries]
    return statements.measure(backend, url, naive_url, app_settings(args),
                              auth_headers(tenant.read_token), requests, args.warmup,
                              args.statement_runs, args.explain_over_ms)


def tracebacks(workdir: Path) -> dict[str, int]:
    """Tracebacks in each of the run's meterql server logs."""
    return {log.name: log.read_text(errors="replace").count("Traceback")
            for log in sorted(workdir.glob("serve*.log"))}


def same_response(floor: httpx.Response, meterql: dict[str, Any]) -> bool:
    """The floor answered the very bytes, status, content type and length meterql did."""
    return bool(floor.status_code == meterql["status"]
            and floor.content == meterql["body"].encode()
            and floor.headers.get("content-type") == meterql["content_type"]
            and floor.headers.get("content-length") == meterql["content_length"])


def profile_route(route: str, url: str, tenant: Tenant, args: argparse.Namespace,
                  backend: str) -> dict[str, Any]:
    """pyinstrument over ``--profile-requests`` calls of one route, in-process.

    The app is ``create_app(Settings(database_url=...))`` behind httpx's
    ASGITransport, so the profile holds meterql's own work, not uvicorn's.
    Run after the measurements, on the same database, before live ingest.
    """
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile needs pyinstrument: pip install pyinstrument") from None
    from meterql.app import create_app
    from meterql.config import Settings

    app = create_app(Settings(database_url=url, **app_settings(args)))
    auth = auth_headers(tenant.read_token)

    async def main() -> tuple[Profiler, list[float], int]:
        transport = httpx.ASGITransport(app=app)
        async with (app.router.lifespan_context(app),
                    httpx.AsyncClient(transport=transport, base_url="http://bench",
                                      headers=auth, timeout=120) as client):
            for _ in range(args.warmup):
                await client.get(route)
            samples, failures = [], 0
            profiler = Profiler(async_mode="enabled")
            profiler.start()
            for _ in range(args.profile_requests):
                started = time.perf_counter()
                response = await client.get(route)
                samples.append((time.perf_counter() - started) * 1000)
                failures += not response.is_success
            profiler.stop()
            return profiler, samples, failures

    profiler, samples, failures = asyncio.run(main())
    path = args.results / f"profile-{backend}-{tenant.events}.txt"
    header = (f"# pyinstrument profile of GET {route}: {backend}, {tenant.events:,} events,\n"
              f"# {len(samples)} in-process requests (ASGITransport, no HTTP server), "
              f"median {statistics.median(samples):.2f} ms, {failures} failed\n"
              f"# command: {shlex.join(['python', *sys.argv])}\n\n")
    path.write_text(header + profiler.output_text(unicode=True, color=False))
    return {"route": route, "requests": len(samples), "failures": failures,
            "median_ms": statistics.median(samples), "file": path.name}


# What every meterql process here runs with unless ``--server-env`` says
# otherwise: answers made, not kept (``web/answers.py``). Every timing here
# repeats one request over unchanged data, so kept answers would be all it
# measured; ``--server-env METERQL_ANSWER_CACHE_MB=32`` times them instead.
SERVER_DEFAULTS = {"METERQL_ANSWER_CACHE_MB": "0"}


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """Settings (``METERQL_`` names) for meterql's processes: :data:`SERVER_DEFAULTS`,
    then ``--server-env KEY=VALUE``."""
    pairs = {**SERVER_DEFAULTS,
             **dict(item.split("=", 1) for item in args.server_env or [])}
    for key in pairs:
        if not key.startswith("METERQL_"):
            raise SystemExit(f"--server-env takes METERQL_ settings, not {key}")
    return pairs


def app_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``--server-env`` as ``Settings`` keyword arguments, for the in-process app."""
    return {key.removeprefix("METERQL_").lower(): value
            for key, value in server_env(args).items()}


def resolve_route(wanted: str) -> str:
    """``--profile /v1/metrics/summary`` means the measured route, ``?days=90`` included."""
    for route, *_ in ROUTES:
        if wanted in (route, route.split("?")[0]):
            return route
    return wanted


def machine(backend: str, naive_url: str) -> dict[str, Any]:
    info = {"nproc": os.cpu_count(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "platform": platform.platform()}
    wrk_path = wrk.installed()
    if wrk_path:
        info["wrk"] = wrk.version(wrk_path)
    if backend == "postgresql":
        async def version() -> str:
            connection = await asyncpg.connect(naive_url)
            try:
                return str(await connection.fetchval("SHOW server_version"))
            finally:
                await connection.close()
        info["postgresql"] = asyncio.run(version())
    return info


def run_size(events: int, backend: str, args: argparse.Namespace,
             growth_beside: int | None = None) -> dict[str, Any]:
    """One full run at one size on one backend; the temporary files go with it.

    ``growth_beside``: a smaller size to time every read beside (step 4b).
    """
    with tempfile.TemporaryDirectory(prefix="meterql-bench-") as tmp:
        workdir = Path(tmp)
        print(f"[{backend} {events:,}] generating the tenant", flush=True)
        tenant = write_tenant(workdir / "tenant.json", events, args.seed, datetime.now(UTC))
        queries = graphql_only()
        with database(backend, args.pg_url, workdir) as (url, naive_url):
            env = {**os.environ, "METERQL_DATABASE_URL": url, **server_env(args)}
            print(f"[{backend} {events:,}] meterql load", flush=True)
            imported = run_import(tenant.path, env, workdir)
            imported["events_per_s"] = (events + SMALL_EVENTS) / imported["seconds"]
            imported["file_mib"] = tenant.path.stat().st_size / 2**20
            print(f"[{backend} {events:,}] serving and measuring", flush=True)
            measured = measure_server(tenant, env, naive_url, backend, args, workdir, queries)
            print(f"[{backend} {events:,}] statement times, in-process", flush=True)
            measured["statements"] = statement_times(url, naive_url, tenant, args, backend,
                                                     queries)
            if args.profile:
                print(f"[{backend} {events:,}] profiling {args.profile}", flush=True)
                measured["profile"] = profile_route(resolve_route(args.profile), url, tenant,
                                                    args, backend)
            if growth_beside is not None:
                print(f"[{backend} {events:,}] growth beside {growth_beside:,}", flush=True)
                measured["growth"] = measure_growth(tenant, env, growth_beside, backend, args,
                                                    workdir, queries)
            print(f"[{backend} {events:,}] live ingest", flush=True)
            measured |= measure_writes(tenant, env, naive_url, backend, args, workdir, queries)
            if "post_ingest" in measured:
                print(f"[{backend} {events:,}] statement times after live ingest", flush=True)
                measured["post_ingest"]["statements"] = statement_times(
                    url, naive_url, tenant, args, backend, queries)
            logs = tracebacks(workdir)
            info = machine(backend, naive_url)
    return {"backend": backend, "events": events, "date": datetime.now(UTC).isoformat(),
            "command": shlex.join(["python", *sys.argv]), "machine": info,
            "requests_per_route": args.requests, "server_env": server_env(args),
            "import": imported, **measured, "server_tracebacks": sum(logs.values()),
            "server_logs": logs}


def print_table(result: dict[str, Any]) -> None:
    exact = result["exactness"]
    print(f"\n{result['backend']} {result['events']:,} events")
    print(f"{'route':34} {'REST med':>9} {'p99':>8} {'GQL med':>8} {'floor':>7} "
          f"{'ratio':>6} {'naive':>8} {'fails':>5} exact")
    for route, row in result["routes"].items():
        naive = row.get("naive", {}).get("median_ms")
        fails = row["rest"]["failures"] + row["graphql"]["failures"]
        verdict = exact["routes"].get(route, {}).get("exact")
        same = "" if exact["graphql_same"][route] else " (GraphQL differs)"
        print(f"{route:34} {row['rest']['median_ms']:9.2f} {row['rest']['p99_ms']:8.2f} "
              f"{row['graphql']['median_ms']:8.2f} {row['floor']['median_ms']:7.2f} "
              f"{row['rest']['median_ms'] / row['floor']['median_ms']:6.1f} "
              f"{'-' if naive is None else f'{naive:.2f}':>8} {fails:5} "
              f"{'-' if verdict is None else ('yes' if verdict else 'NO')}{same}")
        for wrong in exact["routes"].get(route, {}).get("mismatches", [])[:3]:
            print(f"    {wrong['at']}: route {wrong['route']!r}, naive {wrong['naive']!r}")
    for name, row in result.get("graphql_only", {}).items():
        naive = row.get("naive", {}).get("median_ms")
        verdict = exact.get("graphql_only", {}).get(name, {})
        same = "" if row["floor"]["same_response"] else " (floor differs)"
        unchecked = ", ".join(verdict.get("unchecked", []))
        print(f"{name[:34]:34} {'-':>9} {row['graphql']['p99_ms']:8.2f} "
              f"{row['graphql']['median_ms']:8.2f} {row['floor']['median_ms']:7.2f} "
              f"{row['graphql']['median_ms'] / row['floor']['median_ms']:6.1f} "
              f"{'-' if naive is None else f'{naive:.2f}':>8} {row['graphql']['failures']:5} "
              f"{'yes' if verdict.get('exact') else 'NO'} ({verdict.get('checked', 0)} values"
              f"{', unchecked: ' + unchecked if unchecked else ''}){same}")
        for wrong in verdict.get("mismatches", [])[:3]:
            print(f"    {wrong['at']}: answer {wrong['route']!r}, reference {wrong['naive']!r}")
    imported, ingest = result["import"], result["ingest"]
    print(f"import: {imported['events_per_s']:,.0f} events/s, peak RSS "
          f"{imported['peak_rss_mib']:.0f} MiB; ingest: {ingest['events_per_s']:,.0f} events/s; "
          f"stored cost = own pricing: {exact['pricing']['exact']}; "
          f"all exact: {exact['all_exact']}")
    if "profile" in result:
        print(f"profile of {result['profile']['route']}: {result['profile']['file']}")
    print_throughput(result["throughput"])
    print_statements(result["statements"])
    if "post_ingest" in result:
        print_post_ingest(result)


def print_throughput(speed: dict[str, Any]) -> None:
    if "skipped" in speed:
        print(f"throughput: skipped ({speed['skipped']})")
        return
    print(f"throughput (wrk -t{speed['threads']} -c{speed['connections']} "
          f"-d{speed['seconds']}s), requests/s:")
    servers = speed["servers"]
    for route in speed["routes"]:
        rates = {name: runs[route].get("requests_per_s") for name, runs in servers.items()}
        errors = sum(runs[route].get("non_2xx", 0) + sum(runs[route].get("socket_errors", {})
                                                         .values())
                     for runs in servers.values())
        floor, one, two = (rates.get(k) for k in ("floor", "meterql", "meterql_workers_2"))
        share = f"{100 * one / floor:.0f}% of the floor" if one and floor else "-"
        scale = f"{two / one:.2f}x with 2 workers" if one and two else "-"
        print(f"    {route:34} floor {floor or 0:8,.0f}  1 worker {one or 0:8,.0f}  "
              f"2 workers {two or 0:8,.0f}  ({share}, {scale}; errors {errors})")


def print_statements(measured: dict[str, Any], label: str = "statements") -> None:
    print(f"{label} (in-process, {measured['runs']} runs): round trips, slowest median ms")
    for name, row in measured["requests"].items():
        slowest = row["slowest_ms"]
        print(f"    {name[:40]:40} {row['round_trips']:3}  "
              f"{'-' if slowest is None else f'{slowest:7.2f}'}")
    for plan in measured["plans"]:
        print(f"    plan read for {plan['median_ms']:.2f} ms statement of "
              f"{', '.join(plan['requests'])}")


def print_post_ingest(result: dict[str, Any]) -> None:
    post = result["post_ingest"]
    ingest = post["ingest"]
    print(f"after {post['seconds']:g} s of live ingest ({ingest['accepted']:,} events, "
          f"{ingest['events_per_s']:,.0f} events/s, {ingest['non_2xx']} non-2xx, "
          f"{ingest['transport_errors']} transport errors; autovacuum at its defaults: "
          f"{post['autovacuum']['defaults']}):")
    for route, row in post["routes"].items():
        before = result["routes"][route]["rest"]["median_ms"]
        print(f"    {route:40} {before:8.2f} -> {row['rest']['median_ms']:8.2f} ms")
    for name, row in post["graphql_only"].items():
        before = result["graphql_only"][name]["graphql"]["median_ms"]
        print(f"    {name[:40]:40} {before:8.2f} -> {row['graphql']['median_ms']:8.2f} ms")
    for table, after in post["tables_after"].items():
        before = post["tables_before"].get(table, {})
        print(f"    {table:32} dead {before.get('n_dead_tup', 0):>10,} -> "
              f"{after['n_dead_tup']:>10,}  live {before.get('n_live_tup', 0):>10,} -> "
              f"{after['n_live_tup']:>10,}")
    print_statements(post["statements"], "statements after live ingest")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help="events in the big tenant")
    parser.add_argument("--sizes", help="comma-separated sizes, e.g. 100000,1000000")
    parser.add_argument("--backend", default="sqlite",
                        help="sqlite, postgresql, or both: sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="an existing database to connect to for CREATE/DROP DATABASE")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per route")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--naive-runs", type=int, default=20)
    parser.add_argument("--ingest-batches", type=int, default=20, help="batches of 1,000")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--profile", metavar="ROUTE",
                        help="after measuring, profile ROUTE in-process with pyinstrument")
    parser.add_argument("--profile-requests", type=int, default=300)
    parser.add_argument("--wrk-seconds", type=int, default=8,
                        help="duration of each wrk run (throughput); needs wrk installed")
    parser.add_argument("--wrk-connections", type=int, default=16)
    parser.add_argument("--statement-runs", type=int, default=7,
                        help="in-process runs of each read whose driver calls are timed")
    parser.add_argument("--explain-over-ms", type=float, default=5.0,
                        help="read the plan of every statement whose median is over this")
    parser.add_argument("--post-ingest-seconds", type=float, default=600,
                        help="PostgreSQL: live ingest for this long, then every read timed "
                        "again (0: skip)")
    parser.add_argument("--post-ingest-senders", type=int, default=8,
                        help="concurrent senders of batches of 1,000 during that ingest")
    parser.add_argument("--server-env", action="append", metavar="METERQL_KEY=VALUE",
                        help="a setting for meterql's processes (recorded with the result)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where result files go, and what --write-docs renders "
                        "(a smoke run's: elsewhere than benchmarks/results/)")
    parser.add_argument("--write-docs", action="store_true",
                        help="render the results' *.json: docs/performance.md from "
                        "benchmarks/results/, else DIR/performance.md (or --docs-out)")
    parser.add_argument("--docs-out", type=Path,
                        help="where --write-docs writes (default: see --write-docs)")
    args = parser.parse_args()
    backends = [name.strip() for name in args.backend.split(",") if name.strip()]
    for name in backends:
        if name not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {name!r}: sqlite or postgresql")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [args.events] if args.events else [])
    if not sizes and not args.write_docs:
        parser.error("give --events, --sizes or --write-docs")
    if sizes and args.profile and importlib.util.find_spec("pyinstrument") is None:
        # Said now, not after the first size's quarter of an hour of measuring.
        parser.error("--profile needs pyinstrument: pip install -e '.[dev]'")
    server_env(args)
    args.results.mkdir(parents=True, exist_ok=True)
    if sizes and "postgresql" in backends and args.post_ingest_seconds > 0:
        autovacuum = live.autovacuum_settings(args.pg_url)
        if not autovacuum["defaults"]:
            print(f"warning: autovacuum is not at its defaults on this server "
                  f"({json.dumps(autovacuum['not_default'] or autovacuum['table_options'])}):"
                  " the post-ingest block will say so", file=sys.stderr, flush=True)
    if not wrk.installed():
        print("warning: wrk not installed: throughput will be recorded as skipped",
              file=sys.stderr, flush=True)
    for backend in backends:
        for events in sizes:
            beside = min(sizes) if events == max(sizes) and len(set(sizes)) > 1 else None
            result = run_size(events, backend, args, growth_beside=beside)
            path = args.results / f"{backend}-{events}.json"
            path.write_text(json.dumps(result, indent=2) + "\n")
            print_table(result)
            print(f"wrote {path}")
    if args.write_docs:
        out = args.docs_out
        if out is None and args.results.resolve() != RESULTS:
            out = args.results / "performance.md"
        docs, count = write_docs(HERE.parent, args.results, out)
        print(f"wrote {docs} from {count} result files in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
