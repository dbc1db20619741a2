"""End-to-end benchmark of meterql: import, read routes, GraphQL, live ingest.

Everything goes through the real entry points (``meterql load``, ``meterql
serve``, HTTP) and is set beside two yardsticks measured in the same run: the
HTTP floor (a bare Starlette app under the same uvicorn, answering the same
bytes) and the naive answer (a hand-written SQL aggregate over usage_events).

    python benchmarks/bench.py --events 100000 --backend sqlite
    python benchmarks/bench.py --sizes 100000,300000 --backend postgresql \\
        --pg-url postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/bench.py --write-docs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from dataset import BIG, INSTANCES, MODELS, SMALL_EVENTS, Tenant, write_tenant
from report import render

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCUMENTS = HERE.parent / "src" / "meterql" / "rest_compat" / "documents"
DAYS = 90

# (route, GraphQL document, variables, naive SQL or None). The SQL takes
# $1 account, $2 window start, $3 window end: days=90 for the metrics routes
# and the chart, the subscription period for the billing routes.
ROUTES: list[tuple[str, str, dict[str, int], str | None]] = [
    (f"/v1/metrics/summary?days={DAYS}", "metrics_summary", {"days": DAYS},
     "SELECT COUNT(*), COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0),"
     " COALESCE(SUM(cost_nanos), 0), COUNT(DISTINCT model), COUNT(DISTINCT instance_id)"
     " FROM usage_events WHERE account_id = $1 AND occurred_at >= $2 AND occurred_at < $3"),
    (f"/v1/metrics/instances?days={DAYS}", "metrics_instances", {"days": DAYS},
     "SELECT instance_id, COUNT(*), SUM(tokens_in + tokens_out), SUM(cost_nanos)"
     " FROM usage_events WHERE account_id = $1 AND occurred_at >= $2 AND occurred_at < $3"
     " GROUP BY instance_id"),
    (f"/v1/metrics/models?days={DAYS}", "metrics_models", {"days": DAYS},
     "SELECT model, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost_nanos)"
     " FROM usage_events WHERE account_id = $1 AND occurred_at >= $2 AND occurred_at < $3"
     " GROUP BY model"),
    (f"/v1/metrics/usage?days={DAYS}", "metrics_usage", {"days": DAYS},
     "SELECT day, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost_nanos)"
     " FROM usage_events WHERE account_id = $1 AND occurred_at >= $2 AND occurred_at < $3"
     " GROUP BY day"),
    ("/v1/billing", "billing", {},
     "SELECT COUNT(*), SUM(tokens_in + tokens_out), SUM(cost_nanos),"
     " COUNT(DISTINCT end_user_id), COUNT(DISTINCT instance_id)"
     " FROM usage_events WHERE account_id = $1 AND occurred_at >= $2 AND occurred_at < $3"),
    ("/v1/billing/trial-status", "billing_trial_status", {}, None),
    ("/v1/billing/usage", "billing_usage", {},
     "SELECT instance_id, COUNT(*), SUM(tokens_in + tokens_out), SUM(cost_nanos)"
     " FROM usage_events WHERE account_id = $1 AND occurred_at >= $2 AND occurred_at < $3"
     " GROUP BY instance_id"),
    (f"/v1/billing/usage/chart?days={DAYS}", "billing_usage_chart", {"days": DAYS},
     "SELECT day, COUNT(*), SUM(tokens_in + tokens_out), SUM(cost_nanos)"
     " FROM usage_events WHERE account_id = $1 AND occurred_at >= $2 AND occurred_at < $3"
     " GROUP BY day"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def days_window(now: datetime) -> tuple[datetime, datetime]:
    """``days=90`` as meterql reads it: 90 UTC days ending today, half-open."""
    today = now.astimezone(UTC).date()
    return _midnight(today - timedelta(days=DAYS - 1)), _midnight(today + timedelta(days=1))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, dtime.min, tzinfo=UTC)


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

    ``wait4`` gives this child's own ``ru_maxrss``; ``RUSAGE_CHILDREN`` would
    be the largest of every child reaped so far, servers of earlier sizes too.
    """
    with (workdir / "load.out").open("wb") as out:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "meterql.cli", "load", str(path)],
                                 env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
    output = (workdir / "load.out").read_text()
    if child.returncode:
        raise SystemExit(f"meterql load failed:\n{output}")
    return {"seconds": elapsed, "peak_rss_mib": usage.ru_maxrss / 1024, "output": output.strip()}


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
    samples, failures = [], 0
    for _ in range(count):
        started = time.perf_counter()
        response = call()
        samples.append((time.perf_counter() - started) * 1000)
        failures += not response.is_success or b'"errors"' in response.content
    return {"median_ms": statistics.median(samples),
            "p99_ms": statistics.quantiles(samples, n=100, method="inclusive")[98],
            "failures": failures}


def naive_plan(start: datetime, end: datetime,
               period: tuple[Any, Any]) -> list[tuple[str, str, tuple[Any, Any]]]:
    """(route, SQL, bounds): days=90 for metrics and the chart, the period for billing."""
    plan = []
    for route, _, _, sql in ROUTES:
        if sql is not None:
            billing = route.startswith("/v1/billing") and "chart" not in route
            plan.append((route, sql, period if billing else (start, end)))
    return plan


def _naive_result(route: str, samples: list[float], rows: list[Any]) -> dict[str, Any]:
    """Median without the first (cache-warming) run; the summary row is kept for the check."""
    result: dict[str, Any] = {"median_ms": statistics.median(samples[1:]), "rows": len(rows)}
    if "summary" in route:
        result["row"] = [int(value) for value in rows[0]]
    return result


def naive_sqlite(path: str, runs: int, start: datetime, end: datetime) -> dict[str, Any]:
    """Each naive query straight through sqlite3, bounds in meterql's stored text form."""
    connection = sqlite3.connect(path)
    try:
        period = connection.execute(
            "SELECT current_period_start, current_period_end FROM subscriptions"
            " WHERE account_id = ?", [BIG]).fetchone()
        window = tuple(moment.strftime("%Y-%m-%d %H:%M:%S.%f") for moment in (start, end))
        timings = {}
        for route, sql, bounds in naive_plan(*window, period=period):
            samples, rows = [], []
            for _ in range(runs + 1):
                started = time.perf_counter()
                rows = connection.execute(sql.replace("$", "?"), [BIG, *bounds]).fetchall()
                samples.append((time.perf_counter() - started) * 1000)
            timings[route] = _naive_result(route, samples, rows)
        return timings
    finally:
        connection.close()


def naive_postgresql(url: str, runs: int, start: datetime, end: datetime) -> dict[str, Any]:
    """Each naive query through asyncpg, prepared once as a careful hand would."""

    async def main() -> dict[str, Any]:
        connection = await asyncpg.connect(url)
        try:
            period = await connection.fetchrow(
                "SELECT current_period_start, current_period_end FROM subscriptions"
                " WHERE account_id = $1", BIG)
            timings = {}
            for route, sql, bounds in naive_plan(start, end, period=tuple(period)):
                statement = await connection.prepare(sql)
                samples, rows = [], []
                for _ in range(runs + 1):
                    started = time.perf_counter()
                    rows = await statement.fetch(BIG, *bounds)
                    samples.append((time.perf_counter() - started) * 1000)
                timings[route] = _naive_result(route, samples, rows)
            return timings
        finally:
            await connection.close()

    return asyncio.run(main())


def check_summary(body: dict[str, Any], row: list[int]) -> dict[str, Any]:
    """The route's numbers against the naive SQL's, cost rounded half-up to 4 places."""
    requests, tokens_in, tokens_out, cost_nanos, models, instances = row
    expected = {
        "total_requests": requests, "total_tokens_in": tokens_in,
        "total_tokens_out": tokens_out, "total_tokens": tokens_in + tokens_out,
        "estimated_cost_usd": str(Decimal(cost_nanos).scaleb(-9).quantize(
            Decimal("0.0001"), rounding=ROUND_HALF_UP)),
        "unique_models": models, "active_instances": instances,
    }
    got = {key: body.get(key) for key in expected}
    normalised = {key: value if key == "estimated_cost_usd" else int(value)
                  for key, value in got.items()}
    return {"exact": normalised == expected, "route": got, "naive": expected}


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
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
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


def measure_server(tenant: Tenant, env: dict[str, str], naive_url: str, backend: str,
                   args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Routes, GraphQL twins, floor, naive SQL and ingest against one live server."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {tenant.read_token}"}
    serve = [sys.executable, "-m", "meterql.cli", "serve", "--port", str(port)]
    with process(serve, env, workdir / "serve.log") as child:
        wait_ready(f"{base}/v1/billing/trial-status", auth, child)
        with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
            bodies = {route: client.get(route).text for route, *_ in ROUTES}
            results: dict[str, Any] = {route: {} for route, *_ in ROUTES}
            for route, document, variables, _ in ROUTES:
                query = (DOCUMENTS / f"{document}.graphql").read_text()
                results[route]["rest"] = timed(
                    lambda r=route: client.get(r), args.warmup, args.requests)
                results[route]["graphql"] = timed(
                    lambda q=query, v=variables: client.post(
                        "/graphql", json={"query": q, "variables": v}),
                    args.warmup, args.requests)
        start, end = days_window(datetime.now(UTC))
        naive = (naive_sqlite if backend == "sqlite" else naive_postgresql)(
            naive_url, args.naive_runs, start, end)
        summary_route = ROUTES[0][0]
        exactness = check_summary(json.loads(bodies[summary_route]), naive[summary_route]["row"])
        ingest = measure_ingest(base, tenant.ingest_token,
                                ingest_batches(args.ingest_batches, 1_000, datetime.now(UTC)))
    server_log = (workdir / "serve.log").read_text(errors="replace")
    (workdir / "bodies.json").write_text(json.dumps(bodies))
    floor_port = free_port()
    floor = [sys.executable, str(HERE / "floor.py"), str(workdir / "bodies.json"), str(floor_port)]
    floor_base = f"http://127.0.0.1:{floor_port}"
    with process(floor, env, workdir / "floor.log") as child:
        wait_ready(f"{floor_base}{ROUTES[0][0]}", auth, child)
        with httpx.Client(base_url=floor_base, headers=auth, timeout=60) as client:
            for route, *_ in ROUTES:
                results[route]["floor"] = timed(
                    lambda r=route: client.get(r), args.warmup, args.requests)
    for route in results:
        if route in naive:
            results[route]["naive"] = {k: v for k, v in naive[route].items() if k != "row"}
    return {"routes": results, "exactness": exactness, "ingest": ingest,
            "server_tracebacks": server_log.count("Traceback")}


def machine(backend: str, naive_url: str) -> dict[str, Any]:
    info = {"nproc": os.cpu_count(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "platform": platform.platform()}
    if backend == "postgresql":
        async def version() -> str:
            connection = await asyncpg.connect(naive_url)
            try:
                return str(await connection.fetchval("SHOW server_version"))
            finally:
                await connection.close()
        info["postgresql"] = asyncio.run(version())
    return info


def run_size(events: int, args: argparse.Namespace) -> dict[str, Any]:
    """One full run at one size on one backend; the temporary files go with it."""
    with tempfile.TemporaryDirectory(prefix="meterql-bench-") as tmp:
        workdir = Path(tmp)
        print(f"[{args.backend} {events:,}] generating the tenant", flush=True)
        tenant = write_tenant(workdir / "tenant.json", events, args.seed, datetime.now(UTC))
        with database(args.backend, args.pg_url, workdir) as (url, naive_url):
            env = {**os.environ, "METERQL_DATABASE_URL": url}
            print(f"[{args.backend} {events:,}] meterql load", flush=True)
            imported = run_import(tenant.path, env, workdir)
            imported["events_per_s"] = (events + SMALL_EVENTS) / imported["seconds"]
            imported["file_mib"] = tenant.path.stat().st_size / 2**20
            print(f"[{args.backend} {events:,}] serving and measuring", flush=True)
            measured = measure_server(tenant, env, naive_url, args.backend, args, workdir)
            info = machine(args.backend, naive_url)
    return {"backend": args.backend, "events": events, "date": datetime.now(UTC).isoformat(),
            "command": shlex.join(["python", *sys.argv]), "machine": info,
            "requests_per_route": args.requests, "import": imported, **measured}


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['backend']} {result['events']:,} events")
    print(f"{'route':42} {'REST med':>9} {'p99':>8} {'GQL med':>8} {'floor':>7} "
          f"{'ratio':>6} {'naive':>8}")
    for route, row in result["routes"].items():
        naive = row.get("naive", {}).get("median_ms")
        print(f"{route:42} {row['rest']['median_ms']:9.2f} {row['rest']['p99_ms']:8.2f} "
              f"{row['graphql']['median_ms']:8.2f} {row['floor']['median_ms']:7.2f} "
              f"{row['rest']['median_ms'] / row['floor']['median_ms']:6.1f} "
              f"{'-' if naive is None else f'{naive:.2f}':>8}")
    imported, ingest = result["import"], result["ingest"]
    print(f"import: {imported['events_per_s']:,.0f} events/s, peak RSS "
          f"{imported['peak_rss_mib']:.0f} MiB; ingest: {ingest['events_per_s']:,.0f} events/s; "
          f"summary exact: {result['exactness']['exact']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help="events in the big tenant")
    parser.add_argument("--sizes", help="comma-separated sizes, run one after another")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="an existing database to connect to for CREATE/DROP DATABASE")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per route")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--naive-runs", type=int, default=20)
    parser.add_argument("--ingest-batches", type=int, default=20, help="batches of 1,000")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--write-docs", action="store_true",
                        help="render docs/performance.md from benchmarks/results/*.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [args.events] if args.events else [])
    if not sizes and not args.write_docs:
        parser.error("give --events, --sizes or --write-docs")
    RESULTS.mkdir(exist_ok=True)
    for events in sizes:
        result = run_size(events, args)
        path = RESULTS / f"{args.backend}-{events}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print_table(result)
        print(f"wrote {path.relative_to(HERE.parent)}")
    if args.write_docs:
        results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
        docs = HERE.parent / "docs" / "performance.md"
        docs.write_text(render(results))
        print(f"wrote {docs.relative_to(HERE.parent)} from {len(results)} result files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
